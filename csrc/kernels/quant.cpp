// GGUF block formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1): row (de)quantizers and
// the quantized product out = x @ W^T of inference. Not K-quants, not a GGUF reader.
//
// Layouts (ggml's, checked against a real file): a Q block holds 32 elements.
//   Q8_0 {fp16 d; int8 q[32]}           x = d * q
//   Q4_0 {fp16 d; uint8 qs[16]}         x = d * (q - 8)
//   Q4_1 {fp16 d; fp16 m; uint8 qs[16]} x = d * q + m
// For Q4, element j < 16 is the low nibble of qs[j], element j + 16 its high
// nibble. d * q is exact in fp32 for every format, so dequantizing is exact
// (Q4_1 rounds once, for + m) whatever the compiler contracts into an FMA.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../simd/simd.h"
#include "common.h"

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

// fp16 -> fp32, exact. NaNs come out quiet with their payload, as F16C does.
inline float fp16_to_f32_portable(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
    if (exp) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    // zero or subnormal: man * 2^-24, exact in fp32
    return bits_f32(sign | f32_bits(float(man) * 5.9604644775390625e-8f));
}

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
        blk[2 + j] = uint8_t(int8_t(q));
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
    for (int j = 0; j < 16; j++) blk[2 + j] = uint8_t(q[j] | (q[j + 16] << 4));
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
    store_u16(blk + 2, mh);
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        const float v = std::nearbyint((x[j] - m) * id);
        q[j] = uint8_t(v > 15.0f ? 15.0f : (v < 0.0f ? 0.0f : v));
    }
    for (int j = 0; j < 16; j++) blk[4 + j] = uint8_t(q[j] | (q[j + 16] << 4));
}

// ---- int8 blocks: 32 values in element order and their dot products.
// The AVX2 versions, then portable ones with the same meaning.
#if defined(PYLLM_ISA_AVX2)

struct vb {
    __m256i v;
};

// Q4 nibbles qs[16] -> 32 x u8 in element order: both halves get the 16
// bytes, the upper half shifted right by 4, then the low nibbles are kept.
static inline vb load_q4(const uint8_t* qs) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)qs));
    const __m256i shifted = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    return {_mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))};
}

static inline vb load_i8(const int8_t* q) { return {_mm256_loadu_si256((const __m256i*)q)}; }

// u unsigned (<= 128), s signed (|s| <= 127): lane l = sum_{j<4} u[4l+j] * s[4l+j]
static inline vf dot_u8_i8(vb u, vb s) {
    const __m256i p16 = _mm256_maddubs_epi16(u.v, s.v);  // pairs, no saturation at these ranges
    return {_mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))};
}

// both signed: |a| times s with a's sign moved onto it (|-128| reads as u8 128)
static inline vf dot_i8_i8(vb a, vb s) {
    return dot_u8_i8({_mm256_sign_epi8(a.v, a.v)}, {_mm256_sign_epi8(s.v, a.v)});
}

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// x[32] -> q[32] = round(x * 127 / max|x|) (half to even); returns the scale
// max|x| / 127 and sets *sum to the sum of q.
static inline float quantize_block_i8(int8_t* q, const float* x, int32_t* sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = vhmax({a});
    const __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
    *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    // the packs interleave 128-bit lanes; the permute puts the dwords back in order
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i*)q, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return amax / 127.0f;
}

// The first two fp16 of NN blocks (d and, for Q4_1, m) as fp32 lanes
// [d0 e0 d1 e1 ...]; for Q4_0/Q8_0 the e lanes hold quant bytes: unused.
template <int NN>
static inline vf load_scales(const uint8_t* const* blk) {
    uint32_t u[4] = {0, 0, 0, 0};
    for (int r = 0; r < NN; r++) std::memcpy(&u[r], blk[r], 4);
    const __m128i h = _mm_setr_epi32(int(u[0]), int(u[1]), int(u[2]), int(u[3]));
    return {_mm256_cvtph_ps(h)};
}

#else

struct vb {
    int16_t v[32];
};

static inline vb load_q4(const uint8_t* qs) {
    vb r;
    for (int j = 0; j < 16; j++) {
        r.v[j] = int16_t(qs[j] & 0x0f);
        r.v[j + 16] = int16_t(qs[j] >> 4);
    }
    return r;
}

static inline vb load_i8(const int8_t* q) {
    vb r;
    for (int j = 0; j < 32; j++) r.v[j] = q[j];
    return r;
}

static inline vf dot_u8_i8(vb u, vb s) {
    float lanes[8];
    for (int l = 0; l < 8; l++) {
        int32_t acc = 0;
        for (int j = 4 * l; j < 4 * l + 4; j++) acc += int32_t(u.v[j]) * int32_t(s.v[j]);
        lanes[l] = float(acc);
    }
    return vload(lanes);
}

static inline vf dot_i8_i8(vb a, vb s) { return dot_u8_i8(a, s); }

static inline float quantize_block_i8(int8_t* q, const float* x, int32_t* sum) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int j = 0; j < 32; j++) {
        float v = std::nearbyint(x[j] * id);
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[j] = int8_t(v);
        s += q[j];
    }
    *sum = s;
    return amax / 127.0f;
}

