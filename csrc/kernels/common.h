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

// sgemm blocking, one set per register tile: an MR x NR tile of C in
// registers; per thread an A block of MC x KC (L2/L3, its (KC,MR) panels in
// L1) and a B block of KC x NC (L2). MC is a multiple of MR, NC of NR.
struct GemmBlocking {
    int64_t MR, NR, MC, KC, NC;
};
// 8-float vectors (avx2, neon, scalar): 6x16, twelve ymm accumulators
constexpr GemmBlocking kGemmBlocking8{6, 16, 516, 384, 384};
// 16-float vectors (avx512): 12x32, 24 of the 32 zmm registers accumulate
constexpr GemmBlocking kGemmBlocking16{12, 32, 516, 384, 384};

// floats of sgemm scratch one thread uses with blocking b: packed A block,
// packed B block and an edge tile, rounded to whole 64-byte lines
static constexpr int64_t gemm_thread_floats(GemmBlocking b) {
    return (b.MC * b.KC + b.KC * b.NC + b.MR * b.NR + 15) / 16 * 16;
}

// sgemm's scratch for nthreads threads, enough for the blocking of any ISA
static inline int64_t sgemm_work_floats(int nthreads) {
    const int64_t a = gemm_thread_floats(kGemmBlocking8), b = gemm_thread_floats(kGemmBlocking16);
    return int64_t(nthreads) * (a > b ? a : b);
}

// sgemm_packed_b's scratch: sgemm's, then all of A packed once for every thread
// (rows rounded up to a whole register tile: 48 is a multiple of MR 6 and 12)
static inline int64_t sgemm_packed_b_work_floats(int64_t M, int64_t K, int nthreads) {
    return sgemm_work_floats(nthreads) + (M + 47) / 48 * 48 * K;
}

// attention_forward: stacked query rows per block and keys per block, and
// its scratch per thread: sgemm blocks, the block's weights (rows, keys),
// stacked queries and outputs (rows, HS), a running maximum (float) and sum
// (double) per row
constexpr int64_t kAttnStackRows = 144, kAttnKeys = 256;

static inline int64_t attention_thread_floats(int64_t HS) {
    return sgemm_work_floats(1) + kAttnStackRows * kAttnKeys + (2 * kAttnStackRows * HS + 15) / 16 * 16 +
           3 * kAttnStackRows + 16;
}
static inline int64_t attention_work_floats(int64_t HS, int nthreads) {
    return int64_t(nthreads) * attention_thread_floats(HS);
}

// attention_forward's units of work: for each batch entry and key/value
// head, its query heads in chunks of at most kAttnStackRows, times blocks of
// kAttnStackRows / (heads per chunk) steps. Unit u is, from the fastest
// varying: block (latest first), chunk, key/value head, batch entry.
static inline int64_t attention_units(int64_t B, int64_t NH, int64_t NKV, int64_t T) {
    if (B <= 0 || NH <= 0 || NKV <= 0 || T <= 0) return 0;  // nothing to attend (and no group of 0 heads)
    const int64_t group = NH / NKV, hg = group < kAttnStackRows ? group : kAttnStackRows;
    const int64_t chunks = (group + hg - 1) / hg, tq = kAttnStackRows / hg;
    return B * NKV * chunks * ((T + tq - 1) / tq);
}

// bias_backward scratch: per-thread partial sums
static inline int64_t bias_backward_work_floats(int64_t N, int nthreads) { return int64_t(nthreads) * N; }

// layernorm_backward scratch: per-thread partial dweight and dbias
static inline int64_t layernorm_backward_work_floats(int64_t C, int nthreads) {
    return int64_t(nthreads) * 2 * C;
}

// attention_qkv_forward/backward scratch: per thread, one thread's sgemm
// blocks and a (T,T) matrix of score gradients
static inline int64_t attention_qkv_thread_floats(int64_t T) {
    return sgemm_work_floats(1) + (T * T + 15) / 16 * 16;
}
static inline int64_t attention_qkv_work_floats(int64_t T, int nthreads) {
    return int64_t(nthreads) * attention_qkv_thread_floats(T);
}

// ---- quantized weights (quant.cpp): GGUF tensor types by their ggml id.
// Block types pack kQuantBlock elements: Q8_0 {fp16 d; int8 q[32]},
// Q4_0 {fp16 d; uint8 nibbles[16]}, Q4_1 {fp16 d; fp16 m; uint8 nibbles[16]}.
constexpr int kTypeF32 = 0, kTypeF16 = 1, kTypeQ4_0 = 2, kTypeQ4_1 = 3, kTypeQ8_0 = 8,
              kTypeBF16 = 30;
constexpr int64_t kQuantBlock = 32;

