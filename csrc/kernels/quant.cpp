// GGUF tensor types in the kernels: row dequantizers (vector paths for F16,
// BF16, Q8_0, Q4_0, Q4_1; every other computable type through its reference
// decoder in quant_types.cpp), the Q8_0/Q4_0/Q4_1 quantizers, the packed
// layout of every computable type (common.h) and the products out = x @ W^T
// of inference. Not the type table (quant_types.h),
// not a GGUF reader.
//
// The block layouts are quant_types.h's. d * q is exact in fp32 for every
// format, so dequantizing is exact (Q4_1 rounds once, for + m) whatever
// the compiler contracts into an FMA.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "../simd/simd.h"
#include "common.h"

// Unrolled loops keep a decode tile's accumulators in registers on the SIMD
// paths; on the scalar path (vf is an array of floats) unrolling only
// multiplies the code, and the compile time by minutes, so it is left to the compiler.
#define PYLLM_PRAGMA(x) _Pragma(#x)
#if defined(PYLLM_ISA_SCALAR)
#define PYLLM_UNROLL(n)
#else
#define PYLLM_UNROLL(n) PYLLM_PRAGMA(GCC unroll n)
#endif

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t load_u16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
}

inline void store_u16(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

// ---- half precision

// fp16 -> fp32 (fp16_to_f32_portable: quant_types.h)
inline float fp16_to_f32(uint16_t h) {
#if defined(PYLLM_ISA_AVX2)
    return _cvtsh_ss(h);
#else
    return fp16_to_f32_portable(h);
#endif
}

// fp32 -> fp16, round to nearest even; beyond the fp16 range gives +-inf.
inline uint16_t f32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // at or past 65520 rounds to inf
    if (a >= 0x38800000u) {                        // fp16 normal (>= 2^-14)
        const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round to nearest even at bit 13
        return sign | uint16_t((r - 0x38000000u) >> 13);
    }
    // fp16 subnormal: a multiple of 2^-24; the scaling is exact, the rounding RNE
    return sign | uint16_t(std::nearbyint(bits_f32(a) * 16777216.0f));
}

// the smallest fp16 >= f and the largest fp16 <= f (f not NaN)
inline uint16_t fp16_up(float f) {
    uint16_t h = f32_to_fp16(f);
    if (fp16_to_f32_portable(h) < f) h = (h & 0x8000u) ? (h == 0x8000u ? 0x0001u : h - 1) : h + 1;
    return h;
}

inline uint16_t fp16_down(float f) {
    uint16_t h = f32_to_fp16(f);
    if (fp16_to_f32_portable(h) > f) h = (h & 0x8000u) ? h + 1 : (h == 0 ? 0x8001u : h - 1);
    return h;
}

// ---- reference quantizers, one block of 32 (plain loops: not a hot path)
//
// Scales are rounded to fp16 away from the data (d up, m down) and q is
// computed with the stored values, so no element is clamped except Q4_0's
// one-sided +8 end. Bounds, d and m the stored fp16 values:
//   Q8_0 |x - x'| <= d/2;  Q4_1 |x - x'| <= d/2;
//   Q4_0 |x - x'| <= |d|/2 where q < 15, <= |d| where q = 15 (the clamp).
// Inputs must keep d and m within fp16 range (|x| <= 65504 for Q4_1).

void quantize_block_q8_0(uint8_t* blk, const float* x) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const uint16_t dh = fp16_up(amax / 127.0f);
    const float d = fp16_to_f32_portable(dh);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    store_u16(blk, dh);
    for (int j = 0; j < 32; j++) {
        float q = std::nearbyint(x[j] * id);
        q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
        blk[offsetof(BlockQ8_0, qs) + j] = uint8_t(int8_t(q));
    }
}

void quantize_block_q4_0(uint8_t* blk, const float* x) {
    float mx = 0.0f;  // the element largest in magnitude, with its sign
    for (int j = 0; j < 32; j++) mx = std::fabs(x[j]) > std::fabs(mx) ? x[j] : mx;
    // d = mx / -8 rounded away from zero, so mx maps to q = 0 (d normal)
    const uint16_t dh = mx > 0.0f ? fp16_down(mx / -8.0f) : fp16_up(mx / -8.0f);
    const float d = fp16_to_f32_portable(dh);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(blk, dh);
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        float v = std::nearbyint(x[j] * id) + 8.0f;
        q[j] = uint8_t(v > 15.0f ? 15.0f : (v < 0.0f ? 0.0f : v));
    }
    for (int j = 0; j < 16; j++) blk[offsetof(BlockQ4_0, qs) + j] = uint8_t(q[j] | (q[j + 16] << 4));
}

void quantize_block_q4_1(uint8_t* blk, const float* x) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    const uint16_t mh = fp16_down(mn);
    const float m = fp16_to_f32_portable(mh);
    const uint16_t dh = fp16_up(float((double(mx) - double(m)) / 15.0));
    const float d = fp16_to_f32_portable(dh);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    store_u16(blk, dh);
    store_u16(blk + offsetof(BlockQ4_1, m), mh);
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        const float v = std::nearbyint((x[j] - m) * id);
        q[j] = uint8_t(v > 15.0f ? 15.0f : (v < 0.0f ? 0.0f : v));
    }
    for (int j = 0; j < 16; j++) blk[offsetof(BlockQ4_1, qs) + j] = uint8_t(q[j] | (q[j + 16] << 4));
}

// ---- Q4 nibbles

