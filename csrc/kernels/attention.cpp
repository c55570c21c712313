// Scaled-dot-product attention by blocks of queries x keys as GEMM tiles with an online softmax.
// Not the KV cache (runtime/), not the decode step (decode.cpp), not the backward pass.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../simd/simd.h"
#include "common.h"
#include "rows.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

namespace {

// y[0:n] *= a
inline void scale_row(float* y, float a, int64_t n) {
    const vf av = vset1(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vstore(y + i, vmul(av, vload(y + i)));
    for (; i < n; i++) y[i] *= a;
}

// The scores p[0:n] of one query row against keys s0.. (raw dot products):
// scaled, soft-capped (softcap > 0), masked (mr: the row's additive mask from
// key s0, or null; keys before `first` and from `visible` on are hidden),
// turned into exp(score - m_new) with the running maximum m updated. Returns
// the rescale factor for what the row accumulated so far (0 before anything
// was seen) and adds the new weights to l.
inline float softmax_block_row(float* p, int64_t n, int64_t first, int64_t visible, const float* mr, float scale,
                               float softcap, float& m, double& l) {
    if (visible > n) visible = n;
    if (visible < 0) visible = 0;
    const vf sv = vset1(scale);
    int64_t j = 0;
    if (softcap > 0.0f) {
        // in torch's order: (s * scale) / cap, tanh, * cap, then + mask
        for (; j < visible; j++) {
            const float x = std::tanh(p[j] * scale / softcap) * softcap;
            p[j] = mr ? x + mr[j] : x;
        }
    } else if (mr) {
        for (; j + 8 <= visible; j += 8) vstore(p + j, vfma(vload(p + j), sv, vload(mr + j)));
        for (; j < visible; j++) p[j] = p[j] * scale + mr[j];
    } else {
        for (; j + 8 <= visible; j += 8) vstore(p + j, vmul(vload(p + j), sv));
        for (; j < visible; j++) p[j] *= scale;
    }
    // keys before `first` are outside the sliding window: weight exactly 0
    for (j = 0; j < first && j < visible; j++) p[j] = -INFINITY;
    const float bm = visible > 0 ? row_max(p, visible) : -INFINITY;
    const float m_new = bm > m || bm != bm ? bm : m;  // a NaN score makes the row NaN, as in torch
    if (m_new == -INFINITY) {  // every key so far masked out: weights 0
        std::memset(p, 0, sizeof(float) * size_t(n));
        return 0.0f;
    }
    const float alpha = m == -INFINITY ? 0.0f : std::exp(m - m_new);
    const vf mv = vset1(m_new);
    for (j = 0; j + 8 <= visible; j += 8) vstore(p + j, vexp(vsub(vload(p + j), mv)));
    for (; j < visible; j++) p[j] = std::exp(p[j] - m_new);
    for (j = 0; j < first && j < visible; j++) p[j] = 0.0f;
    if (n > visible) std::memset(p + visible, 0, sizeof(float) * size_t(n - visible));
    l = l * double(alpha) + row_sum(p, visible);
    m = m_new;
    return alpha;
}

}  // namespace

namespace {

// Unit u of the split: query rows of up to hg heads that share a key/value
// head (grouped-query attention) for tq steps, stacked step-major into one
// block of at most kAttnStackRows rows, so each key/value block is packed
// once for all of them. Every row's arithmetic depends only on its own query,
// position and keys, not on which rows share the block. work: one thread's
// attention_thread_floats(HS).
void attention_unit(float* out, const float* q, const float* k, const float* v, const float* mask,
                    const int64_t* out_strides, const int64_t* q_strides, const int64_t* k_strides,
                    const int64_t* v_strides, const int64_t* mask_strides, int64_t NH, int64_t NKV, int64_t T,
                    int64_t S, int64_t HS, float scale, bool causal, int64_t q_offset, float softcap,
                    int64_t window, int64_t u, float* work) {
    const int64_t group = NH / NKV;
    const int64_t hg = group < kAttnStackRows ? group : kAttnStackRows;  // heads per unit
    const int64_t chunks = (group + hg - 1) / hg;                        // head chunks per kv head
    const int64_t tq = kAttnStackRows / hg;                              // steps per unit
    const int64_t qblocks = (T + tq - 1) / tq;
    float* gw = work;                                             // sgemm blocks
    float* p = gw + sgemm_work_floats(1);                         // (rows, kAttnKeys) weights
    float* qs = p + kAttnStackRows * kAttnKeys;                   // (rows, HS) stacked queries
    float* os = qs + kAttnStackRows * HS;                         // (rows, HS) stacked outputs
    float* rm = os + kAttnStackRows * HS;                         // running max per row
    double* rl = reinterpret_cast<double*>(rm + kAttnStackRows);  // running sum per row
    // the latest (costliest, when causal) query blocks first, for a short tail
    const int64_t qb = qblocks - 1 - u % qblocks, rest = u / qblocks;
    const int64_t chunk = rest % chunks, kh = (rest / chunks) % NKV, b = rest / (chunks * NKV);
    const int64_t h0 = kh * group + chunk * hg, nh = std::min(hg, kh * group + group - h0);
    const int64_t t0 = qb * tq, t1 = std::min(T, t0 + tq), rows = (t1 - t0) * nh;
    const float* kb = k + b * k_strides[0] + kh * k_strides[1];
    const float* vb = v + b * v_strides[0] + kh * v_strides[1];
    // row i: step t0 + i / nh of head h0 + i % nh
    for (int64_t i = 0; i < rows; i++) {
        const float* qr = q + b * q_strides[0] + (h0 + i % nh) * q_strides[1] + (t0 + i / nh) * q_strides[2];
        std::memcpy(qs + i * HS, qr, sizeof(float) * size_t(HS));
        rm[i] = -INFINITY;
        rl[i] = 0.0;
    }
    // keys any row of the block sees: causal step t sees s < t + q_offset + 1
    int64_t s_len = S;
    if (causal) {
        const int64_t last = t1 + q_offset;
        s_len = last < S ? (last > 0 ? last : 0) : S;
    }
    // with a sliding window, key blocks before every row's window are skipped
    // (a row gives the same bits either way: hidden keys weigh exactly 0)
    int64_t s_begin = 0;
    if (window > 0) {
        const int64_t lo = t0 + q_offset + 1 - window;
        s_begin = lo > 0 ? lo / kAttnKeys * kAttnKeys : 0;
        if (s_begin > s_len) s_begin = s_len;
    }
    if (s_len == s_begin) std::memset(os, 0, sizeof(float) * size_t(rows * HS));
    for (int64_t s0 = s_begin; s0 < s_len; s0 += kAttnKeys) {
        const int64_t n = s_len - s0 < kAttnKeys ? s_len - s0 : kAttnKeys;
        // p = stacked queries @ keys[s0:s0+n]^T
        sgemm_strided(p, qs, kb + s0 * k_strides[2], rows, n, HS, kAttnKeys, HS, 1, 1, k_strides[2], false, gw);
        for (int64_t i = 0; i < rows; i++) {
            const int64_t t = t0 + i / nh, h = h0 + i % nh;
            const int64_t visible = causal ? t + q_offset + 1 - s0 : n;
            const int64_t first = window > 0 ? t + q_offset + 1 - window - s0 : 0;
            const float* mr = mask ? mask + b * mask_strides[0] + h * mask_strides[1] + t * mask_strides[2] + s0
                                   : nullptr;
            const float alpha =
                softmax_block_row(p + i * kAttnKeys, n, first, visible, mr, scale, softcap, rm[i], rl[i]);
            if (s0 > s_begin && alpha != 1.0f) scale_row(os + i * HS, alpha, HS);
        }
        // stacked outputs (+)= p @ values[s0:s0+n]
        sgemm_strided(os, p, vb + s0 * v_strides[2], rows, HS, n, HS, kAttnKeys, 1, v_strides[2], 1, s0 > s_begin,
                      gw);
    }
    // a row with every key masked gets zeros, as torch's SDPA returns
    for (int64_t i = 0; i < rows; i++) {
        float* o = out + b * out_strides[0] + (h0 + i % nh) * out_strides[1] + (t0 + i / nh) * out_strides[2];
        const float inv = rl[i] > 0.0 ? float(1.0 / rl[i]) : 0.0f;
        const vf iv = vset1(inv);
        int64_t j = 0;
        for (; j + 8 <= HS; j += 8) vstore(o + j, vmul(iv, vload(os + i * HS + j)));
        for (; j < HS; j++) o[j] = os[i * HS + j] * inv;
    }
}

}  // namespace

void attention_forward(float* out, const float* q, const float* k, const float* v,
                       const float* mask, const int64_t* out_strides, const int64_t* q_strides,
                       const int64_t* k_strides, const int64_t* v_strides,
                       const int64_t* mask_strides, int64_t B, int64_t NH, int64_t NKV, int64_t T,
                       int64_t S, int64_t HS, float scale, bool causal, int64_t q_offset,
                       float softcap, int64_t window, float* work) {
    // q (B,NH,T,HS), k/v (B,NKV,S,HS) -> out (B,NH,T,HS), all strided in rows
    const int64_t units = attention_units(B, NH, NKV, T);
    const int nt = B * NH * T * S * HS >= (1 << 15) ? num_threads() : 1;
    const int64_t per_thread = attention_thread_floats(HS);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int64_t u = 0; u < units; u++)
        attention_unit(out, q, k, v, mask, out_strides, q_strides, k_strides, v_strides, mask_strides, NH, NKV, T, S,
                       HS, scale, causal, q_offset, softcap, window, u,
                       work + int64_t(thread_index()) * per_thread);
}

void attention_forward_units(float* out, const float* q, const float* k, const float* v,
                             const float* mask, const int64_t* out_strides, const int64_t* q_strides,
                             const int64_t* k_strides, const int64_t* v_strides,
                             const int64_t* mask_strides, int64_t B, int64_t NH, int64_t NKV, int64_t T,
                             int64_t S, int64_t HS, float scale, bool causal, int64_t q_offset,
                             float softcap, int64_t window, int64_t u0, int64_t u1, float* work) {
    // attention_forward's units [u0, u1) on this thread
    for (int64_t u = u0; u < u1; u++)
        attention_unit(out, q, k, v, mask, out_strides, q_strides, k_strides, v_strides, mask_strides, NH, NKV, T, S,
                       HS, scale, causal, q_offset, softcap, window, u, work);
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