template <int NN>
static inline vf load_scales(const uint8_t* const* blk) {
    float f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = 0; r < NN; r++) {
        f[2 * r] = fp16_to_f32(load_u16(blk[r]));
        f[2 * r + 1] = fp16_to_f32(load_u16(blk[r] + 2));
    }
    return vload(f);
}

#endif

// ---- the quantized product

// Activations quantized to int8 blocks of 32: q (M,K), and per block the
// scale d (M,K/32) and ds = d * sum of the block's q (M,K/32).
struct QAct {
    const int8_t* q;
    const float* d;
    const float* ds;
    int64_t K;
};

void quantize_act_row(int8_t* q, float* d, float* ds, const float* x, int64_t K) {
    // x (K,) -> q (K,), d (K/32,), ds (K/32,)
    for (int64_t b = 0; b < K / kQuantBlock; b++) {  // K is a multiple of 32: no tail
        int32_t sum = 0;
        d[b] = quantize_block_i8(q + b * kQuantBlock, x + b * kQuantBlock, &sum);
        ds[b] = d[b] * float(sum);
    }
}

// at most this many activation elements are quantized by the calling thread alone
constexpr int64_t kQuantSerialAct = 8192;

template <int TYPE>
constexpr int64_t block_bytes() {
    return TYPE == kTypeQ8_0 ? 34 : TYPE == kTypeQ4_0 ? 18 : 20;
}

// MM activation rows from m0 times NN weight rows from n0, into out (ld ldo).
// Per block: acc += dot(wq, xq) * d_w * d_x in 8 lanes. The scales of the NN
// weight blocks are converted together ([d0 e0 d1 e1 ..], e = m for Q4_1);
// the Q4 offsets times d_x * sum(q_x) accumulate in those lanes: lane 2r
// sums d_w * ds_x (Q4_0's -8 term), lane 2r+1 sums m_w * ds_x (Q4_1's).
template <int TYPE, int MM, int NN>
inline void qdot_tile(float* out, int64_t ldo, const QAct& a, int64_t m0, const uint8_t* W,
                      int64_t row_bytes, int64_t n0) {
    // xq (MM,K) blocks, W (NN,K) blocks -> out[m0:m0+MM, n0:n0+NN]
    static_assert(NN <= 4, "scales of at most 4 rows fit one vector");
    constexpr int64_t BB = block_bytes<TYPE>();
    constexpr int64_t QOFF = TYPE == kTypeQ4_1 ? 4 : 2;  // quants after d (and m)
    const int64_t nb = a.K / kQuantBlock;
    vf acc[MM][NN];
    vf cacc[MM];
    for (int m = 0; m < MM; m++) {
        cacc[m] = vzero();
        for (int r = 0; r < NN; r++) acc[m][r] = vzero();
    }
    const uint8_t* blk[NN];
    for (int r = 0; r < NN; r++) blk[r] = W + (n0 + r) * row_bytes;
    for (int64_t b = 0; b < nb; b++) {
        vb wq[NN];
        for (int r = 0; r < NN; r++) {
            if (TYPE == kTypeQ8_0)
                wq[r] = load_i8(reinterpret_cast<const int8_t*>(blk[r] + QOFF));
            else
                wq[r] = load_q4(blk[r] + QOFF);
        }
        const vf dw = load_scales<NN>(blk);
        for (int m = 0; m < MM; m++) {
            const int64_t xb = (m0 + m) * nb + b;
            const vb xq = load_i8(a.q + xb * kQuantBlock);
            // d_w * d_x per row, broadcast back from memory (a load, not a shuffle)
            float sc[8];
            vstore(sc, vmul(dw, vset1(a.d[xb])));
            if (TYPE != kTypeQ8_0) cacc[m] = vfma(dw, vset1(a.ds[xb]), cacc[m]);
            for (int r = 0; r < NN; r++) {
                const vf s = TYPE == kTypeQ8_0 ? dot_i8_i8(wq[r], xq) : dot_u8_i8(wq[r], xq);
                acc[m][r] = vfma(s, vset1(sc[2 * r]), acc[m][r]);
            }
        }
        for (int r = 0; r < NN; r++) blk[r] += BB;
    }
    for (int m = 0; m < MM; m++) {
        float c[8];
        vstore(c, cacc[m]);
        for (int r = 0; r < NN; r++) {
            const float corr = TYPE == kTypeQ4_0 ? -8.0f * c[2 * r] : TYPE == kTypeQ4_1 ? c[2 * r + 1] : 0.0f;
            out[(m0 + m) * ldo + n0 + r] = vhsum(acc[m][r]) + corr;
        }
    }
}

