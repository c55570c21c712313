// AVX2 + FMA implementation of the vector layer (8 x float32 in one ymm).
// Compiled only into translation units built with -mavx2 -mfma; never
// included by baseline code.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace pyllm {
namespace PYLLM_ISA {

constexpr int kVecWidth = 8;

struct vf {
    __m256 v;
};

static inline vf vzero() { return {_mm256_setzero_ps()}; }
static inline vf vset1(float x) { return {_mm256_set1_ps(x)}; }
static inline vf vload(const float* p) { return {_mm256_loadu_ps(p)}; }
static inline void vstore(float* p, vf a) { _mm256_storeu_ps(p, a.v); }
static inline vf vadd(vf a, vf b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline vf vsub(vf a, vf b) { return {_mm256_sub_ps(a.v, b.v)}; }
static inline vf vmul(vf a, vf b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline vf vdiv(vf a, vf b) { return {_mm256_div_ps(a.v, b.v)}; }
// a * b + c with one rounding
static inline vf vfma(vf a, vf b, vf c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
static inline vf vmax(vf a, vf b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline vf vmin(vf a, vf b) { return {_mm256_min_ps(a.v, b.v)}; }
// correctly rounded, as std::sqrt
static inline vf vsqrt(vf a) { return {_mm256_sqrt_ps(a.v)}; }
// a with its sign flipped where b's sign bit is set (a * sign(b) for b != 0, no rounding)
static inline vf vflipsign(vf a, vf b) {
    return {_mm256_xor_ps(a.v, _mm256_and_ps(b.v, _mm256_set1_ps(-0.0f)))};
}
// Transposes the 8x8 matrix whose rows are r[0..7], in place: afterwards r[i]
// holds column i (unpacks within 128-bit lanes, then lane swaps).
static inline void vtranspose8(vf r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i].v, r[i + 1].v);
        t[i + 1] = _mm256_unpackhi_ps(r[i].v, r[i + 1].v);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g + 0] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        r[c].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[c + 4].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

static inline float vhsum(vf a) {
    __m128 lo = _mm256_castps256_ps128(a.v);
    __m128 hi = _mm256_extractf128_ps(a.v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    lo = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, lo);
    lo = _mm_add_ss(lo, sh);
    return _mm_cvtss_f32(lo);
}

static inline float vhmax(vf a) {
    __m128 lo = _mm256_castps256_ps128(a.v);
    __m128 hi = _mm256_extractf128_ps(a.v, 1);
    lo = _mm_max_ps(lo, hi);
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// exp(x) to about 2 ulp: range reduction by ln 2 (split in two constants)
// and a degree-6 polynomial; underflow gives 0, overflow +inf, NaN stays NaN.
static inline vf vexp(vf a) {
    const __m256 x0 = a.v;
    __m256 x = _mm256_min_ps(x0, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    // scale by 2^n in two steps so n = 128 does not overflow the exponent
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    // below ln(FLT_MIN) the true value is denormal or zero: flush to zero
    __m256 under = _mm256_cmp_ps(x0, _mm256_set1_ps(-87.33654475f), _CMP_LT_OQ);
    y = _mm256_andnot_ps(under, y);
    __m256 over = _mm256_cmp_ps(x0, _mm256_set1_ps(88.72283905f), _CMP_GT_OQ);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
    __m256 nan = _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q);
    return {_mm256_blendv_ps(y, x0, nan)};
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
