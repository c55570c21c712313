// AVX-512 (F/BW/DQ/VL) implementation of the vector layer: the 8-float `vf`
// of avx2.h, unchanged, plus a 16-float `vf16` (one zmm) for the kernels that
// want full width. Compiled only into the avx512 build; not the int8 or
// mask-heavy parts of AVX-512 (nothing here needs VNNI).
#pragma once

#include "avx2.h"

namespace pyllm {
namespace PYLLM_ISA {

constexpr int kVecWidth16 = 16;

struct vf16 {
    __m512 v;
};

static inline vf16 vzero16() { return {_mm512_setzero_ps()}; }
static inline vf16 vset1_16(float x) { return {_mm512_set1_ps(x)}; }
static inline vf16 vload16(const float* p) { return {_mm512_loadu_ps(p)}; }
static inline void vstore16(float* p, vf16 a) { _mm512_storeu_ps(p, a.v); }
static inline vf16 vadd16(vf16 a, vf16 b) { return {_mm512_add_ps(a.v, b.v)}; }
static inline vf16 vsub16(vf16 a, vf16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
static inline vf16 vmul16(vf16 a, vf16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
// a * b + c with one rounding
static inline vf16 vfma16(vf16 a, vf16 b, vf16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
static inline vf16 vmax16(vf16 a, vf16 b) { return {_mm512_max_ps(a.v, b.v)}; }
static inline vf16 vmin16(vf16 a, vf16 b) { return {_mm512_min_ps(a.v, b.v)}; }
static inline float vhsum16(vf16 a) { return _mm512_reduce_add_ps(a.v); }
static inline float vhmax16(vf16 a) { return _mm512_reduce_max_ps(a.v); }

// the first n (0..16) floats of p, the rest zero; never touches p[n..15]
static inline vf16 vload16_first(const float* p, int n) {
    return {_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p)};
}
// stores the first n (0..16) lanes of a to p; never touches p[n..15]
static inline void vstore16_first(float* p, vf16 a, int n) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), a.v);
}

// The vf operations under their vf names for vf16 too, so a template can take
// either width.
static inline vf16 vadd(vf16 a, vf16 b) { return vadd16(a, b); }
static inline vf16 vsub(vf16 a, vf16 b) { return vsub16(a, b); }
static inline vf16 vmul(vf16 a, vf16 b) { return vmul16(a, b); }
static inline vf16 vdiv(vf16 a, vf16 b) { return {_mm512_div_ps(a.v, b.v)}; }
static inline vf16 vfma(vf16 a, vf16 b, vf16 c) { return vfma16(a, b, c); }
static inline vf16 vmax(vf16 a, vf16 b) { return vmax16(a, b); }
static inline vf16 vflipsign(vf16 a, vf16 b) {
    return {_mm512_xor_ps(a.v, _mm512_and_ps(b.v, _mm512_set1_ps(-0.0f)))};
}
// exp(x) as vexp(vf) computes it, lane for lane the same bits
static inline vf16 vexp(vf16 a) {
    const __m512 x0 = a.v;
    __m512 x = _mm512_min_ps(x0, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    const __m512i ni = _mm512_cvtps_epi32(n);
    const __m512i half = _mm512_srai_epi32(ni, 1);
    const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
    const __m512 s2 = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half), _mm512_set1_epi32(127)), 23));
    y = _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
    const __mmask16 under = _mm512_cmp_ps_mask(x0, _mm512_set1_ps(-87.33654475f), _CMP_LT_OQ);
    y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
    const __mmask16 over = _mm512_cmp_ps_mask(x0, _mm512_set1_ps(88.72283905f), _CMP_GT_OQ);
    y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(INFINITY));
    const __mmask16 nan = _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q);
    return {_mm512_mask_mov_ps(y, nan, x0)};
}

// Transposes the 16x16 matrix whose rows are r[0..15], in place: afterwards
// r[i] holds column i. 64 shuffles: 32-bit, 64-bit, then two 128-bit stages.
// (The all-ones maskz forms compile to the plain instructions; the unmasked
// intrinsics trip gcc 12's -Wuninitialized on their undefined pass-through.)
static inline void vtranspose16(vf16 r[16]) {
    const __mmask16 kAll = 0xffff;
    const __mmask8 kAll8 = 0xff;
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i].v, r[i + 1].v);
        t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i].v, r[i + 1].v);
    }
    // u[4g + c], rows 4g..4g+3: 128-bit lane L holds column c + 4L
    for (int g = 0; g < 16; g += 4) {
        const __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
        const __m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
        u[g + 0] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, a, c));
        u[g + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, a, c));
        u[g + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, b, d));
        u[g + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, b, d));
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v = _mm512_maskz_shuffle_f32x4(kAll, u[c], u[4 + c], 0x88);   // g0L0 g0L2 g1L0 g1L2
        const __m512 w = _mm512_maskz_shuffle_f32x4(kAll, u[c], u[4 + c], 0xdd);   // g0L1 g0L3 g1L1 g1L3
        const __m512 x = _mm512_maskz_shuffle_f32x4(kAll, u[8 + c], u[12 + c], 0x88);
        const __m512 y = _mm512_maskz_shuffle_f32x4(kAll, u[8 + c], u[12 + c], 0xdd);
        r[c + 0].v = _mm512_maskz_shuffle_f32x4(kAll, v, x, 0x88);
        r[c + 8].v = _mm512_maskz_shuffle_f32x4(kAll, v, x, 0xdd);
        r[c + 4].v = _mm512_maskz_shuffle_f32x4(kAll, w, y, 0x88);
        r[c + 12].v = _mm512_maskz_shuffle_f32x4(kAll, w, y, 0xdd);
    }
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