// Groups of 4 weight rows, split over the threads of the enclosing region;
// each group meets every activation row (4 at a time) while it sits in L1.
template <int TYPE>
void qmatmul_groups(float* out, const QAct& a, const uint8_t* W, int64_t M, int64_t N,
                    int64_t row_bytes) {
    // xq (M,K), W (N,K) -> out (M,N)
    const int64_t groups = ceil_div(N, 4);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        const int64_t n0 = 4 * g;
        if (n0 + 4 <= N) {
            int64_t m = 0;
            for (; m + 4 <= M; m += 4) {
                qdot_tile<TYPE, 4, 2>(out, N, a, m, W, row_bytes, n0);
                qdot_tile<TYPE, 4, 2>(out, N, a, m, W, row_bytes, n0 + 2);
            }
            switch (M - m) {  // the rows left over
                case 1: qdot_tile<TYPE, 1, 4>(out, N, a, m, W, row_bytes, n0); break;
                case 2: qdot_tile<TYPE, 2, 4>(out, N, a, m, W, row_bytes, n0); break;
                case 3:
                    qdot_tile<TYPE, 3, 2>(out, N, a, m, W, row_bytes, n0);
                    qdot_tile<TYPE, 3, 2>(out, N, a, m, W, row_bytes, n0 + 2);
                    break;
                default: break;
            }
        } else {
            for (int64_t n = n0; n < N; n++) {  // the last N % 4 weight rows
                int64_t m = 0;
                for (; m + 4 <= M; m += 4) qdot_tile<TYPE, 4, 1>(out, N, a, m, W, row_bytes, n);
                for (; m < M; m++) qdot_tile<TYPE, 1, 1>(out, N, a, m, W, row_bytes, n);
            }
        }
    }
}

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

// Prefill for many rows: W dequantized panel by panel into fp32 and multiplied
// by sgemm. fill(panel, n0, np) writes rows n0..n0+np of W into panel (np,K).
// work: sgemm's scratch, then the panel (P,K), then its product (M,P).
template <typename Fill>
void panel_gemm(float* out, const float* x, int64_t M, int64_t N, int64_t K, float* work, int nt,
                const Fill& fill) {
    // x (M,K), W (N,K) -> out (M,N)
    float* gemm_work = work;
    float* panel = work + sgemm_work_floats(num_threads());
    const int64_t P = qmatmul_panel_rows(K);
    float* cpanel = panel + P * K;
    for (int64_t n0 = 0; n0 < N; n0 += P) {
        const int64_t np = N - n0 < P ? N - n0 : P;
        fill(panel, n0, np);
        // a single panel is the whole of W: sgemm writes out directly
        float* c = np == N ? out : cpanel;
        sgemm(c, x, panel, M, np, K, false, true, false, gemm_work);
        if (c != out) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
            for (int64_t m = 0; m < M; m++)
                std::memcpy(out + m * N + n0, cpanel + m * np, sizeof(float) * size_t(np));
        }
    }
}

}  // namespace

void dequantize_row_ref(float* out, const void* src, int64_t n, int type) {
    // src: n elements of `type` -> out (n,)
    const uint8_t* p = static_cast<const uint8_t*>(src);
    const int64_t nb = n / kQuantBlock;
    switch (type) {
        case kTypeF32:
            std::memcpy(out, p, sizeof(float) * size_t(n));
            return;
        case kTypeF16:
            for (int64_t i = 0; i < n; i++) out[i] = fp16_to_f32_portable(load_u16(p + 2 * i));
            return;
        case kTypeBF16:
            for (int64_t i = 0; i < n; i++) out[i] = bits_f32(uint32_t(load_u16(p + 2 * i)) << 16);
            return;
        case kTypeQ8_0:
            for (int64_t b = 0; b < nb; b++, p += 34) {
                const float d = fp16_to_f32_portable(load_u16(p));
                for (int j = 0; j < 32; j++) out[b * 32 + j] = d * float(int8_t(p[2 + j]));
            }
            return;
        case kTypeQ4_0:
            for (int64_t b = 0; b < nb; b++, p += 18) {
                const float d = fp16_to_f32_portable(load_u16(p));
                for (int j = 0; j < 16; j++) {
                    out[b * 32 + j] = d * float(int(p[2 + j] & 0x0f) - 8);
                    out[b * 32 + j + 16] = d * float(int(p[2 + j] >> 4) - 8);
                }
            }
            return;
        case kTypeQ4_1:
            for (int64_t b = 0; b < nb; b++, p += 20) {
                const float d = fp16_to_f32_portable(load_u16(p));
                const float m = fp16_to_f32_portable(load_u16(p + 2));
                for (int j = 0; j < 16; j++) {
                    out[b * 32 + j] = d * float(p[4 + j] & 0x0f) + m;
                    out[b * 32 + j + 16] = d * float(p[4 + j] >> 4) + m;
                }
            }
            return;
        default:
            return;
    }
}

