// BERT encoder kernels, forward and backward side by side: word + position + token-type
// embeddings, exact (erf) GELU, tanh, counter-based dropout and padded bidirectional
// attention with saved probabilities. Not the GEMMs (matmul.cpp) nor layer norm (nn.cpp,
// train.cpp). Backward ops add (+=) into their gradient outputs.
#include <cmath>
#include <cstring>

#include "../simd/simd.h"
#include "common.h"
#include "rows.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// [c0, c1) of n split into `parts` slices of whole 8-float vectors
inline void slice8(int64_t n, int part, int parts, int64_t* c0, int64_t* c1) {
    const int64_t vecs = (n + 7) / 8;
    *c0 = min64(n, vecs * part / parts * 8);
    *c1 = min64(n, vecs * (part + 1) / parts * 8);
}

// The vector widths the element-wise loops below run in: vf (8 lanes) on
// every ISA, vf16 (16) on avx512; the same bits lane for lane.
template <class V>
struct Lanes;
template <>
struct Lanes<vf> {
    static constexpr int64_t n = 8;
    static vf splat(float x) { return vset1(x); }
    static vf load(const float* p) { return vload(p); }
    static void store(float* p, vf a) { vstore(p, a); }
};
#if defined(PYLLM_ISA_AVX512)
template <>
struct Lanes<vf16> {
    static constexpr int64_t n = 16;
    static vf16 splat(float x) { return vset1_16(x); }
    static vf16 load(const float* p) { return vload16(p); }
    static void store(float* p, vf16 a) { vstore16(p, a); }
};
using WideVec = vf16;
#else
using WideVec = vf;
#endif

// Phi(x) = 0.5 (1 + erf(x / sqrt 2)), the standard normal CDF, lane-wise:
// erfc(z) = t p(t) exp(-z^2), t = 1 / (1 + 0.3275911 z), for z = |x| / sqrt 2
// (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7), mirrored for x < 0.
template <class V>
inline V normal_cdf(V x) {
    using L = Lanes<V>;
    const V zero = L::splat(0.0f), one = L::splat(1.0f), half = L::splat(0.5f);
    const V ax = vmax(x, vsub(zero, x));
    const V z = vmul(ax, L::splat(0.70710678118654752f));
    const V t = vdiv(one, vfma(L::splat(0.3275911f), z, one));
    V p = L::splat(1.061405429f);
    p = vfma(p, t, L::splat(-1.453152027f));
    p = vfma(p, t, L::splat(1.421413741f));
    p = vfma(p, t, L::splat(-0.284496736f));
    p = vfma(p, t, L::splat(0.254829592f));
    const V tail = vmul(half, vmul(vmul(p, t), vexp(vsub(zero, vmul(z, z)))));  // Phi(-|x|)
    // 1 - tail where x >= +0, tail where x <= -0
    return vadd(half, vflipsign(vsub(half, tail), x));
}

inline float normal_cdf1(float x) { return 0.5f * (1.0f + std::erf(x * 0.70710678118654752f)); }

// splitmix64: the dropout mask is a pure function of (seed, element index),
// so forward and backward agree and no thread count changes it
inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// whether element i is kept: 24 random bits against the drop threshold
inline bool dropout_keep(uint64_t seed, int64_t i, uint32_t threshold) {
    return uint32_t(mix64(seed ^ (uint64_t(i) * 0xd1b54a32d192ed03ull)) >> 40) >= threshold;
}

inline uint32_t dropout_threshold(float p) { return uint32_t(double(p) * double(1u << 24)); }

// x[0:n] (element ids i0..i0+n) *= keep ? 1/(1-p) : 0
inline void dropout_span(float* x, int64_t n, int64_t i0, uint64_t seed, uint32_t threshold, float scale) {
    for (int64_t j = 0; j < n; j++) x[j] = dropout_keep(seed, i0 + j, threshold) ? x[j] * scale : 0.0f;
}