#if defined(PYLLM_ISA_AVX2)
// Q4 nibbles qs[16] -> 32 x u8 in element order: both halves get the 16
// bytes, the upper half shifted right by 4, then the low nibbles are kept.
static inline __m256i load_q4(const uint8_t* qs) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)qs));
    const __m256i shifted = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f));
}
#endif

inline float dot_f32(const float* a, const float* b, int64_t K) {
    vf acc0 = vzero(), acc1 = vzero();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        acc0 = vfma(vload(a + k), vload(b + k), acc0);
        acc1 = vfma(vload(a + k + 8), vload(b + k + 8), acc1);
    }
    for (; k + 8 <= K; k += 8) acc0 = vfma(vload(a + k), vload(b + k), acc0);
    float s = vhsum(vadd(acc0, acc1));
    for (; k < K; k++) s += a[k] * b[k];
    return s;
}

}  // namespace

void dequantize_row_ref(float* out, const void* src, int64_t n, int type) {
    // src: n elements of `type` -> out (n,), by the type's reference decoder (quant_types.cpp)
    const QuantType* t = quant_type(type);
    if (t && t->dequantize) t->dequantize(out, static_cast<const uint8_t*>(src), n / t->block);
}

void dequantize_row(float* out, const void* src, int64_t n, int type) {
    // src: n elements of `type` -> out (n,)
#if defined(PYLLM_ISA_AVX2)
    const uint8_t* p = static_cast<const uint8_t*>(src);
    const int64_t nb = n / kQuantBlock;  // the 32-element types: n is a multiple of 32, no tail
    switch (type) {
        case kTypeF16: {
            int64_t i = 0;
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 2 * i))));
            for (; i < n; i++) out[i] = fp16_to_f32(load_u16(p + 2 * i));
            return;
        }
        case kTypeBF16: {
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) {
                const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p + 2 * i)));
                _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
            }
            for (; i < n; i++) out[i] = bits_f32(uint32_t(load_u16(p + 2 * i)) << 16);
            return;
        }
        case kTypeQ8_0:
            for (int64_t b = 0; b < nb; b++, p += sizeof(BlockQ8_0)) {
                const __m256 d = _mm256_set1_ps(fp16_to_f32(load_u16(p + offsetof(BlockQ8_0, d))));
                for (int j = 0; j < 32; j += 8) {
                    const uint8_t* qs = p + offsetof(BlockQ8_0, qs) + j;
                    const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)qs));
                    _mm256_storeu_ps(out + b * 32 + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
                }
            }
            return;
        case kTypeQ4_0:
        case kTypeQ4_1: {
            const bool q41 = type == kTypeQ4_1;
            const int64_t bb = q41 ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
            const int64_t qs = q41 ? offsetof(BlockQ4_1, qs) : offsetof(BlockQ4_0, qs);
            const __m256i offset = _mm256_set1_epi32(q41 ? 0 : 8);
            for (int64_t b = 0; b < nb; b++, p += bb) {
                const __m256 d = _mm256_set1_ps(fp16_to_f32(load_u16(p)));  // d leads both layouts
                const __m256 m = _mm256_set1_ps(q41 ? fp16_to_f32(load_u16(p + offsetof(BlockQ4_1, m))) : 0.0f);
                const __m256i q = load_q4(p + qs);  // 32 x u8, element order
                for (int j = 0; j < 32; j += 8) {
                    const __m128i q8 = j < 16 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
                    const __m256i qi = _mm256_sub_epi32(
                        _mm256_cvtepu8_epi32(j % 16 ? _mm_srli_si128(q8, 8) : q8), offset);
                    // d * q is exact, so mul then add rounds once whether or not it fuses;
                    // Q4_0 adds nothing (adding +0 would turn d * 0 = -0 into +0)
                    __m256 x = _mm256_mul_ps(d, _mm256_cvtepi32_ps(qi));
                    if (q41) x = _mm256_add_ps(x, m);
                    _mm256_storeu_ps(out + b * 32 + j, x);
                }
            }
            return;
        }
        default:
            dequantize_row_ref(out, src, n, type);
            return;
    }
#else
    dequantize_row_ref(out, src, n, type);
#endif
}

void quantize_row(void* dst, const float* src, int64_t n, int type) {
    // src (n,) -> dst: n/32 blocks of `type` (Q8_0, Q4_0, Q4_1)
    uint8_t* p = static_cast<uint8_t*>(dst);
    const int64_t bb = quant_block_bytes(type);
    for (int64_t b = 0; b < n / kQuantBlock; b++) {
        if (type == kTypeQ8_0) quantize_block_q8_0(p + b * bb, src + b * kQuantBlock);
        if (type == kTypeQ4_0) quantize_block_q4_0(p + b * bb, src + b * kQuantBlock);
        if (type == kTypeQ4_1) quantize_block_q4_1(p + b * bb, src + b * kQuantBlock);
    }
}

void qmatmul_ref(float* out, const float* x, const void* W, int64_t M, int64_t N, int64_t K,
                 int type) {
    // x (M,K), W (N,K) rows of `type` -> out (M,N), products summed in double
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t row_bytes = quant_row_bytes(type, K);
    // W's rows decoded a chunk at a time: one block, or 32 elements of a plain array
    const int64_t be = quant_block_elems(type), chunk = be > 1 ? be : kQuantBlock;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t m = 0; m < M; m++) {
            double acc = 0.0;
            for (int64_t k0 = 0; k0 < K; k0 += chunk) {
                float wk[kQuantMaxBlock];
                const int64_t len = K - k0 < chunk ? K - k0 : chunk;
                dequantize_row_ref(wk, w + n * row_bytes + quant_row_bytes(type, k0), len, type);
                for (int64_t j = 0; j < len; j++) acc += double(x[m * K + k0 + j]) * double(wk[j]);
            }
            out[m * N + n] = float(acc);
        }
    }
}