void dequantize_row(float* out, const void* src, int64_t n, int type) {
    // src: n elements of `type` -> out (n,)
#if defined(PYLLM_ISA_AVX2)
    const uint8_t* p = static_cast<const uint8_t*>(src);
    const int64_t nb = n / kQuantBlock;  // block types: n is a multiple of 32, no tail
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
            for (int64_t b = 0; b < nb; b++, p += 34) {
                const __m256 d = _mm256_set1_ps(fp16_to_f32(load_u16(p)));
                for (int j = 0; j < 32; j += 8) {
                    const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p + 2 + j)));
                    _mm256_storeu_ps(out + b * 32 + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
                }
            }
            return;
        case kTypeQ4_0:
        case kTypeQ4_1: {
            const bool q41 = type == kTypeQ4_1;
            const int64_t bb = q41 ? 20 : 18;
            const __m256i offset = _mm256_set1_epi32(q41 ? 0 : 8);
            for (int64_t b = 0; b < nb; b++, p += bb) {
                const __m256 d = _mm256_set1_ps(fp16_to_f32(load_u16(p)));
                const __m256 m = _mm256_set1_ps(q41 ? fp16_to_f32(load_u16(p + 2)) : 0.0f);
                const __m256i q = load_q4(p + (q41 ? 4 : 2)).v;  // 32 x u8, element order
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
    for (int64_t n = 0; n < N; n++) {
        for (int64_t m = 0; m < M; m++) {
            double acc = 0.0;
            for (int64_t k0 = 0; k0 < K; k0 += kQuantBlock) {
                float wk[kQuantBlock];
                const int64_t len = K - k0 < kQuantBlock ? K - k0 : kQuantBlock;
                dequantize_row_ref(wk, w + n * row_bytes + quant_row_bytes(type, k0), len, type);
                for (int64_t j = 0; j < len; j++) acc += double(x[m * K + k0 + j]) * double(wk[j]);
            }
            out[m * N + n] = float(acc);
        }
    }
}

void qmatmul(float* out, const float* x, const void* W, int64_t M, int64_t N, int64_t K, int type,
             float* work) {
    // x (M,K), W (N,K) as N rows of quant_row_bytes(type, K) bytes -> out (M,N)
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        std::memset(out, 0, sizeof(float) * size_t(M * N));
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t row_bytes = quant_row_bytes(type, K);
    const int nt = M * N * K < (int64_t(1) << 15) ? 1 : num_threads();

    if (quant_block_elems(type) == kQuantBlock && M >= kQuantGemmMinRows) {
        // Many rows (prefill): panels of W dequantized to fp32, then sgemm.
        // Without int8 dot instructions (VNNI) the per-block scale work of the
        // int8 path costs more than the fp32 FMAs it saves.
        // work: sgemm's, then the panel (P,K), then its product (M,P)
        panel_gemm(out, x, M, N, K, work, nt, [&](float* panel, int64_t n0, int64_t np) {
            const int ntp = np * K < (int64_t(1) << 15) ? 1 : num_threads();
#pragma omp parallel for num_threads(ntp) schedule(static) if (ntp > 1)
            for (int64_t r = 0; r < np; r++)
                dequantize_row(panel + r * K, w + (n0 + r) * row_bytes, K, type);
        });
        return;
    }

    if (quant_block_elems(type) == kQuantBlock) {
        // Few rows (decode): x quantized to int8 blocks, integer block dots.
        // work: xq (M,K) int8, then d (M,K/32), ds (M,K/32) floats
        const int64_t nb = K / kQuantBlock;
        int8_t* xq = reinterpret_cast<int8_t*>(work);
        float* xd = work + M * K / 4;
        float* xds = xd + M * nb;
        const QAct a{xq, xd, xds, K};
        // A few rows (decode) are quantized before the threads start: a
        // barrier costs more than the work, most on a busy machine.
        const bool serial_x = M * K <= kQuantSerialAct;
        if (serial_x)
            for (int64_t m = 0; m < M; m++)
                quantize_act_row(xq + m * K, xd + m * nb, xds + m * nb, x + m * K, K);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            if (!serial_x) {
#pragma omp for schedule(static)
                for (int64_t m = 0; m < M; m++)
                    quantize_act_row(xq + m * K, xd + m * nb, xds + m * nb, x + m * K, K);
                // (the implicit barrier: every row is quantized before any is read)
            }
            if (type == kTypeQ8_0) qmatmul_groups<kTypeQ8_0>(out, a, w, M, N, row_bytes);
            if (type == kTypeQ4_0) qmatmul_groups<kTypeQ4_0>(out, a, w, M, N, row_bytes);
            if (type == kTypeQ4_1) qmatmul_groups<kTypeQ4_1>(out, a, w, M, N, row_bytes);
        }
        return;
    }

    // F32 / F16 / BF16 weights: each weight row (converted into the thread's
    // K floats of work unless F32) against every x row, in fp32.
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

// ---- packed weights (layout in common.h): repack, dequantize, products

namespace {

// record r of group g: block b of rows 4g..4g+3
inline const uint8_t* qpack_record(const uint8_t* Wp, int64_t g, int64_t b, int64_t nb, int64_t rb) {
    return Wp + (g * nb + b) * rb;
}

// offset of row r's 16 nibble bytes inside a Q4 record (after sb scale bytes)
inline int64_t q4_nibble_offset(int r, int64_t sb) { return sb + (r & 1) * 32 + (r >> 1) * 16; }

#if defined(PYLLM_ISA_AVX2)

// Weights stream from DRAM once per token: fetch this far ahead of the
// record in use (a group's records are contiguous, and groups follow each other)
constexpr int64_t kPrefetchBytes = 1024;

// R activation rows against the 4 rows of a packed group: out[i*ldo + 0..3]
// for row i of xq (stride ldx, scales stride ldb). The weights of a block are
// loaded and unpacked once for all R rows; each row's arithmetic is the same
// whatever R is (the same operations in the same order), so a row's result
// does not depend on which rows share the call.
// Q4: A = {row 0 | row 2}, B = {row 1 | row 3}; the low nibbles meet x[0:16]
// broadcast to both halves, the high ones x[16:32]. After madd each row
// owns 4 lanes; hadd(A, B) leaves [r0 r0 r1 r1 r2 r2 r3 r3], scaled by
// [d0 d0 d1 d1 ..] * d_x. The scales [d0..d3 m0..m3] times ds_x accumulate
// apart: lanes 0-3 give Q4_0's -8 terms, lanes 4-7 Q4_1's m terms.
template <int TYPE, int R>
inline void qpack_group_q4(float* out, int64_t ldo, const uint8_t* rec, const int8_t* xq, int64_t ldx,
                           const float* xd, const float* xds, int64_t ldb, int64_t nb) {
    constexpr int64_t SB = TYPE == kTypeQ4_1 ? 16 : 8;
    constexpr int64_t RB = SB + 64;
    const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    __m256 acc0[R], acc1[R], cacc[R];
    for (int i = 0; i < R; i++) acc0[i] = acc1[i] = cacc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += RB) {
        _mm_prefetch(reinterpret_cast<const char*>(rec + kPrefetchBytes), _MM_HINT_T0);
        const __m256 s = TYPE == kTypeQ4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)rec))
                                           : _mm256_cvtph_ps(_mm_loadl_epi64((const __m128i*)rec));
        const __m256i A = _mm256_loadu_si256((const __m256i*)(rec + SB));
        const __m256i B = _mm256_loadu_si256((const __m256i*)(rec + SB + 32));
        const __m256i al = _mm256_and_si256(A, low), ah = _mm256_and_si256(_mm256_srli_epi16(A, 4), low);
        const __m256i bl = _mm256_and_si256(B, low), bh = _mm256_and_si256(_mm256_srli_epi16(B, 4), low);
        for (int i = 0; i < R; i++) {
            const int8_t* x = xq + i * ldx + b * 32;
            const __m256i xl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)x));
            const __m256i xh = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(x + 16)));
            // u8 nibbles (<= 15) times s8 (|x| <= 127): pair sums <= 3810, two of them fit int16
            const __m256i pa =
                _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(al, xl), _mm256_maddubs_epi16(ah, xh)), ones);
            const __m256i pb =
                _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(bl, xl), _mm256_maddubs_epi16(bh, xh)), ones);
            const __m256 sum = _mm256_cvtepi32_ps(_mm256_hadd_epi32(pa, pb));
            const __m256 sc = _mm256_permutevar8x32_ps(_mm256_mul_ps(s, _mm256_set1_ps(xd[i * ldb + b])), dup);
            // two accumulators (even / odd blocks) to hide the FMA latency
            if (b & 1)
                acc1[i] = _mm256_fmadd_ps(sum, sc, acc1[i]);
            else
                acc0[i] = _mm256_fmadd_ps(sum, sc, acc0[i]);
            cacc[i] = _mm256_fmadd_ps(s, _mm256_set1_ps(xds[i * ldb + b]), cacc[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        float a[8], c[8];
        _mm256_storeu_ps(a, _mm256_add_ps(acc0[i], acc1[i]));
        _mm256_storeu_ps(c, cacc[i]);
        for (int r = 0; r < 4; r++)
            out[i * ldo + r] = (a[2 * r] + a[2 * r + 1]) + (TYPE == kTypeQ4_0 ? -8.0f * c[r] : c[4 + r]);
    }
}