// p[0:T] = softmax(scale * p + mask), mask additive (0 or -inf), at least one key unmasked
inline void masked_softmax_row(float* p, const float* mask, int64_t T, float scale) {
    const vf sv = vset1(scale);
    int64_t j = 0;
    for (; j + 8 <= T; j += 8) vstore(p + j, vfma(vload(p + j), sv, vload(mask + j)));
    for (; j < T; j++) p[j] = p[j] * scale + mask[j];
    const float mx = row_max(p, T);
    const vf mv = vset1(mx);
    for (j = 0; j + 8 <= T; j += 8) vstore(p + j, vexp(vsub(vload(p + j), mv)));
    for (; j < T; j++) p[j] = std::exp(p[j] - mx);
    const float inv = float(1.0 / row_sum(p, T));
    const vf iv = vset1(inv);
    for (j = 0; j + 8 <= T; j += 8) vstore(p + j, vmul(vload(p + j), iv));
    for (; j < T; j++) p[j] *= inv;
}

// d[0:T] = p * (d - sum(p * d)) * scale, in place (softmax backward)
inline void softmax_backward_row(float* d, const float* p, int64_t T, float scale) {
    vf acc = vzero();
    int64_t j = 0;
    for (; j + 8 <= T; j += 8) acc = vfma(vload(p + j), vload(d + j), acc);
    float dot = vhsum(acc);
    for (; j < T; j++) dot += p[j] * d[j];
    const vf dv = vset1(dot), sv = vset1(scale);
    for (j = 0; j + 8 <= T; j += 8) vstore(d + j, vmul(vmul(vload(p + j), vsub(vload(d + j), dv)), sv));
    for (; j < T; j++) d[j] = p[j] * (d[j] - dot) * scale;
}

inline int masked_attention_threads(int64_t B, int64_t NH, int64_t T, int64_t HS) {
    const int64_t units = B * NH;
    const int nt = threads_for(units * T * T * HS / 8);
    return units < nt ? int(units) : nt;
}

}  // namespace

// ---- embeddings: word + absolute position + token type

void bert_embed_forward(float* out, const int64_t* ids, const int64_t* types, const float* wte,
                        const float* wpe, const float* wtt, int64_t B, int64_t T, int64_t C) {
    // ids, types (B,T) checked by the caller, wte (V,C), wpe (>=T,C), wtt (TT,C) -> out (B,T,C)
    // position t of every row is t; the sum rounds as torch's (word + type) + position
#pragma omp parallel for num_threads(threads_for(B * T * C)) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const float* e = wte + ids[bt] * C;
        const float* y = wtt + types[bt] * C;
        const float* p = wpe + (bt % T) * C;
        float* o = out + bt * C;
        int64_t j = 0;
        for (; j + 8 <= C; j += 8) vstore(o + j, vadd(vadd(vload(e + j), vload(y + j)), vload(p + j)));
        for (; j < C; j++) o[j] = (e[j] + y[j]) + p[j];
    }
}

void bert_embed_backward(float* dwte, float* dwpe, float* dwtt, const float* dout, const int64_t* ids,
                         const int64_t* types, int64_t B, int64_t T, int64_t C) {
    // dout (B,T,C) -> dwte (V,C), dwpe (>=T,C), dwtt (TT,C) +=
    // Each thread owns a slice of the channels, so a row repeated anywhere in
    // the batch is summed by one thread, in (b,t) order.
    const int nt = C >= 64 ? threads_for(B * T * C) : 1;
#pragma omp parallel num_threads(nt)
    {
        int64_t c0, c1;
        slice8(C, thread_index(), thread_count(), &c0, &c1);
        for (int64_t bt = 0; bt < B * T; bt++) {
            row_add(dwte + ids[bt] * C + c0, dout + bt * C + c0, c1 - c0);
            row_add(dwtt + types[bt] * C + c0, dout + bt * C + c0, c1 - c0);
        }
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++) row_add(dwpe + t * C + c0, dout + (b * T + t) * C + c0, c1 - c0);
    }
}

