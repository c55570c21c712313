// What every kernel source shares, whatever its ISA: thread count, block
// sizes and scratch sizes. Baseline code only; no intrinsics here.
#pragma once

#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace pyllm {

// The thread count kernels use for their parallel regions (runtime/threads.cpp).
int num_threads();

// Index of the calling thread inside a parallel region, 0 outside or without OpenMP.
static inline int thread_index() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Number of threads in the current parallel region (may be fewer than asked).
static inline int thread_count() {
#if defined(_OPENMP)
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// sgemm blocking: a 6x16 register tile; per thread an A block of MC x KC
// (L2/L3, its (KC,6) panels in L1) and a B block of KC x NC (L2).
constexpr int64_t kGemmMR = 6;
constexpr int64_t kGemmNR = 16;
constexpr int64_t kGemmMC = 516;
constexpr int64_t kGemmKC = 384;
constexpr int64_t kGemmNC = 384;

static inline int64_t sgemm_work_floats(int nthreads) {
    return int64_t(nthreads) * (kGemmMC * kGemmKC + kGemmKC * kGemmNC + kGemmMR * kGemmNR);
}

// attention keys are scored in blocks of this many
constexpr int64_t kAttnBlock = 64;

static inline int64_t attention_work_floats(int64_t HS, int nthreads) {
    return int64_t(nthreads) * (HS + kAttnBlock);
}

}  // namespace pyllm