// Q8_0: per row |w| times x with w's sign (w may be -128), 8 int32 lanes;
// two rounds of hadd leave [r0 r1 r2 r3 | r0 r1 r2 r3], scaled by [d0..d3 d0..d3] * d_x.
template <int R>
inline void qpack_group_q8(float* out, int64_t ldo, const uint8_t* rec, const int8_t* xq, int64_t ldx,
                           const float* xd, int64_t ldb, int64_t nb) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0[R], acc1[R];
    for (int i = 0; i < R; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, rec += 136) {
        _mm_prefetch(reinterpret_cast<const char*>(rec + kPrefetchBytes), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(rec + kPrefetchBytes + 64), _MM_HINT_T0);
        const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)rec));
        __m256i w[4], aw[4];
        for (int r = 0; r < 4; r++) {
            w[r] = _mm256_loadu_si256((const __m256i*)(rec + 8 + 32 * r));
            aw[r] = _mm256_sign_epi8(w[r], w[r]);
        }
        for (int i = 0; i < R; i++) {
            const __m128 s4 = _mm_mul_ps(d4, _mm_set1_ps(xd[i * ldb + b]));
            const __m256i x = _mm256_loadu_si256((const __m256i*)(xq + i * ldx + b * 32));
            __m256i p[4];
            for (int r = 0; r < 4; r++)
                p[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(x, w[r])), ones);
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            const __m256 sc = _mm256_set_m128(s4, s4);
            if (b & 1)
                acc1[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), sc, acc1[i]);
            else
                acc0[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), sc, acc0[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        float a[8];
        _mm256_storeu_ps(a, _mm256_add_ps(acc0[i], acc1[i]));
        for (int r = 0; r < 4; r++) out[i * ldo + r] = a[r] + a[4 + r];
    }
}

