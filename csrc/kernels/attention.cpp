// Fused scaled-dot-product attention: scores, mask, online softmax and the
// weighted sum of values in one pass over the keys, plus the plain reference.
// Not the KV cache (runtime/) and not the backward pass.
#include <cmath>

#include "../simd/simd.h"
#include "common.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

namespace {

inline float dot(const float* a, const float* b, int64_t n) {
    vf acc0 = vzero(), acc1 = vzero();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = vfma(vload(a + i), vload(b + i), acc0);
        acc1 = vfma(vload(a + i + 8), vload(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = vfma(vload(a + i), vload(b + i), acc0);
    float s = vhsum(vadd(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// y = y * alpha + p * x over n floats
inline void scale_add(float* y, float alpha, float p, const float* x, int64_t n) {
    const vf av = vset1(alpha), pv = vset1(p);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vstore(y + i, vfma(pv, vload(x + i), vmul(av, vload(y + i))));
    for (; i < n; i++) y[i] = y[i] * alpha + p * x[i];
}

}  // namespace

void attention_forward(float* out, const float* q, const float* k, const float* v,
                       const float* mask, const int64_t* out_strides, const int64_t* q_strides,
                       const int64_t* k_strides, const int64_t* v_strides,
                       const int64_t* mask_strides, int64_t B, int64_t NH, int64_t NKV, int64_t T,
                       int64_t S, int64_t HS, float scale, bool causal, int64_t q_offset,
                       float* work) {
    // q (B,NH,T,HS), k/v (B,NKV,S,HS) -> out (B,NH,T,HS), all strided in rows
    const int64_t group = NH / NKV;
    const int64_t rows = B * NH * T;
    const int nt = rows * S * HS >= (1 << 15) ? num_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        float* acc = work + int64_t(thread_index()) * (HS + kAttnBlock);  // (HS)
        float* score = acc + HS;                                          // (kAttnBlock)
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            const int64_t t = row % T, h = (row / T) % NH, b = row / (T * NH);
            const int64_t kh = h / group;
            const float* qr = q + b * q_strides[0] + h * q_strides[1] + t * q_strides[2];
            const float* kb = k + b * k_strides[0] + kh * k_strides[1];
            const float* vb = v + b * v_strides[0] + kh * v_strides[1];
            const float* mr = mask ? mask + b * mask_strides[0] + h * mask_strides[1] +
                                         t * mask_strides[2]
                                   : nullptr;
            float* o = out + b * out_strides[0] + h * out_strides[1] + t * out_strides[2];
            int64_t s_end = S;
            if (causal) {
                const int64_t last = t + q_offset + 1;
                s_end = last < S ? (last > 0 ? last : 0) : S;
            }
            for (int64_t i = 0; i < HS; i++) acc[i] = 0.0f;
            float m = -INFINITY;  // running max of the scores
            double l = 0.0;       // running sum of exp(score - m)
            for (int64_t s0 = 0; s0 < s_end; s0 += kAttnBlock) {
                const int64_t n = s_end - s0 < kAttnBlock ? s_end - s0 : kAttnBlock;
                float bm = -INFINITY;
                for (int64_t j = 0; j < n; j++) {
                    float sc = dot(qr, kb + (s0 + j) * k_strides[2], HS) * scale;
                    if (mr) sc += mr[s0 + j];
                    score[j] = sc;
                    bm = sc > bm ? sc : bm;
                }
                if (bm == -INFINITY) continue;  // every key so far is masked out
                const float m_new = bm > m ? bm : m;
                const float alpha = std::exp(m - m_new);
                l *= alpha;
                int64_t j = 0;
                const vf mv = vset1(m_new);
                for (; j + 8 <= n; j += 8) vstore(score + j, vexp(vsub(vload(score + j), mv)));
                for (; j < n; j++) score[j] = std::exp(score[j] - m_new);
                for (j = 0; j < n; j++) {
                    l += double(score[j]);
                    scale_add(acc, j == 0 ? alpha : 1.0f, score[j], vb + (s0 + j) * v_strides[2], HS);
                }
                m = m_new;
            }
            // a row with every key masked gets zeros, as torch's SDPA returns
            const float inv = l > 0.0 ? float(1.0 / l) : 0.0f;
            for (int64_t i = 0; i < HS; i++) o[i] = acc[i] * inv;
        }
    }
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
