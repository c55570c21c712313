// What every kernel source shares, whatever its ISA: thread count, block
// sizes and scratch sizes. Baseline code only; no intrinsics here.
#pragma once

#include <cstdint>

#include "quant_types.h"

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

// attention_masked_forward/backward scratch: per thread, one thread's sgemm
// blocks, a (T,T) matrix of dropped probabilities and one of score gradients
static inline int64_t attention_masked_thread_floats(int64_t T) {
    return sgemm_work_floats(1) + (2 * T * T + 15) / 16 * 16;
}
static inline int64_t attention_masked_work_floats(int64_t T, int nthreads) {
    return int64_t(nthreads) * attention_masked_thread_floats(T);
}

// attention_packed_forward scratch, sequences of at most T rows: per thread,
// one thread's sgemm blocks (heads it cannot take itself), or the (HS, T
// rounded up to 16) transposed keys and one vector of 16
static inline int64_t attention_packed_thread_floats(int64_t T, int64_t HS) {
    const int64_t own = HS * ((T + 15) / 16 * 16) + 16, gemm = sgemm_work_floats(1);
    return ((own > gemm ? own : gemm) + 15) / 16 * 16;
}
static inline int64_t attention_packed_work_floats(int64_t T, int64_t HS, int nthreads) {
    return int64_t(nthreads) * attention_packed_thread_floats(T, HS);
}

// ---- quantized weights: GGUF tensor types, their ids, block sizes and
// reference decoders, one row each in quant_types.h (kQuantTypes).

// qmatmul scratch (weights not packed): one fp32 row of K per thread.
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
// group zero-padded); group g holds, per block b of K/32 elements, one
// record of qpack_record_bytes(type), as qpack_format(type) says:
//   scales  s[subs][16]  fp16 (as stored) or fp32 (a K type's d * sc, computed once)
//   terms   m[subs][16]  the same type, when has_m (a K type's -dmin * mn: added)
//   q       int8 q[32][16] (q[k][r]: element k of row r), or nibble pairs
//           uint8 q[16][16] (q[j][r]: elements 2j low, 2j+1 high nibble),
//           for 5-bit elements first uint32 h[16] (bit k of h[r]: bit 4 of
//           element k of row r) then the nibble pairs of their low bits, or
//           a float type's q[32][16] in its stored precision
// and element k of row r is s[k / (32 / subs)][r] * (q[k][r] + offset) [+ m[..][r]],
// one rounding per operation as gguf's reference dequantizers: the bits of
// dequantize_row. Q6 elements and the IQ4 levels go into int8; the layout
// is the same on every ISA, the size the stored one's (the K types' fp32
// scales add 1-2 bits per element). Needs K a multiple of 32.
constexpr int64_t kPackRows = 16;

enum class PackElem { None, Int8, Nibble, Nibble5, F32, F16, BF16 };

struct PackFormat {
    PackElem elem = PackElem::None;
    int scale_bytes = 0;  // per row and sub-block: 2 (fp16) or 4 (fp32); 0 for the float types
    int subs = 1;         // sub-blocks of the 32 elements with scales of their own: 1 or 2
    bool has_m = false;   // a term added per row and sub-block, stored like the scales
    int offset = 0;       // added to a nibble (or 5-bit element) before it is scaled
};

constexpr PackFormat qpack_format(int type) {
    switch (type) {
        case kTypeF32: return {PackElem::F32, 0, 1, false, 0};
        case kTypeF16: return {PackElem::F16, 0, 1, false, 0};
        case kTypeBF16: return {PackElem::BF16, 0, 1, false, 0};
        case kTypeQ8_0:    // d * q
        case kTypeIQ4_NL:  // d * level
            return {PackElem::Int8, 2, 1, false, 0};
        case kTypeQ5_0: return {PackElem::Nibble5, 2, 1, false, -16};  // d * (q - 16)
        case kTypeQ4_0: return {PackElem::Nibble, 2, 1, false, -8};  // d * (q - 8)
        case kTypeQ4_1: return {PackElem::Nibble, 2, 1, true, 0};    // d * q + m
        case kTypeQ5_1: return {PackElem::Nibble5, 2, 1, true, 0};   // d * q + m
        case kTypeQ4_K: return {PackElem::Nibble, 4, 1, true, 0};    // (d * sc) * q - dmin * mn
        case kTypeQ5_K: return {PackElem::Nibble5, 4, 1, true, 0};   // the same, 5-bit q
        case kTypeQ6_K: return {PackElem::Int8, 4, 2, false, 0};     // (d * sc) * (q - 32), 16-element subs
        case kTypeQ3_K: return {PackElem::Nibble, 4, 2, false, -4};  // (d * (sc - 32)) * (q - 4 * !hbit)
        case kTypeQ2_K: return {PackElem::Nibble, 4, 2, true, 0};    // (d * sc) * q - dmin * mn
        case kTypeIQ4_XS: return {PackElem::Int8, 4, 1, false, 0};   // (d * (ls - 32)) * level
        default: return {};
    }
}

static inline bool qpack_supported(int type) { return qpack_format(type).elem != PackElem::None; }

// bytes of a record's scales (and terms) before its q
constexpr int64_t qpack_scale_bytes(int type) {
    const PackFormat f = qpack_format(type);
    return int64_t(f.scale_bytes) * f.subs * kPackRows * (f.has_m ? 2 : 1);
}

constexpr int64_t qpack_record_bytes(int type) {
    const PackElem e = qpack_format(type).elem;
    const int64_t q = e == PackElem::F32                            ? 4 * kQuantBlock
                      : e == PackElem::F16 || e == PackElem::BF16   ? 2 * kQuantBlock
                      : e == PackElem::Int8                         ? kQuantBlock
                      : e == PackElem::Nibble                       ? kQuantBlock / 2
                      : e == PackElem::Nibble5                      ? kQuantBlock / 2 + 4
                                                                    : 0;
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