void qmatmul(float* out, const float* x, const void* W, int64_t M, int64_t N, int64_t K, int type,
             float* work) {
    // x (M,K), W (N,K) as N rows of quant_row_bytes(type, K) bytes of a computable type -> out (M,N)
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        std::memset(out, 0, sizeof(float) * size_t(M * N));
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t row_bytes = quant_row_bytes(type, K);
    const int nt = M * N * K < (int64_t(1) << 15) ? 1 : num_threads();

    // Weights not packed (F32, F16, BF16 and the types without a packed
    // layout): each weight row, decoded exactly into the thread's K floats
    // of work unless F32, against every x row, in fp32.
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float* row = work + int64_t(thread_index()) * K;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float* wn = reinterpret_cast<const float*>(w + n * row_bytes);
            if (type != kTypeF32) {
                dequantize_row(row, w + n * row_bytes, K, type);
                wn = row;
            }
            for (int64_t m = 0; m < M; m++) out[m * N + n] = dot_f32(x + m * K, wn, K);
        }
    }
}

// ---- packed weights (layout in common.h): repack, dequantize in lanes, products

namespace {

// Block b (elements [32b, 32b + 32)) of a GGUF row, as its packed record
// holds it: fp16 scale (and term) bits as stored, or fp32 ones computed in
// the order of gguf's reference (d * sc, once; a term negated, so that
// adding it is the reference's subtraction), and q as int8 values or
// nibbles (quant_types.h has the block layouts).
struct BlockParts {
    uint16_t d16 = 0, m16 = 0;
    float s[2] = {0, 0}, m[2] = {0, 0};
    int8_t q[32] = {};
};

template <class B>
B block_at(const uint8_t* row, int64_t i) {
    B blk;
    std::memcpy(&blk, row + i * int64_t(sizeof(B)), sizeof(B));
    return blk;
}

inline int nib(const uint8_t* qs, int k) { return k < 16 ? qs[k] & 0x0f : qs[k - 16] >> 4; }

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

void block_parts(int type, const uint8_t* row, int64_t b, BlockParts& p) {
    const int j = int(b % 8);  // the 32-element sub-block of a 256-element super-block
    switch (type) {
        case kTypeQ8_0: {
            const auto blk = block_at<BlockQ8_0>(row, b);
            p.d16 = blk.d;
            for (int k = 0; k < 32; k++) p.q[k] = blk.qs[k];
            break;
        }
        case kTypeQ4_0: {
            const auto blk = block_at<BlockQ4_0>(row, b);
            p.d16 = blk.d;
            for (int k = 0; k < 32; k++) p.q[k] = int8_t(nib(blk.qs, k));
            break;
        }
        case kTypeQ4_1: {
            const auto blk = block_at<BlockQ4_1>(row, b);
            p.d16 = blk.d;
            p.m16 = blk.m;
            for (int k = 0; k < 32; k++) p.q[k] = int8_t(nib(blk.qs, k));
            break;
        }
        case kTypeQ5_0: {
            const auto blk = block_at<BlockQ5_0>(row, b);
            const uint32_t qh = load_u32(blk.qh);
            p.d16 = blk.d;
            for (int k = 0; k < 32; k++) p.q[k] = int8_t(nib(blk.qs, k) | int((qh >> k) & 1) << 4);
            break;
        }
        case kTypeQ5_1: {
            const auto blk = block_at<BlockQ5_1>(row, b);
            const uint32_t qh = load_u32(blk.qh);
            p.d16 = blk.d;
            p.m16 = blk.m;
            for (int k = 0; k < 32; k++) p.q[k] = int8_t(nib(blk.qs, k) | int((qh >> k) & 1) << 4);
            break;
        }
        case kTypeIQ4_NL: {
            const auto blk = block_at<BlockIQ4_NL>(row, b);
            p.d16 = blk.d;
            for (int k = 0; k < 32; k++) p.q[k] = kIQ4Values[nib(blk.qs, k)];
            break;
        }
        case kTypeQ4_K:
        case kTypeQ5_K: {
            const bool five = type == kTypeQ5_K;
            const auto b4 = five ? BlockQ4_K{} : block_at<BlockQ4_K>(row, b / 8);
            const auto b5 = five ? block_at<BlockQ5_K>(row, b / 8) : BlockQ5_K{};
            const uint16_t d = five ? b5.d : b4.d, dmin = five ? b5.dmin : b4.dmin;
            const uint8_t* scales = five ? b5.scales : b4.scales;
            const uint8_t* qs = (five ? b5.qs : b4.qs) + 32 * (j / 2);
            int sc, mn;
            scale_min_k4(scales, j, sc, mn);
            p.s[0] = fp16_to_f32_portable(d) * float(sc);
            p.m[0] = -(fp16_to_f32_portable(dmin) * float(mn));
            for (int l = 0; l < 32; l++)
                p.q[l] = int8_t(((qs[l] >> (4 * (j % 2))) & 0x0f) | (five ? ((b5.qh[l] >> j) & 1) << 4 : 0));
            break;
        }
        case kTypeQ6_K: {
            const auto blk = block_at<BlockQ6_K>(row, b / 8);
            const float d = fp16_to_f32_portable(blk.d);
            for (int h = 0; h < 2; h++) p.s[h] = d * float(blk.scales[2 * j + h]);
            for (int l = 0; l < 32; l++) {
                // element e of the super-block: 128 hh + 64 k + ll
                const int e = 32 * j + l, hh = e / 128, k = (e % 128) / 64, ll = e % 64, sh = 2 * k + ll / 32;
                const int lo = (blk.ql[64 * hh + ll] >> (4 * k)) & 0x0f;
                const int hi = (blk.qh[32 * hh + ll % 32] >> (2 * sh)) & 3;
                p.q[l] = int8_t((lo | hi << 4) - 32);
            }
            break;
        }
        case kTypeQ3_K:
        case kTypeQ2_K: {
            const bool three = type == kTypeQ3_K;
            const auto b3 = three ? block_at<BlockQ3_K>(row, b / 8) : BlockQ3_K{};
            const auto b2 = three ? BlockQ2_K{} : block_at<BlockQ2_K>(row, b / 8);
            for (int h = 0; h < 2; h++) {
                const int sub = 2 * j + h;  // of 16 sub-blocks of 16
                if (three) {
                    const int lo = sub < 8 ? b3.scales[sub] & 0x0f : b3.scales[sub - 8] >> 4;
                    const int hi = (b3.scales[8 + sub % 4] >> (2 * (sub / 4))) & 3;
                    p.s[h] = fp16_to_f32_portable(b3.d) * float((lo | hi << 4) - 32);
                } else {
                    p.s[h] = fp16_to_f32_portable(b2.d) * float(b2.scales[sub] & 0x0f);
                    p.m[h] = -(fp16_to_f32_portable(b2.dmin) * float(b2.scales[sub] >> 4));
                }
            }
            const uint8_t* qs = three ? b3.qs : b2.qs;
            for (int l = 0; l < 32; l++) {
                // element e: 128 hh + 32 sh + ll, bits 2sh of qs[32 hh + ll]; Q3_K's high bit in hmask
                const int e = 32 * j + l, hh = e / 128, sh = (e % 128) / 32;
                const int low = (qs[32 * hh + l] >> (2 * sh)) & 3;
                p.q[l] = int8_t(three ? low | ((b3.hmask[l] >> (e / 32)) & 1) << 2 : low);
            }
            break;
        }
        case kTypeIQ4_XS: {
            const auto blk = block_at<BlockIQ4_XS>(row, b / 8);
            const int lo = (blk.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f, hi = (blk.scales_h >> (2 * j)) & 3;
            p.s[0] = fp16_to_f32_portable(blk.d) * float((lo | hi << 4) - 32);
            for (int l = 0; l < 32; l++) p.q[l] = kIQ4Values[nib(blk.qs + 16 * j, l)];
            break;
        }
        default:
            break;
    }
}

}  // namespace

void qpack_weights(void* dst, const void* W, int64_t N, int64_t K, int type) {
    // W (N,K) GGUF rows -> dst: groups of 16 rows, one record per 32 elements (common.h)
    const uint8_t* w = static_cast<const uint8_t*>(W);
    uint8_t* out = static_cast<uint8_t*>(dst);
    const PackFormat f = qpack_format(type);
    const int64_t nb = K / kQuantBlock, rb = qpack_record_bytes(type), row_bytes = quant_row_bytes(type, K);
    const int64_t groups = ceil_div(N, kPackRows), sb = qpack_scale_bytes(type);
    if (groups <= 0 || nb <= 0 || f.elem == PackElem::None) return;  // nothing to pack (and dst may be null)
    std::memset(out, 0, size_t(groups * nb * rb));
    const bool floats = f.elem == PackElem::F32 || f.elem == PackElem::F16 || f.elem == PackElem::BF16;
    const int64_t eb = floats ? quant_block_bytes(type) : 0;  // a float type's bytes per element
    const int64_t terms = int64_t(f.scale_bytes) * f.subs * kPackRows;  // where the terms start
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t* rec = out + (g * nb + b) * rb;
            uint8_t* q = rec + sb;
            for (int64_t r = 0; r < kPackRows && g * kPackRows + r < N; r++) {
                const uint8_t* row = w + (g * kPackRows + r) * row_bytes;
                if (floats) {
                    for (int64_t k = 0; k < kQuantBlock; k++)
                        std::memcpy(q + (k * kPackRows + r) * eb, row + (b * kQuantBlock + k) * eb, size_t(eb));
                    continue;
                }
                BlockParts p;
                block_parts(type, row, b, p);
                for (int h = 0; h < f.subs; h++) {
                    uint8_t* sc = rec + (h * kPackRows + r) * f.scale_bytes;
                    if (f.scale_bytes == 2) {
                        std::memcpy(sc, &p.d16, 2);
                        if (f.has_m) std::memcpy(sc + terms, &p.m16, 2);
                    } else {
                        std::memcpy(sc, &p.s[h], 4);
                        if (f.has_m) std::memcpy(sc + terms, &p.m[h], 4);
                    }
                }
                if (f.elem == PackElem::Int8) {
                    for (int64_t k = 0; k < kQuantBlock; k++) q[k * kPackRows + r] = uint8_t(p.q[k]);
                } else if (f.elem == PackElem::Nibble5) {
                    uint32_t h = 0;
                    for (int k = 0; k < 32; k++) h |= uint32_t((p.q[k] >> 4) & 1) << k;
                    std::memcpy(q + 4 * r, &h, 4);
                    for (int64_t jj = 0; jj < kQuantBlock / 2; jj++)
                        q[4 * kPackRows + jj * kPackRows + r] = uint8_t((p.q[2 * jj] & 0x0f) | (p.q[2 * jj + 1] << 4));
                } else {
                    for (int64_t jj = 0; jj < kQuantBlock / 2; jj++)
                        q[jj * kPackRows + r] = uint8_t(p.q[2 * jj] | (p.q[2 * jj + 1] << 4));
                }
            }
        }
    }
}