#else

// the portable twin: per row and block an exact integer dot, scaled in fp32
template <int TYPE>
inline void qpack_group_q4(float* out4, const uint8_t* rec, const int8_t* xq, const float* xd,
                           const float* xds, int64_t nb) {
    constexpr int64_t SB = TYPE == kTypeQ4_1 ? 16 : 8;
    constexpr int64_t RB = SB + 64;
    float acc[4] = {0, 0, 0, 0}, corr[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++, rec += RB) {
        const int8_t* x = xq + b * 32;
        for (int r = 0; r < 4; r++) {
            const uint8_t* qs = rec + q4_nibble_offset(r, SB);
            int32_t dot = 0;
            for (int j = 0; j < 16; j++) dot += int32_t(qs[j] & 0x0f) * x[j] + int32_t(qs[j] >> 4) * x[j + 16];
            const float d = fp16_to_f32(load_u16(rec + 2 * r));
            acc[r] += float(dot) * (d * xd[b]);
            corr[r] += (TYPE == kTypeQ4_1 ? fp16_to_f32(load_u16(rec + 8 + 2 * r)) : -8.0f * d) * xds[b];
        }
    }
    for (int r = 0; r < 4; r++) out4[r] = acc[r] + corr[r];
}

inline void qpack_group_q8(float* out4, const uint8_t* rec, const int8_t* xq, const float* xd, int64_t nb) {
    float acc[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++, rec += 136) {
        const int8_t* x = xq + b * 32;
        for (int r = 0; r < 4; r++) {
            const int8_t* w = reinterpret_cast<const int8_t*>(rec + 8 + 32 * r);
            int32_t dot = 0;
            for (int j = 0; j < 32; j++) dot += int32_t(w[j]) * x[j];
            acc[r] += float(dot) * (fp16_to_f32(load_u16(rec + 2 * r)) * xd[b]);
        }
    }
    for (int r = 0; r < 4; r++) out4[r] = acc[r];
}

#endif

// R activation rows (row i at xq + i*ldx, scales at xd/xds + i*ldb) against
// one packed group -> out[i*ldo + 0..3]
template <int R>
inline void qpack_group_rows(float* out, int64_t ldo, const uint8_t* rec, const int8_t* xq, int64_t ldx,
                             const float* xd, const float* xds, int64_t ldb, int64_t nb, int type) {
#if defined(PYLLM_ISA_AVX2)
    if (type == kTypeQ4_1) qpack_group_q4<kTypeQ4_1, R>(out, ldo, rec, xq, ldx, xd, xds, ldb, nb);
    else if (type == kTypeQ4_0) qpack_group_q4<kTypeQ4_0, R>(out, ldo, rec, xq, ldx, xd, xds, ldb, nb);
    else qpack_group_q8<R>(out, ldo, rec, xq, ldx, xd, ldb, nb);
#else
    for (int i = 0; i < R; i++) {
        float* o = out + i * ldo;
        const int8_t* x = xq + i * ldx;
        if (type == kTypeQ4_1) qpack_group_q4<kTypeQ4_1>(o, rec, x, xd + i * ldb, xds + i * ldb, nb);
        else if (type == kTypeQ4_0) qpack_group_q4<kTypeQ4_0>(o, rec, x, xd + i * ldb, xds + i * ldb, nb);
        else qpack_group_q8(o, rec, x, xd + i * ldb, nb);
    }
#endif
}

inline void qpack_group(float* out4, const uint8_t* rec, const int8_t* xq, const float* xd, const float* xds,
                        int64_t nb, int type) {
    qpack_group_rows<1>(out4, kPackRows, rec, xq, 0, xd, xds, 0, nb, type);
}

}  // namespace

void qpack_weights(void* dst, const void* W, int64_t N, int64_t K, int type) {
    // W (N,K) GGUF rows -> dst: groups of 4 rows, one record per block (common.h)
    const uint8_t* w = static_cast<const uint8_t*>(W);
    uint8_t* out = static_cast<uint8_t*>(dst);
    const int64_t nb = K / kQuantBlock, rb = qpack_record_bytes(type), bb = quant_block_bytes(type);
    const int64_t row_bytes = nb * bb, groups = ceil_div(N, kPackRows);
    const int64_t sb = type == kTypeQ4_1 ? 16 : 8;  // scale bytes
    std::memset(out, 0, size_t(groups * nb * rb));
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t* rec = out + (g * nb + b) * rb;
            for (int r = 0; r < kPackRows && g * kPackRows + r < N; r++) {
                const uint8_t* blk = w + (g * kPackRows + r) * row_bytes + b * bb;
                std::memcpy(rec + 2 * r, blk, 2);                                   // d
                if (type == kTypeQ4_1) std::memcpy(rec + 8 + 2 * r, blk + 2, 2);  // m
                if (type == kTypeQ8_0)
                    std::memcpy(rec + 8 + 32 * r, blk + 2, 32);
                else
                    std::memcpy(rec + q4_nibble_offset(r, sb), blk + (type == kTypeQ4_1 ? 4 : 2), 16);
            }
        }
    }
}