// ---- GELU, exact (erf)

void gelu_erf_forward(float* out, const float* inp, int64_t n) {
    // inp (n) -> out (n) = x Phi(x)
    const auto gelu = [&](auto lanes, int64_t i) {
        using L = decltype(lanes);
        const auto x = L::load(inp + i);
        L::store(out + i, vmul(x, normal_cdf(x)));
    };
    const int64_t wide = n / Lanes<WideVec>::n * Lanes<WideVec>::n;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t i = 0; i < wide; i += Lanes<WideVec>::n) gelu(Lanes<WideVec>{}, i);
    int64_t i = wide;
    for (; i + 8 <= n; i += 8) gelu(Lanes<vf>{}, i);  // every 8 floats in vector lanes, whatever the width
    for (; i < n; i++) out[i] = inp[i] * normal_cdf1(inp[i]);
}

void gelu_erf_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
    // inp, dout (n) -> dinp (n) += (Phi(x) + x phi(x)) dout, phi the normal density
    const auto grad = [&](auto lanes, int64_t i) {
        using L = decltype(lanes);
        const auto x = L::load(inp + i);
        const auto pdf = vmul(L::splat(0.3989422804014327f), vexp(vmul(L::splat(-0.5f), vmul(x, x))));
        const auto g = vfma(x, pdf, normal_cdf(x));
        L::store(dinp + i, vfma(g, L::load(dout + i), L::load(dinp + i)));
    };
    const int64_t wide = n / Lanes<WideVec>::n * Lanes<WideVec>::n;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t i = 0; i < wide; i += Lanes<WideVec>::n) grad(Lanes<WideVec>{}, i);
    int64_t i = wide;
    for (; i + 8 <= n; i += 8) grad(Lanes<vf>{}, i);
    for (; i < n; i++) {
        const float x = inp[i];
        const float g = normal_cdf1(x) + x * 0.3989422804014327f * std::exp(-0.5f * x * x);
        dinp[i] += g * dout[i];
    }
}

// ---- tanh (the pooler)

void tanh_forward(float* out, const float* inp, int64_t n) {
    // inp (n) -> out (n); small (one row per sequence): one thread
    for (int64_t i = 0; i < n; i++) out[i] = std::tanh(inp[i]);
}

void tanh_backward(float* dinp, const float* out, const float* dout, int64_t n) {
    // out = tanh(inp), dout (n) -> dinp (n) += (1 - out^2) dout
    for (int64_t i = 0; i < n; i++) dinp[i] += (1.0f - out[i] * out[i]) * dout[i];
}

// ---- dropout

void dropout_forward(float* x, int64_t n, float p, uint64_t seed) {
    // x (n) in place: element i kept (scaled by 1/(1-p)) or zeroed as mix(seed, i) says;
    // the backward pass is the same call on the gradient
    if (p <= 0.0f) return;
    const uint32_t th = dropout_threshold(p);
    const float scale = p >= 1.0f ? 0.0f : float(1.0 / (1.0 - double(p)));
    constexpr int64_t kChunk = 4096;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t i0 = c * kChunk;
        dropout_span(x + i0, min64(kChunk, n - i0), i0, seed, th, scale);
    }
}

// ---- bidirectional self-attention over packed qkv with a key mask