namespace {

// ---- a packed record's 16 rows dequantized in vector lanes: two 8-float
// halves (vf) on every ISA, one zmm on AVX-512. The same values as
// dequantize_row (d * q is exact, so Q4_1's + m rounds once), and the same
// per-lane operations either way.

struct Lanes8 {
    using V = vf;
    static constexpr int kHalves = 2;  // vectors per 16 rows
    static V zero() { return vzero(); }
    static V set1(float x) { return vset1(x); }
    static V load(const float* p) { return vload(p); }
    static void store(float* p, V a) { vstore(p, a); }
    static V add(V a, V b) { return vadd(a, b); }
    static V mul(V a, V b) { return vmul(a, b); }
    static V fma(V a, V b, V c) { return vfma(a, b, c); }
    // 8 fp16 scales -> floats
    static V scales(const uint8_t* p) {
#if defined(PYLLM_ISA_AVX2)
        return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
#else
        float f[8];
        for (int i = 0; i < 8; i++) f[i] = fp16_to_f32(load_u16(p + 2 * i));
        return vload(f);
#endif
    }
    // 8 bf16 values -> floats (the top halves of their fp32 bits)
    static V bf16(const uint8_t* p) {
#if defined(PYLLM_ISA_AVX2)
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return {_mm256_castsi256_ps(_mm256_slli_epi32(v, 16))};
#else
        float f[8];
        for (int i = 0; i < 8; i++) f[i] = bits_f32(uint32_t(load_u16(p + 2 * i)) << 16);
        return vload(f);
#endif
    }
    // 8 floats of a packed record (records start 64-byte aligned: 4-byte aligned floats)
    static V f32(const uint8_t* p) { return vload(reinterpret_cast<const float*>(p)); }
    // int8 q of 8 rows -> floats
    static V q8(const uint8_t* p) {
#if defined(PYLLM_ISA_AVX2)
        const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        return {_mm256_cvtepi32_ps(v)};
#else
        float f[8];
        for (int i = 0; i < 8; i++) f[i] = float(int8_t(p[i]));
        return vload(f);
#endif
    }
    // the high-bit words of 8 rows (at h), loaded once per record: bit k of
    // a row's word is bit 4 of its element k
#if defined(PYLLM_ISA_AVX2)
    using HighBits = __m256i;
    static HighBits high_bits(const uint8_t* h) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)); }
    // bit k of each lane moved to bit 4, the other bits cleared
    static __m256i bit4(__m256i w, int k) {
        const __m256i t = k >= 4 ? _mm256_srl_epi32(w, _mm_cvtsi32_si128(k - 4)) : _mm256_sll_epi32(w, _mm_cvtsi32_si128(4 - k));
        return _mm256_and_si256(t, _mm256_set1_epi32(16));
    }
