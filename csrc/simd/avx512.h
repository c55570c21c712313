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

}  // namespace PYLLM_ISA
}  // namespace pyllm