namespace {

// Row r (0..3) of a packed record, dequantized: out[0:32] (exact, as dequantize_row)
inline void qpack_record_row(float* out, const uint8_t* rec, int r, int type) {
    const float d = fp16_to_f32(load_u16(rec + 2 * r));
    if (type == kTypeQ8_0) {
        const int8_t* q = reinterpret_cast<const int8_t*>(rec + 8 + 32 * r);
        for (int j = 0; j < 32; j++) out[j] = d * float(q[j]);
        return;
    }
    const bool q41 = type == kTypeQ4_1;
    const uint8_t* qs = rec + q4_nibble_offset(r, q41 ? 16 : 8);
    if (q41) {
        const float m = fp16_to_f32(load_u16(rec + 8 + 2 * r));
        for (int j = 0; j < 16; j++) {
            out[j] = d * float(qs[j] & 0x0f) + m;
            out[j + 16] = d * float(qs[j] >> 4) + m;
        }
    } else {
        for (int j = 0; j < 16; j++) {
            out[j] = d * float(int(qs[j] & 0x0f) - 8);
            out[j + 16] = d * float(int(qs[j] >> 4) - 8);
        }
    }
}

// dst[k*nr + j] = src[j*32 + k] for k < 32, j < nr (nr a multiple of 8, at most 32)
inline void transpose_block32(float* dst, const float* src, int64_t nr) {
#if defined(PYLLM_ISA_AVX512)
    if (nr % 16 == 0) {
        for (int64_t j0 = 0; j0 < nr; j0 += 16)
            for (int k0 = 0; k0 < 32; k0 += 16) {
                vf16 r[16];
                for (int i = 0; i < 16; i++) r[i] = vload16(src + (j0 + i) * 32 + k0);
                vtranspose16(r);
                for (int k = 0; k < 16; k++) vstore16(dst + (k0 + k) * nr + j0, r[k]);
            }
        return;
    }
#endif
    for (int k = 0; k < 32; k++)
        for (int64_t j = 0; j < nr; j++) dst[k * nr + j] = src[j * 32 + k];
}

struct QPackSource {
    const uint8_t* w;  // packed weights (N,K)
    int64_t N, K;
    int type;
};

// sgemm_packed_b's packer over packed weights: B = W^T, so B's columns are W's
// rows; each 32-element block of nr rows is dequantized and transposed in L1
void qpack_pack_block(const void* ctx, float* dst, int64_t n0, int64_t nc, int64_t k0, int64_t kc,
                      int64_t nr) {
    const QPackSource& s = *static_cast<const QPackSource*>(ctx);
    const int64_t nb = s.K / kQuantBlock, rb = qpack_record_bytes(s.type);
    alignas(64) float rows[32 * kQuantBlock];  // (nr, 32)
    for (int64_t jr = 0; jr < nc; jr += nr) {
        float* panel = dst + jr / nr * kc * nr;
        const int64_t live = std::min(nr, std::min(nc - jr, s.N - (n0 + jr)));
        if (live < nr) std::memset(rows, 0, sizeof(rows));
        for (int64_t b = k0 / kQuantBlock; b < (k0 + kc) / kQuantBlock; b++) {
            for (int64_t j = 0; j < live; j++) {
                const int64_t n = n0 + jr + j;
                qpack_record_row(rows + j * kQuantBlock, qpack_record(s.w, n / kPackRows, b, nb, rb),
                                 int(n % kPackRows), s.type);
            }
            transpose_block32(panel + (b * kQuantBlock - k0) * nr, rows, nr);
        }
    }
}

}  // namespace

void quantize_act(int8_t* q, float* d, float* ds, const float* x, int64_t K) {
    // x (K,) -> q (K,), d (K/32,), ds (K/32,)
    quantize_act_row(q, d, ds, x, K);
}

void rmsnorm_quantize_act(int8_t* q, float* d, float* ds, const float* x, const float* weight, int64_t C,
                          float eps) {
    // x (C,), weight (C,) -> rmsnorm(x) * weight as int8 blocks q (C,), d, ds (C/32,)
    vf a0 = vzero(), a1 = vzero();
    int64_t j = 0;
    for (; j + 16 <= C; j += 16) {
        const vf u = vload(x + j), v = vload(x + j + 8);
        a0 = vfma(u, u, a0);
        a1 = vfma(v, v, a1);
    }
    double ss = double(vhsum(vadd(a0, a1)));
    for (; j < C; j++) ss += double(x[j]) * double(x[j]);
    const float rstd = 1.0f / std::sqrt(float(ss / double(C)) + eps);
    const vf rv = vset1(rstd);
    float y[kQuantBlock];
    for (int64_t b = 0; b < C / kQuantBlock; b++) {  // C is a multiple of 32
        const float* xb = x + b * kQuantBlock;
        const float* wb = weight + b * kQuantBlock;
        for (int k = 0; k < kQuantBlock; k += 8) vstore(y + k, vmul(vmul(vload(xb + k), rv), vload(wb + k)));
        int32_t sum = 0;
        d[b] = quantize_block_i8(q + b * kQuantBlock, y, &sum);
        ds[b] = d[b] * float(sum);
    }
}