#else
    using HighBits = const uint8_t*;
    static HighBits high_bits(const uint8_t* h) { return h; }
#endif
    // 5-bit elements k, k+1 of 8 rows: their nibble pairs at p, the rows' high bits in hb
    static void q5(const uint8_t* p, HighBits hb, int k, V& lo, V& hi) {
#if defined(PYLLM_ISA_AVX2)
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        const __m256i b0 = bit4(hb, k), b1 = bit4(hb, k + 1);
        lo = {_mm256_cvtepi32_ps(_mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0x0f)), b0))};
        hi = {_mm256_cvtepi32_ps(_mm256_or_si256(_mm256_srli_epi32(v, 4), b1))};
#else
        float l[8], u[8];
        for (int i = 0; i < 8; i++) {
            uint32_t w;
            std::memcpy(&w, hb + 4 * i, 4);
            l[i] = float((p[i] & 0x0f) | ((w >> k) & 1) << 4);
            u[i] = float((p[i] >> 4) | ((w >> (k + 1)) & 1) << 4);
        }
        lo = vload(l);
        hi = vload(u);
#endif
    }
    // nibble pairs of 8 rows -> the low (element 2j) and high (2j+1) nibbles as floats
    static void q4(const uint8_t* p, V& lo, V& hi) {
#if defined(PYLLM_ISA_AVX2)
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
        lo = {_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0x0f)))};
        hi = {_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4))};
#else
        float l[8], h[8];
        for (int i = 0; i < 8; i++) l[i] = float(p[i] & 0x0f), h[i] = float(p[i] >> 4);
        lo = vload(l);
        hi = vload(h);
#endif
    }
};

#if defined(PYLLM_ISA_AVX512)
struct Lanes16 {
    using V = __m512;
    static constexpr int kHalves = 1;
    static V zero() { return _mm512_setzero_ps(); }
    static V set1(float x) { return _mm512_set1_ps(x); }
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, V a) { _mm512_storeu_ps(p, a); }
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V scales(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
    static V bf16(const uint8_t* p) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    }
    static V f32(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }
    static V q8(const uint8_t* p) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    }
    using HighBits = __m512i;
    static HighBits high_bits(const uint8_t* h) { return _mm512_loadu_si512(h); }
    static __m512i bit4(__m512i w, int k) {
        const __m512i t = k >= 4 ? _mm512_srl_epi32(w, _mm_cvtsi32_si128(k - 4)) : _mm512_sll_epi32(w, _mm_cvtsi32_si128(4 - k));
        return _mm512_and_si512(t, _mm512_set1_epi32(16));
    }
    static void q5(const uint8_t* p, HighBits hb, int k, V& lo, V& hi) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        const __m512i b0 = bit4(hb, k), b1 = bit4(hb, k + 1);
        lo = _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0x0f)), b0));
        hi = _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_srli_epi32(v, 4), b1));
    }
    static void q4(const uint8_t* p, V& lo, V& hi) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0x0f)));
        hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    }
};
using Lanes = Lanes16;
#else
using Lanes = Lanes8;
#endif