// Elements per block of `type`: 1 for F32/F16/BF16, 32 for Q*, 0 if unsupported.
static inline int64_t quant_block_elems(int type) {
    switch (type) {
        case kTypeF32: case kTypeF16: case kTypeBF16: return 1;
        case kTypeQ8_0: case kTypeQ4_0: case kTypeQ4_1: return kQuantBlock;
        default: return 0;
    }
}

// Bytes per block of `type`, 0 if unsupported.
static inline int64_t quant_block_bytes(int type) {
    switch (type) {
        case kTypeF32: return 4;
        case kTypeF16: case kTypeBF16: return 2;
        case kTypeQ8_0: return 34;
        case kTypeQ4_0: return 18;
        case kTypeQ4_1: return 20;
        default: return 0;
    }
}

// Bytes of a row of n elements (n a multiple of the block size).
static inline int64_t quant_row_bytes(int type, int64_t n) {
    const int64_t be = quant_block_elems(type);
    return be ? n / be * quant_block_bytes(type) : 0;
}

// qmatmul scratch (F32/F16/BF16 weights): one fp32 row of K per thread.
static inline int64_t qmatmul_work_floats(int64_t K, int nthreads) { return int64_t(nthreads) * K; }

// The order every fp32 product of the runtime sums in, whichever kernel runs
// it (sgemm's tiles, sgemm_packed_b, qpack_matvec): each output is summed
// over k blocks of gemm_k_block(K, KC, k_align) elements, each block a chain
// of FMAs from zero in k order, and the block sums are added in k order. So
// a position's logits are the same bits whether it was prefilled in a chunk
// of any length or decoded alone or beside other sequences, on any number
// of threads.
static inline int64_t gemm_k_block(int64_t K, int64_t KC, int64_t k_align) {
    // k blocks of equal size (fewer passes over C), a multiple of k_align where possible
    const int64_t nkb = (K + KC - 1) / KC;
    const int64_t kc = ((K + nkb - 1) / nkb + k_align - 1) / k_align * k_align;
    return kc < KC ? kc : KC;
}
static_assert(kGemmBlocking8.KC == kGemmBlocking16.KC, "one k blocking for every ISA's tiles");
constexpr int64_t kGemmKC = kGemmBlocking8.KC;

// ---- packed weights (quant.cpp, qpack_*): a matrix repacked once at load
// so that one load gives element k of 16 consecutive rows, dequantized in
// vector lanes for fp32 products. Rows go in groups of kPackRows (the last
// group zero-padded); group g holds, per block b of K/32, one record of
// qpack_record_bytes(type):
//   Q8_0  fp16 d[16], int8 q[32][16]             q[k][r]: element k of row r
//   Q4_0  fp16 d[16], uint8 q[16][16]            q[j][r]: elements 2j (low
//   Q4_1  fp16 d[16], fp16 m[16], uint8 q[16][16]  nibble), 2j+1 (high) of row r
//   F32   float q[32][16]; F16 fp16 q[32][16]; BF16 bf16 q[32][16]
// Same total size as the original; the same layout on every ISA. Float
// matrices need K a multiple of 32 too.
constexpr int64_t kPackRows = 16;

static inline bool qpack_supported(int type) {
    return type == kTypeQ8_0 || type == kTypeQ4_0 || type == kTypeQ4_1 || type == kTypeF32 || type == kTypeF16 ||
           type == kTypeBF16;
}

static inline int64_t qpack_scale_bytes(int type) {
    return type == kTypeQ4_1 ? 4 * kPackRows : type == kTypeQ8_0 || type == kTypeQ4_0 ? 2 * kPackRows : 0;
}

// bytes of one element of a record's q (Q4_*: two elements a byte, counted as 1/2)
static inline int64_t qpack_record_bytes(int type) {
    const int64_t q = type == kTypeF32 ? 4 * kQuantBlock
                      : type == kTypeF16 || type == kTypeBF16 ? 2 * kQuantBlock
                      : type == kTypeQ8_0 ? kQuantBlock
                                          : kQuantBlock / 2;
    return qpack_scale_bytes(type) + q * kPackRows;
}

static inline int64_t qpack_bytes(int type, int64_t N, int64_t K) {
    return (N + kPackRows - 1) / kPackRows * (K / kQuantBlock) * qpack_record_bytes(type);
}

// qpack_matmul: at most this many rows of x take qpack_matvec (weights
// streamed once for all rows), more take sgemm_packed_b; the same bits.
constexpr int64_t kQuantMatvecMaxRows = 8;

// qpack_matmul scratch: sgemm_packed_b's (none for the matvec rows)
static inline int64_t qpack_work_floats(int64_t M, int64_t K, int type, int nthreads) {
    (void)type;
    return M <= kQuantMatvecMaxRows ? 0 : sgemm_packed_b_work_floats(M, K, nthreads);
}

}  // namespace pyllm