void attention_masked_forward(float* out, float* att, const float* qkv, const float* mask, int64_t B,
                              int64_t T, int64_t C, int64_t NH, float p_drop, uint64_t seed, float* work) {
    // qkv (B,T,3C), mask (B,T) additive (0 or -inf) -> out (B,T,C), att (B,NH,T,T); threads over (b,h)
    // att holds the softmax before dropout; out = dropout(att) @ v, the dropped
    // element (b,h,t,s) being element (b*NH+h)*T*T + t*T + s of dropout_forward.
    const int64_t HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt(float(HS));
    const int64_t per_thread = attention_masked_thread_floats(T);
    const uint32_t th = dropout_threshold(p_drop);
    const float dscale = p_drop >= 1.0f ? 0.0f : float(1.0 / (1.0 - double(p_drop)));
#pragma omp parallel for num_threads(masked_attention_threads(B, NH, T, HS)) schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        float* gw = work + int64_t(thread_index()) * per_thread;  // one thread's sgemm blocks
        float* pd = gw + sgemm_work_floats(1);                     // (T,T) dropped probabilities
        const int64_t b = bh / NH, h = bh % NH;
        const float* q = qkv + b * T * C3 + h * HS;  // (T,HS), row stride 3C
        const float* k = q + C;
        const float* v = q + 2 * C;
        float* a = att + bh * T * T;          // (T,T)
        float* o = out + b * T * C + h * HS;  // (T,HS), row stride C
        // a = q @ k^T, then the scaled, masked softmax of every row
        sgemm_strided(a, q, k, T, T, HS, T, C3, 1, 1, C3, false, gw);
        for (int64_t t = 0; t < T; t++) masked_softmax_row(a + t * T, mask + b * T, T, scale);
        const float* src = a;
        if (p_drop > 0.0f) {
            std::memcpy(pd, a, sizeof(float) * T * T);
            dropout_span(pd, T * T, bh * T * T, seed, th, dscale);
            src = pd;
        }
        // o = src @ v
        sgemm_strided(o, src, v, T, HS, T, C, T, 1, C3, 1, false, gw);
    }
}

namespace {

// dst[k*ld + s] = src[s*rs + k] for s < n, k < HS; columns n..ld-1 zeroed.
// HS and ld multiples of 8: 8x8 blocks transposed in registers.
inline void transpose_keys(float* dst, int64_t ld, const float* src, int64_t rs, int64_t n, int64_t HS) {
    for (int64_t s = 0; s < ld; s += 8)
        for (int64_t k = 0; k < HS; k += 8) {
            vf r[8];
            for (int64_t i = 0; i < 8; i++) r[i] = s + i < n ? vload(src + (s + i) * rs + k) : vzero();
            vtranspose8(r);
            for (int64_t j = 0; j < 8; j++) vstore(dst + (k + j) * ld + s, r[j]);
        }
}

// a (n,n) = q (n,HS) @ k^T with q's rows at stride rs and kt = k^T (HS, ld)
// zero padded, ld a multiple of V's width: each score a chain of FMAs from
// zero in k order, as sgemm sums one k block (HS <= kGemmKC). Four queries
// share each load of kt. row: scratch for one vector.
template <class V>
void head_scores(float* a, const float* q, int64_t rs, const float* kt, int64_t ld, int64_t n, int64_t HS,
                 float* row) {
    using L = Lanes<V>;
    constexpr int64_t W = L::n;
    const auto put = [&](int64_t t, int64_t s, V c) {
        if (s + W <= n) {
            L::store(a + t * n + s, c);
        } else {
            L::store(row, c);
            for (int64_t j = s; j < n; j++) a[t * n + j] = row[j - s];
        }
    };
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
        const float* q0 = q + t * rs;
        for (int64_t s = 0; s < n; s += W) {
            V c0 = L::splat(0.0f), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t k = 0; k < HS; k++) {
                const V kv = L::load(kt + k * ld + s);
                c0 = vfma(L::splat(q0[k]), kv, c0);
                c1 = vfma(L::splat(q0[rs + k]), kv, c1);
                c2 = vfma(L::splat(q0[2 * rs + k]), kv, c2);
                c3 = vfma(L::splat(q0[3 * rs + k]), kv, c3);
            }
            put(t, s, c0), put(t + 1, s, c1), put(t + 2, s, c2), put(t + 3, s, c3);
        }
    }
    for (; t < n; t++)
        for (int64_t s = 0; s < n; s += W) {
            V c = L::splat(0.0f);
            for (int64_t k = 0; k < HS; k++) c = vfma(L::splat(q[t * rs + k]), L::load(kt + k * ld + s), c);
            put(t, s, c);
        }
}