// One record's scales and terms (per sub-block and vector of rows) and elements.
template <class P, int TYPE>
struct Record {
    static constexpr PackFormat F = qpack_format(TYPE);
    static constexpr int H = P::kHalves, W = int(kPackRows) / H;  // vectors, rows per vector
    static constexpr int S = F.subs;
    // s * q fits in 24 bits for every type (an fp16 or fp16-times-6-bit
    // scale, an element of at most 6 bits), so it is exact and one fused
    // s * q + m rounds exactly as dequantize_row's product-then-sum does;
    // an offset o becomes m = s * o, exact too (o is -4, -8 or -16)
    static constexpr bool kTerm = F.has_m || F.offset != 0;
    typename P::V s[S][H], m[S][H];
    typename P::HighBits hb[H];  // Nibble5's high bits
    const uint8_t* q = nullptr;
    Record() = default;
    explicit Record(const uint8_t* rec) { load(rec); }
    static typename P::V scale(const uint8_t* p) { return F.scale_bytes == 2 ? P::scales(p) : P::f32(p); }
    void load(const uint8_t* rec) {
        q = rec + qpack_scale_bytes(TYPE);
        if (F.scale_bytes == 0) return;
        const int64_t terms = int64_t(F.scale_bytes) * S * kPackRows;
        for (int i = 0; i < S; i++)
            for (int h = 0; h < H; h++) {
                const uint8_t* at = rec + (i * kPackRows + W * h) * F.scale_bytes;
                s[i][h] = scale(at);
                m[i][h] = F.has_m ? scale(at + terms) : F.offset != 0 ? P::mul(s[i][h], P::set1(float(F.offset)))
                                                                      : P::zero();
            }
        if (F.elem == PackElem::Nibble5)
            for (int h = 0; h < H; h++) hb[h] = P::high_bits(q + 4 * W * h);
    }
    typename P::V weight(typename P::V qv, int i, int h) const {
        static_assert(!(F.has_m && F.offset != 0), "a type has a term or an offset, not both");
        return kTerm ? P::fma(s[i][h], qv, m[i][h]) : P::mul(s[i][h], qv);
    }
    // elements k, k+1 (k even) of the rows of vector h
    void pair(int64_t k, int h, typename P::V& w0, typename P::V& w1) const {
        const int i = S == 2 ? int(k / 16) : 0;  // k and k+1 share a sub-block
        if (F.elem == PackElem::F32 || F.elem == PackElem::F16 || F.elem == PackElem::BF16) {
            constexpr int64_t eb = F.elem == PackElem::F32 ? 4 : 2;
            const uint8_t* p0 = q + (k * kPackRows + W * h) * eb;
            const uint8_t* p1 = p0 + kPackRows * eb;
            w0 = F.elem == PackElem::F32 ? P::f32(p0) : F.elem == PackElem::F16 ? P::scales(p0) : P::bf16(p0);
            w1 = F.elem == PackElem::F32 ? P::f32(p1) : F.elem == PackElem::F16 ? P::scales(p1) : P::bf16(p1);
        } else if (F.elem == PackElem::Int8) {
            w0 = weight(P::q8(q + k * kPackRows + W * h), i, h);
            w1 = weight(P::q8(q + (k + 1) * kPackRows + W * h), i, h);
        } else if (F.elem == PackElem::Nibble5) {
            typename P::V lo, hi;
            P::q5(q + 4 * kPackRows + k / 2 * kPackRows + W * h, hb[h], int(k), lo, hi);
            w0 = weight(lo, i, h);
            w1 = weight(hi, i, h);
        } else {
            typename P::V lo, hi;
            P::q4(q + k / 2 * kPackRows + W * h, lo, hi);
            w0 = weight(lo, i, h);
            w1 = weight(hi, i, h);
        }
    }
};

