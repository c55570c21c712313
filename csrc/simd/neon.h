// NEON implementation of the vector layer: 8 floats as two float32x4_t.
// Built only for aarch64, where NEON is part of the baseline.
#pragma once

#include <arm_neon.h>

#include <utility>

#include <cmath>
#include <cstdint>

namespace pyllm {
namespace PYLLM_ISA {

constexpr int kVecWidth = 8;

struct vf {
    float32x4_t lo, hi;
};

static inline vf vzero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
static inline vf vset1(float x) { return {vdupq_n_f32(x), vdupq_n_f32(x)}; }
static inline vf vload(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
static inline void vstore(float* p, vf a) {
    vst1q_f32(p, a.lo);
    vst1q_f32(p + 4, a.hi);
}
static inline vf vadd(vf a, vf b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
static inline vf vsub(vf a, vf b) { return {vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
static inline vf vmul(vf a, vf b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
static inline vf vdiv(vf a, vf b) { return {vdivq_f32(a.lo, b.lo), vdivq_f32(a.hi, b.hi)}; }
// a * b + c with one rounding
static inline vf vfma(vf a, vf b, vf c) { return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
static inline vf vmax(vf a, vf b) { return {vmaxq_f32(a.lo, b.lo), vmaxq_f32(a.hi, b.hi)}; }
static inline vf vmin(vf a, vf b) { return {vminq_f32(a.lo, b.lo), vminq_f32(a.hi, b.hi)}; }
static inline vf vsqrt(vf a) { return {vsqrtq_f32(a.lo), vsqrtq_f32(a.hi)}; }
// a with its sign flipped where b's sign bit is set (a * sign(b) for b != 0, no rounding)
static inline float32x4_t flipsign4(float32x4_t a, float32x4_t b) {
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(b), vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(a), sign));
}
static inline vf vflipsign(vf a, vf b) { return {flipsign4(a.lo, b.lo), flipsign4(a.hi, b.hi)}; }
// Transposes the 8x8 matrix whose rows are r[0..7], in place: afterwards r[i]
// holds column i (four 4x4 transposes by zips).
static inline void transpose4(float32x4_t& a, float32x4_t& b, float32x4_t& c, float32x4_t& d) {
    const float32x4x2_t ab = vzipq_f32(a, b), cd = vzipq_f32(c, d);
    a = vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(ab.val[0]), vreinterpretq_f64_f32(cd.val[0])));
    b = vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(ab.val[0]), vreinterpretq_f64_f32(cd.val[0])));
    c = vreinterpretq_f32_f64(vzip1q_f64(vreinterpretq_f64_f32(ab.val[1]), vreinterpretq_f64_f32(cd.val[1])));
    d = vreinterpretq_f32_f64(vzip2q_f64(vreinterpretq_f64_f32(ab.val[1]), vreinterpretq_f64_f32(cd.val[1])));
}
static inline void vtranspose8(vf r[8]) {
    transpose4(r[0].lo, r[1].lo, r[2].lo, r[3].lo);
    transpose4(r[4].hi, r[5].hi, r[6].hi, r[7].hi);
    transpose4(r[0].hi, r[1].hi, r[2].hi, r[3].hi);
    transpose4(r[4].lo, r[5].lo, r[6].lo, r[7].lo);
    for (int i = 0; i < 4; i++) std::swap(r[i].hi, r[i + 4].lo);
}
static inline float vhsum(vf a) { return vaddvq_f32(vaddq_f32(a.lo, a.hi)); }
static inline float vhmax(vf a) { return vmaxvq_f32(vmaxq_f32(a.lo, a.hi)); }
static inline vf vexp(vf a) {
    float t[8];
    vstore(t, a);
    for (int i = 0; i < 8; i++) t[i] = std::exp(t[i]);
    return vload(t);
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
