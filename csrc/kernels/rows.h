// Vector helpers over one row shared by the kernel sources (sums, maxima,
// dot products) and the small-work threading cut-off. Not kernels themselves.
#pragma once

#include <cmath>

#include "../simd/simd.h"
#include "common.h"

namespace pyllm {
namespace PYLLM_ISA {
namespace {

// below this many elements a parallel region costs more than it saves
constexpr int64_t kParallelMin = 1 << 15;

inline int threads_for(int64_t work) { return work >= kParallelMin ? num_threads() : 1; }

// sum of x[0:n], 8 float lanes per block of 256, blocks added in double
inline double row_sum(const float* x, int64_t n) {
    double total = 0.0;
    int64_t j = 0;
    while (j + 8 <= n) {
        const int64_t end = (n - j) >= 256 ? j + 256 : n;
        vf acc0 = vzero(), acc1 = vzero();
        for (; j + 16 <= end; j += 16) {
            acc0 = vadd(acc0, vload(x + j));
            acc1 = vadd(acc1, vload(x + j + 8));
        }
        for (; j + 8 <= end; j += 8) acc0 = vadd(acc0, vload(x + j));
        total += double(vhsum(vadd(acc0, acc1)));
    }
    for (; j < n; j++) total += double(x[j]);
    return total;
}

// sum of (x - c)^2 over x[0:n], the same blocking
inline double row_sumsq(const float* x, int64_t n, float c) {
    double total = 0.0;
    const vf cv = vset1(c);
    int64_t j = 0;
    while (j + 8 <= n) {
        const int64_t end = (n - j) >= 256 ? j + 256 : n;
        vf acc = vzero();
        for (; j + 8 <= end; j += 8) {
            const vf d = vsub(vload(x + j), cv);
            acc = vfma(d, d, acc);
        }
        total += double(vhsum(acc));
    }
    for (; j < n; j++) total += double(x[j] - c) * double(x[j] - c);
    return total;
}

inline float row_max(const float* x, int64_t n) {
    vf m = vset1(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) m = vmax(m, vload(x + j));
    float mx = vhmax(m);
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

// y[0:n] += x[0:n]
inline void row_add(float* y, const float* x, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vstore(y + j, vadd(vload(y + j), vload(x + j)));
    for (; j < n; j++) y[j] += x[j];
}

// ---- one row of the element-wise and row-wise ops, shared by the parallel
// kernels (nn.cpp) and the decode step's serial twins (decode.cpp), so both
// give the same bits

// x (C) -> y (C) = x / sqrt(mean(x^2) + eps) * weight
inline void rmsnorm_row(float* y, const float* x, const float* weight, int64_t C, float eps) {
    const float ms = float(row_sumsq(x, C, 0.0f) / double(C));
    const float rstd = 1.0f / std::sqrt(ms + eps);
    const vf rv = vset1(rstd);
    int64_t j = 0;
    for (; j + 8 <= C; j += 8) vstore(y + j, vmul(vmul(vload(x + j), rv), vload(weight + j)));
    for (; j < C; j++) y[j] = (x[j] * rstd) * weight[j];
}

// one head x (HS) with its first `rot` dimensions rotated by the angles of
// cos/sin (rot/2) -> y (HS), the others copied (partial rotary); y may be x
inline void rope_row(float* y, const float* x, const float* c, const float* s, int64_t HS, int64_t rot,
                     bool interleaved) {
    const int64_t half = rot / 2;
    if (interleaved) {
        // pairs (x[2i], x[2i+1]) rotate by angle i
        for (int64_t i = 0; i < half; i++) {
            const float x0 = x[2 * i], x1 = x[2 * i + 1];
            y[2 * i] = x0 * c[i] - x1 * s[i];
            y[2 * i + 1] = x1 * c[i] + x0 * s[i];
        }
    } else {
        // pairs (x[i], x[i+half]) rotate by angle i (HF rotate_half)
        int64_t i = 0;
        for (; i + 8 <= half; i += 8) {
            const vf x0 = vload(x + i), x1 = vload(x + half + i);
            const vf cv = vload(c + i), sv = vload(s + i);
            vstore(y + i, vsub(vmul(x0, cv), vmul(x1, sv)));
            vstore(y + half + i, vadd(vmul(x1, cv), vmul(x0, sv)));
        }
        for (; i < half; i++) {
            const float x0 = x[i], x1 = x[half + i];
            y[i] = x0 * c[i] - x1 * s[i];
            y[half + i] = x1 * c[i] + x0 * s[i];
        }
    }
    if (y != x)
        for (int64_t j = 2 * half; j < HS; j++) y[j] = x[j];
}

// x (C) -> y (C) = (x - mean) / sqrt(var + eps) * weight + bias (weight,
// bias or null); mean and rstd stored when not null
inline void layernorm_row(float* y, const float* x, const float* weight, const float* bias, int64_t C, float eps,
                          float* mean, float* rstd) {
    const float mu = float(row_sum(x, C) / double(C));
    const float var = float(row_sumsq(x, C, mu) / double(C));
    const float rs = 1.0f / std::sqrt(var + eps);
    if (mean) *mean = mu;
    if (rstd) *rstd = rs;
    const vf mv = vset1(mu), rv = vset1(rs);
    int64_t j = 0;
    for (; j + 8 <= C; j += 8) {
        vf n = vmul(vsub(vload(x + j), mv), rv);
        if (weight) n = vmul(n, vload(weight + j));
        if (bias) n = vadd(n, vload(bias + j));
        vstore(y + j, n);
    }
    for (; j < C; j++) {
        float n = (x[j] - mu) * rs;
        if (weight) n *= weight[j];
        if (bias) n += bias[j];
        y[j] = n;
    }
}

// GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
// tanh(u) = 1 - 2 / (exp(2u) + 1) on 8 lanes; std::tanh on single elements
constexpr float kGeluBeta = 0.7978845608028654f, kGeluKappa = 0.044715f;
inline vf gelu_tanh8(vf x) {
    const vf u = vmul(vset1(kGeluBeta), vfma(vmul(vset1(kGeluKappa), x), vmul(x, x), x));
    const vf e = vexp(vadd(u, u));
    const vf t = vsub(vset1(1.0f), vdiv(vset1(2.0f), vadd(e, vset1(1.0f))));
    return vmul(vmul(vset1(0.5f), x), vadd(vset1(1.0f), t));
}
inline float gelu_tanh1(float x) {
    const float u = kGeluBeta * (x + kGeluKappa * x * x * x);
    return 0.5f * x * (1.0f + std::tanh(u));
}

// y[0:n] = gelu_tanh(x[0:n]) (blocks of 8 from the start, then single elements)
inline void gelu_tanh_span(float* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vstore(y + i, gelu_tanh8(vload(x + i)));
    for (; i < n; i++) y[i] = gelu_tanh1(x[i]);
}

// y[0:n] = gelu_tanh(gate[0:n]) * up[0:n] (GeGLU)
inline void geglu_span(float* y, const float* gate, const float* up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vstore(y + i, vmul(gelu_tanh8(vload(gate + i)), vload(up + i)));
    for (; i < n; i++) y[i] = gelu_tanh1(gate[i]) * up[i];
}

// 8 elements of silu(gate) * up
inline vf swiglu8(const float* gate, const float* up) {
    const vf g = vload(gate);
    const vf e = vexp(vsub(vzero(), g));
    return vmul(vdiv(g, vadd(vset1(1.0f), e)), vload(up));
}

inline float swiglu1(float gate, float up) { return gate / (1.0f + std::exp(-gate)) * up; }

}  // namespace
}  // namespace PYLLM_ISA
}  // namespace pyllm