// MB activation rows (stride ldx) against G consecutive groups from g0 of
// packed Wp -> o[m*ldo + 16*gi + r]. Each output is summed in the order of
// common.h's gemm_k_block (kcb blocks of 32 per k block): a chain of FMAs
// per k block, the block sums added in order, so every output has the bits
// sgemm_packed_b gives it, whatever MB and G are.
template <class P, int TYPE, int MB, int G>
inline void qpack_tile(float* o, int64_t ldo, const float* x, int64_t ldx, const uint8_t* Wp, int64_t g0,
                       int64_t nb, int64_t kcb) {
    constexpr int64_t RB = qpack_record_bytes(TYPE);
    constexpr int H = P::kHalves, W = int(kPackRows) / H;
    using V = typename P::V;
#if defined(PYLLM_ISA_AVX512)
    // 8 records on in the group's own stream (contiguous), as measured on a Xeon
    const int64_t ahead = 8 * RB;
#elif defined(PYLLM_ISA_AVX2)
    // this record of the next pass, the G groups after these (contiguous): on
    // Zen 3 with 2 threads, 8 records on in the group's own stream left the
    // next pass's other groups cold (Q8_0 decode +15%, Q4_0 +6% this way)
    const int64_t ahead = G * nb * RB;
#endif
    for (int64_t b0 = 0; b0 < nb; b0 += kcb) {
        const int64_t b1 = b0 + kcb < nb ? b0 + kcb : nb;
        // every loop over the tile's lanes is unrolled, so acc lives in
        // registers (an indexed array would make each FMA chain go through memory)
        V acc[MB][G][H];
PYLLM_UNROLL(4)
        for (int mi = 0; mi < MB; mi++)
PYLLM_UNROLL(4)
            for (int gi = 0; gi < G; gi++)
PYLLM_UNROLL(2)
                for (int h = 0; h < H; h++) acc[mi][gi][h] = P::zero();
        for (int64_t b = b0; b < b1; b++) {
            const float* xb = x + b * kQuantBlock;
            Record<P, TYPE> rec[G];
PYLLM_UNROLL(4)
            for (int gi = 0; gi < G; gi++) {
                const uint8_t* r = Wp + ((g0 + gi) * nb + b) * RB;
#if defined(PYLLM_ISA_AVX2)
                // weights stream from DRAM once per token: fetch ahead
                for (int64_t line = 0; line < RB; line += 64)
                    _mm_prefetch(reinterpret_cast<const char*>(r + ahead + line), _MM_HINT_T0);
#endif
                rec[gi].load(r);
            }
PYLLM_UNROLL(16)
            for (int64_t k = 0; k < kQuantBlock; k += 2) {
                V x0[MB], x1[MB];
PYLLM_UNROLL(4)
                for (int mi = 0; mi < MB; mi++) x0[mi] = P::set1(xb[mi * ldx + k]), x1[mi] = P::set1(xb[mi * ldx + k + 1]);
PYLLM_UNROLL(4)
                for (int gi = 0; gi < G; gi++) {
PYLLM_UNROLL(2)
                    for (int h = 0; h < H; h++) {
                        V w0, w1;
                        rec[gi].pair(k, h, w0, w1);
PYLLM_UNROLL(4)
                        for (int mi = 0; mi < MB; mi++) {
                            acc[mi][gi][h] = P::fma(x0[mi], w0, acc[mi][gi][h]);
                            acc[mi][gi][h] = P::fma(x1[mi], w1, acc[mi][gi][h]);
                        }
                    }
                }
            }
        }
        for (int mi = 0; mi < MB; mi++)
            for (int gi = 0; gi < G; gi++)
                for (int h = 0; h < H; h++) {
                    float* y = o + mi * ldo + gi * kPackRows + W * h;
                    P::store(y, b0 == 0 ? acc[mi][gi][h] : P::add(acc[mi][gi][h], P::load(y)));
                }
    }
}

// Groups per pass for one activation row: as many as keep the pass's
// accumulators, scales and terms in registers. AVX2 has 16 ymm registers and
// two per group for its 16 rows: a spilled accumulator makes every FMA of
// its chain go through memory (Q5_0 ran at 0.65x with 4 groups on Zen 3,
// Q8_0 at 0.8x), so AVX2 takes 1 group for 5-bit elements (their high-bit
// words are a register more), 2 for two sub-blocks (two scales), else 3.
// AVX-512 (32 zmm, one per group) and the other paths take 4.
template <int TYPE>
constexpr int matvec_groups() {
#if defined(PYLLM_ISA_AVX2) && !defined(PYLLM_ISA_AVX512)
    constexpr PackFormat f = qpack_format(TYPE);
    return f.elem == PackElem::Nibble5 ? 1 : f.subs == 2 ? 2 : 3;
#else
    return 4;
#endif
}

// rows [n0, n1) of packed Wp for M activation rows, TYPE fixed
template <int TYPE>
void qpack_matvec_type(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t M, const uint8_t* Wp,
                       int64_t n0, int64_t n1, int64_t K) {
    constexpr int G = matvec_groups<TYPE>();
    const int64_t nb = K / kQuantBlock, kcb = gemm_k_block(K, kGemmKC, kQuantBlock) / kQuantBlock;
    alignas(64) float tile[4 * G * kPackRows];  // (4, G*16): partial groups at the end
    for (int64_t n = n0; n < n1;) {
        const int64_t g = n / kPackRows;
        const int64_t left = ceil_div(n1 - n, kPackRows);
        const int64_t span = M == 1 && left >= G ? G : 1;  // groups this pass
        const bool whole = n + span * kPackRows <= n1;
        for (int64_t m = 0; m < M;) {
            const int64_t mb = M - m >= 4 ? 4 : M - m >= 2 ? 2 : 1;
            float* o = whole ? out + m * ldo + n : tile;
            const int64_t lo = whole ? ldo : G * kPackRows;
            const float* xm = x + m * ldx;
            if (G > 1 && span == G)  // M == 1 (a single group is the mb == 1 tile below)
                qpack_tile<Lanes, TYPE, 1, G>(o, lo, xm, ldx, Wp, g, nb, kcb);
            else if (mb == 4)
                qpack_tile<Lanes, TYPE, 4, 1>(o, lo, xm, ldx, Wp, g, nb, kcb);
            else if (mb == 2)
                qpack_tile<Lanes, TYPE, 2, 1>(o, lo, xm, ldx, Wp, g, nb, kcb);
            else
                qpack_tile<Lanes, TYPE, 1, 1>(o, lo, xm, ldx, Wp, g, nb, kcb);
            if (!whole)
                for (int64_t i = 0; i < mb; i++)
                    for (int64_t j = 0; j < n1 - n; j++) out[(m + i) * ldo + n + j] = tile[i * lo + j];
            m += mb;
        }
        n += span * kPackRows;
    }
}

