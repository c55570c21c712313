// Portable implementation of the vector layer: 8 floats in an array, plain
// loops the compiler may vectorize for the baseline target. No intrinsics.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

namespace pyllm {
namespace PYLLM_ISA {

constexpr int kVecWidth = 8;

struct vf {
    float v[8];
};

#define PYLLM_VF_MAP(expr)              \
    vf r;                               \
    for (int i = 0; i < 8; i++) r.v[i] = (expr); \
    return r

static inline vf vzero() { PYLLM_VF_MAP(0.0f); }
static inline vf vset1(float x) { PYLLM_VF_MAP(x); }
static inline vf vload(const float* p) { PYLLM_VF_MAP(p[i]); }
static inline void vstore(float* p, vf a) {
    for (int i = 0; i < 8; i++) p[i] = a.v[i];
}
static inline vf vadd(vf a, vf b) { PYLLM_VF_MAP(a.v[i] + b.v[i]); }
static inline vf vsub(vf a, vf b) { PYLLM_VF_MAP(a.v[i] - b.v[i]); }
static inline vf vmul(vf a, vf b) { PYLLM_VF_MAP(a.v[i] * b.v[i]); }
static inline vf vdiv(vf a, vf b) { PYLLM_VF_MAP(a.v[i] / b.v[i]); }
// a * b + c; rounded twice unless the target has FMA (the baseline has not)
static inline vf vfma(vf a, vf b, vf c) { PYLLM_VF_MAP(a.v[i] * b.v[i] + c.v[i]); }
static inline vf vmax(vf a, vf b) { PYLLM_VF_MAP(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
static inline vf vmin(vf a, vf b) { PYLLM_VF_MAP(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
static inline vf vexp(vf a) { PYLLM_VF_MAP(std::exp(a.v[i])); }
static inline vf vsqrt(vf a) { PYLLM_VF_MAP(std::sqrt(a.v[i])); }
// a with its sign flipped where b's sign bit is set (a * sign(b) for b != 0, no rounding)
static inline vf vflipsign(vf a, vf b) { PYLLM_VF_MAP(std::signbit(b.v[i]) ? -a.v[i] : a.v[i]); }
// Transposes the 8x8 matrix whose rows are r[0..7], in place: afterwards r[i]
// holds column i.
static inline void vtranspose8(vf r[8]) {
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) std::swap(r[i].v[j], r[j].v[i]);
}

#undef PYLLM_VF_MAP

static inline float vhsum(vf a) {
    return ((a.v[0] + a.v[4]) + (a.v[1] + a.v[5])) + ((a.v[2] + a.v[6]) + (a.v[3] + a.v[7]));
}
static inline float vhmax(vf a) {
    float m = a.v[0];
    for (int i = 1; i < 8; i++) m = a.v[i] > m ? a.v[i] : m;
    return m;
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