// o (n,HS) at row stride ro = p (n,n) @ v (n,HS) at row stride rv: each output
// summed over key blocks of gemm_k_block(n, kGemmKC, 4), each a chain of FMAs
// from zero in key order, the block sums added in order (sgemm's order).
// NV = HS / (V's width) vectors of accumulators, unrolled into registers.
template <class V, int NV>
void head_values(float* o, int64_t ro, const float* p, const float* v, int64_t rv, int64_t n) {
    using L = Lanes<V>;
    const int64_t kc = gemm_k_block(n, kGemmKC, 4);
    for (int64_t t = 0; t < n; t++) {
        const float* pt = p + t * n;
        V total[NV];
        for (int64_t s0 = 0; s0 < n; s0 += kc) {
            const int64_t s1 = std::min(n, s0 + kc);
            V acc[NV];
#pragma GCC unroll 8
            for (int j = 0; j < NV; j++) acc[j] = L::splat(0.0f);
            for (int64_t s = s0; s < s1; s++) {
                const V ps = L::splat(pt[s]);
                const float* vs = v + s * rv;
#pragma GCC unroll 8
                for (int j = 0; j < NV; j++) acc[j] = vfma(ps, L::load(vs + L::n * j), acc[j]);
            }
#pragma GCC unroll 8
            for (int j = 0; j < NV; j++) total[j] = s0 == 0 ? acc[j] : vadd(acc[j], total[j]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NV; j++) L::store(o + t * ro + L::n * j, total[j]);
    }
}

// head_values for HS a multiple of 8 up to 64, in 16 lanes where HS allows
inline void head_values(float* o, int64_t ro, const float* p, const float* v, int64_t rv, int64_t n,
                        int64_t HS) {
#if defined(PYLLM_ISA_AVX512)
    switch (HS) {
        case 16: return head_values<vf16, 1>(o, ro, p, v, rv, n);
        case 32: return head_values<vf16, 2>(o, ro, p, v, rv, n);
        case 48: return head_values<vf16, 3>(o, ro, p, v, rv, n);
        case 64: return head_values<vf16, 4>(o, ro, p, v, rv, n);
        default: break;
    }
#endif
    switch (HS / 8) {
        case 1: return head_values<vf, 1>(o, ro, p, v, rv, n);
        case 2: return head_values<vf, 2>(o, ro, p, v, rv, n);
        case 3: return head_values<vf, 3>(o, ro, p, v, rv, n);
        case 4: return head_values<vf, 4>(o, ro, p, v, rv, n);
        case 5: return head_values<vf, 5>(o, ro, p, v, rv, n);
        case 6: return head_values<vf, 6>(o, ro, p, v, rv, n);
        case 7: return head_values<vf, 7>(o, ro, p, v, rv, n);
        default: return head_values<vf, 8>(o, ro, p, v, rv, n);
    }
}

}  // namespace

void attention_packed_forward(float* out, float* att, const float* qkv, const float* kmask, const int64_t* seq,
                              const int64_t* att_off, int64_t B, int64_t C, int64_t NH, float* work) {
    // sequence b: rows [seq[b], seq[b+1]) of qkv (.,3C), kmask, out (.,C); its (NH,n,n)
    // probabilities at att + att_off[b]; threads over (b,h), longest first come first
    const int64_t HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt(float(HS));
    int64_t T = 0, flops = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = seq[b + 1] - seq[b];
        T = std::max(T, n);
        flops += n * n * HS;
    }
    const int64_t per_thread = attention_packed_thread_floats(T, HS);
    const bool own = HS % 8 == 0 && HS <= 64;  // else each head through sgemm_strided
    const int nt = int(std::min<int64_t>(threads_for(flops * NH / 8), B * NH));
#pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        float* gw = work + int64_t(thread_index()) * per_thread;
        const int64_t b = bh / NH, h = bh % NH, n = seq[b + 1] - seq[b];
        const float* q = qkv + seq[b] * C3 + h * HS;  // (n,HS), row stride 3C
        const float* k = q + C;
        const float* v = q + 2 * C;
        float* a = att + att_off[b] + h * n * n;  // (n,n)
        float* o = out + seq[b] * C + h * HS;     // (n,HS), row stride C
        if (own) {
            // keys in 16 lanes on avx512 once there are 16 of them, else 8
            const bool wide = Lanes<WideVec>::n > 8 && n >= 16;
            const int64_t w = wide ? Lanes<WideVec>::n : 8, ld = (n + w - 1) / w * w;
            transpose_keys(gw, ld, k, C3, n, HS);
            if (wide) head_scores<WideVec>(a, q, C3, gw, ld, n, HS, gw + HS * ld);
            else head_scores<vf>(a, q, C3, gw, ld, n, HS, gw + HS * ld);
        } else {
            sgemm_strided(a, q, k, n, n, HS, n, C3, 1, 1, C3, false, gw);
        }
        for (int64_t t = 0; t < n; t++) masked_softmax_row(a + t * n, kmask + seq[b], n, scale);
        if (own) head_values(o, C, a, v, C3, n, HS);
        else sgemm_strided(o, a, v, n, HS, n, C, n, 1, C3, 1, false, gw);
    }
}

void attention_masked_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int64_t B,
                               int64_t T, int64_t C, int64_t NH, float p_drop, uint64_t seed, float* work) {
    // dout (B,T,C), qkv (B,T,3C), att (B,NH,T,T) as saved -> dqkv (B,T,3C) +=; threads over (b,h)
    // With P = att, D = dropout(P), dO the head's columns of dout:
    //   dD = dO v^T, dP = dropout(dD), dS = P * (dP - rowsum(P * dP)) * scale,
    //   dq += dS k, dk += dS^T q, dv += D^T dO (masked keys have P = 0, so dS = 0).
    const int64_t HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt(float(HS));
    const int64_t per_thread = attention_masked_thread_floats(T);
    const uint32_t th = dropout_threshold(p_drop);
    const float dscale = p_drop >= 1.0f ? 0.0f : float(1.0 / (1.0 - double(p_drop)));
#pragma omp parallel for num_threads(masked_attention_threads(B, NH, T, HS)) schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        float* gw = work + int64_t(thread_index()) * per_thread;
        float* pd = gw + sgemm_work_floats(1);  // (T,T) dropped probabilities
        float* ds = pd + T * T;                 // (T,T) score gradients
        const int64_t b = bh / NH, h = bh % NH;
        const float* q = qkv + b * T * C3 + h * HS;
        const float* k = q + C;
        const float* v = q + 2 * C;
        float* dq = dqkv + b * T * C3 + h * HS;
        float* dk = dq + C;
        float* dv = dq + 2 * C;
        const float* dout_h = dout + b * T * C + h * HS;  // (T,HS), row stride C
        const float* a = att + bh * T * T;
        const float* d = a;
        if (p_drop > 0.0f) {
            std::memcpy(pd, a, sizeof(float) * T * T);
            dropout_span(pd, T * T, bh * T * T, seed, th, dscale);
            d = pd;
        }
        // dv += d^T @ dout_h
        sgemm_strided(dv, d, dout_h, T, HS, T, C3, 1, T, C, 1, true, gw);
        // ds = dout_h @ v^T, through the dropout, then the softmax backward
        sgemm_strided(ds, dout_h, v, T, T, HS, T, C, 1, 1, C3, false, gw);
        if (p_drop > 0.0f) dropout_span(ds, T * T, bh * T * T, seed, th, dscale);
        for (int64_t t = 0; t < T; t++) softmax_backward_row(ds + t * T, a + t * T, T, scale);
        // dq += ds @ k, dk += ds^T @ q
        sgemm_strided(dq, ds, k, T, HS, T, C3, T, 1, C3, 1, true, gw);
        sgemm_strided(dk, ds, q, T, HS, T, C3, 1, T, C3, 1, true, gw);
    }
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