// The types with kernels of their own; the others share one of the same
// packed format (IQ4_NL records are Q8_0's: fp16 d, int8 levels).
#define PYLLM_PACKED_TYPES                                                                                  \
    PYLLM_PACKED(kTypeF32) PYLLM_PACKED(kTypeF16) PYLLM_PACKED(kTypeBF16) PYLLM_PACKED(kTypeQ8_0)             \
    PYLLM_PACKED(kTypeQ4_0) PYLLM_PACKED(kTypeQ4_1) PYLLM_PACKED(kTypeQ5_0) PYLLM_PACKED(kTypeQ5_1)           \
    PYLLM_PACKED(kTypeQ4_K)                                                                                   \
    PYLLM_PACKED(kTypeQ5_K) PYLLM_PACKED(kTypeQ6_K) PYLLM_PACKED(kTypeQ3_K) PYLLM_PACKED(kTypeQ2_K)           \
    PYLLM_PACKED(kTypeIQ4_XS)

constexpr int packed_kernel_type(int type) {
    return type == kTypeIQ4_NL ? kTypeQ8_0 : type;
}
static_assert(qpack_format(kTypeIQ4_NL).elem == qpack_format(kTypeQ8_0).elem &&
                  qpack_format(kTypeIQ4_NL).scale_bytes == qpack_format(kTypeQ8_0).scale_bytes &&
                  !qpack_format(kTypeIQ4_NL).has_m && qpack_format(kTypeIQ4_NL).offset == 0,
              "IQ4_NL shares Q8_0's records");

struct QPackSource {
    const uint8_t* w;  // packed weights (N,K)
    int64_t N, K;
    int type;
};

// sgemm_packed_b's packer: B = W^T, so a panel's columns are W's rows, and
// each packed load is already element k of 16 of them: dequantized into
// the panel with no transpose
template <int TYPE>
void pack_panels(const QPackSource& s, float* dst, int64_t n0, int64_t nc, int64_t k0, int64_t kc, int64_t nr) {
    constexpr int64_t RB = qpack_record_bytes(TYPE);
    const int64_t nb = s.K / kQuantBlock, groups = ceil_div(s.N, kPackRows);
    for (int64_t jr = 0; jr < nc; jr += nr) {
        float* panel = dst + jr / nr * kc * nr;  // (kc, nr)
        for (int64_t c = 0; c < nr; c += kPackRows) {
            const int64_t g = (n0 + jr + c) / kPackRows;
            if (jr + c >= nc || g >= groups) {  // columns past the end: zero
                for (int64_t k = 0; k < kc; k++) std::memset(panel + k * nr + c, 0, sizeof(float) * kPackRows);
                continue;
            }
            for (int64_t b = k0 / kQuantBlock; b < (k0 + kc) / kQuantBlock; b++) {
                using R = Record<Lanes, TYPE>;
                const R rec(s.w + (g * nb + b) * RB);
                float* p = panel + (b * kQuantBlock - k0) * nr + c;
                for (int64_t k = 0; k < kQuantBlock; k += 2)
                    for (int h = 0; h < R::H; h++) {
                        Lanes::V w0, w1;
                        rec.pair(k, h, w0, w1);
                        Lanes::store(p + k * nr + R::W * h, w0);
                        Lanes::store(p + (k + 1) * nr + R::W * h, w1);
                    }
            }
        }
    }
}

void qpack_pack_block(const void* ctx, float* dst, int64_t n0, int64_t nc, int64_t k0, int64_t kc, int64_t nr) {
    const QPackSource& s = *static_cast<const QPackSource*>(ctx);
    switch (packed_kernel_type(s.type)) {
#define PYLLM_PACKED(T) \
    case T: pack_panels<T>(s, dst, n0, nc, k0, kc, nr); break;
        PYLLM_PACKED_TYPES
#undef PYLLM_PACKED
        default: break;
    }
}

}  // namespace

void qpack_matvec(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t M, const void* Wp, int64_t n0,
                  int64_t n1, int64_t N, int64_t K, int type) {
    // x (M,K) rows at stride ldx, packed Wp (N,K) -> out[m*ldo + n] for n in [n0, n1)
    const uint8_t* w = static_cast<const uint8_t*>(Wp);
    if (n1 > N) n1 = N;
    if (M <= 0 || n0 >= n1) return;
    if (K <= 0) {
        for (int64_t m = 0; m < M; m++) std::memset(out + m * ldo + n0, 0, sizeof(float) * size_t(n1 - n0));
        return;
    }
    switch (packed_kernel_type(type)) {
#define PYLLM_PACKED(T) \
    case T: qpack_matvec_type<T>(out, ldo, x, ldx, M, w, n0, n1, K); break;
        PYLLM_PACKED_TYPES
#undef PYLLM_PACKED
        default: break;
    }
}

void qpack_matmul(float* out, const float* x, const void* Wp, int64_t M, int64_t N, int64_t K, int type,
                  float* work) {
    // x (M,K), packed Wp (N,K) -> out (M,N)
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        std::memset(out, 0, sizeof(float) * size_t(M * N));
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(Wp);
    if (M > kQuantMatvecMaxRows) {
        // prefill: sgemm on W dequantized exactly, block by block, straight
        // into the GEMM's packed layout (no fp32 copy of W)
        const QPackSource src{w, N, K, type};
        sgemm_packed_b(out, x, M, N, K, qpack_pack_block, &src, kQuantBlock, 2.0, work);
        return;
    }
    // a few rows: the weights stream once, 4 groups of 16 rows per task
    const int nt = M * N * K < (int64_t(1) << 15) ? 1 : num_threads();
    const int64_t step = 4 * kPackRows, tasks = ceil_div(N, step);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < tasks; t++)
        qpack_matvec(out, N, x, K, M, w, t * step, std::min(N, (t + 1) * step), N, K, type);
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