void swiglu_quantize_act(int8_t* q, float* d, float* ds, const float* gate, const float* up, int64_t n) {
    // gate, up (n) -> silu(gate) * up as int8 blocks q (n,), d, ds (n/32,); n a multiple of 32
    float y[kQuantBlock];
    for (int64_t b = 0; b < n / kQuantBlock; b++) {
        for (int k = 0; k < kQuantBlock; k += 8) {
            const vf g = vload(gate + b * kQuantBlock + k);
            const vf e = vexp(vsub(vzero(), g));
            vstore(y + k, vmul(vdiv(g, vadd(vset1(1.0f), e)), vload(up + b * kQuantBlock + k)));
        }
        int32_t sum = 0;
        d[b] = quantize_block_i8(q + b * kQuantBlock, y, &sum);
        ds[b] = d[b] * float(sum);
    }
}

void qpack_matvec(float* out, const int8_t* xq, const float* xd, const float* xds, const void* Wp,
                  int64_t n0, int64_t n1, int64_t N, int64_t K, int type) {
    // xq (K,) int8 blocks, packed Wp (N,K) -> out[n0:n1]
    const uint8_t* w = static_cast<const uint8_t*>(Wp);
    const int64_t nb = K / kQuantBlock, rb = qpack_record_bytes(type);
    if (n1 > N) n1 = N;
    for (int64_t n = n0; n < n1; n += kPackRows) {
        const int64_t g = n / kPackRows;
        const uint8_t* rec = qpack_record(w, g, 0, nb, rb);
        if (n + kPackRows <= n1) {
            qpack_group(out + n, rec, xq, xd, xds, nb, type);
        } else {  // a partial group at the end
            float o4[kPackRows];
            qpack_group(o4, rec, xq, xd, xds, nb, type);
            for (int64_t r = 0; n + r < n1; r++) out[n + r] = o4[r];
        }
    }
}

void qpack_matvec_rows(float* out, int64_t ldo, const int8_t* xq, const float* xd, const float* xds, int64_t M,
                       const void* Wp, int64_t n0, int64_t n1, int64_t N, int64_t K, int type) {
    // M rows xq (M,K) int8 blocks, d/ds (M,K/32) -> out[m*ldo + n] for n in [n0,n1)
    const uint8_t* w = static_cast<const uint8_t*>(Wp);
    const int64_t nb = K / kQuantBlock, rb = qpack_record_bytes(type);
    if (n1 > N) n1 = N;
    float o[4 * kPackRows];
    for (int64_t n = n0; n < n1; n += kPackRows) {
        const uint8_t* rec = qpack_record(w, n / kPackRows, 0, nb, rb);
        const int64_t live = n1 - n < kPackRows ? n1 - n : kPackRows;
        for (int64_t m = 0; m < M;) {
            const int64_t r = M - m >= 4 ? 4 : 1;
            const int8_t* x = xq + m * K;
            if (r == 4)
                qpack_group_rows<4>(o, kPackRows, rec, x, K, xd + m * nb, xds + m * nb, nb, nb, type);
            else
                qpack_group_rows<1>(o, kPackRows, rec, x, K, xd + m * nb, xds + m * nb, nb, nb, type);
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < live; j++) out[(m + i) * ldo + n + j] = o[i * kPackRows + j];
            m += r;
        }
    }
}

void qpack_matmul(float* out, const float* x, const void* Wp, int64_t M, int64_t N, int64_t K, int type,
                  float* work) {
    // x (M,K), packed Wp (N,K) -> out (M,N)
    if (M <= 0 || N <= 0) return;
    const uint8_t* w = static_cast<const uint8_t*>(Wp);
    const int nt = M * N * K < (int64_t(1) << 15) ? 1 : num_threads();
    if (M >= kQuantGemmMinRows) {
        // prefill: sgemm on W dequantized exactly, block by block, straight
        // into the GEMM's packed layout (no fp32 copy of W, no transpose pass)
        const QPackSource src{w, N, K, type};
        sgemm_packed_b(out, x, M, N, K, qpack_pack_block, &src, kQuantBlock, 2.0, work);
        return;
    }
    // few rows: x quantized to int8 blocks, each group of 4 weight rows meets
    // every activation row while it sits in L1
    const int64_t nb = K / kQuantBlock;
    int8_t* xq = reinterpret_cast<int8_t*>(work);
    float* xd = work + M * K / 4;
    float* xds = xd + M * nb;
    for (int64_t m = 0; m < M; m++) quantize_act_row(xq + m * K, xd + m * nb, xds + m * nb, x + m * K, K);
    const int64_t groups = ceil_div(N, kPackRows);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t* rec = qpack_record(w, g, 0, nb, qpack_record_bytes(type));
        for (int64_t m = 0; m < M; m++) {
            float o4[kPackRows];
            qpack_group(o4, rec, xq + m * K, xd + m * nb, xds + m * nb, nb, type);
            for (int64_t r = 0; r < kPackRows && g * kPackRows + r < N; r++) out[m * N + g * kPackRows + r] = o4[r];
        }
    }
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
