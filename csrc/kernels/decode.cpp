// Attention for one decoded position: a query row against the key/value
// cache, over a range of heads. Not prefill attention (attention.cpp), no threads.
#include <cmath>

#include "../simd/simd.h"
#include "common.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

namespace {

inline float dot_hs(const float* a, const float* b, int64_t n) {
    vf acc0 = vzero(), acc1 = vzero();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        acc0 = vfma(vload(a + j), vload(b + j), acc0);
        acc1 = vfma(vload(a + j + 8), vload(b + j + 8), acc1);
    }
    for (; j + 8 <= n; j += 8) acc0 = vfma(vload(a + j), vload(b + j), acc0);
    float s = vhsum(vadd(acc0, acc1));
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

}  // namespace

void attention_decode(float* out, const float* q, const float* k, const float* v, int64_t h0, int64_t h1,
                      int64_t NH, int64_t NKV, int64_t S, int64_t HS, float scale, float* work) {
    // q (NH*HS), k/v cache (S, NKV*HS), heads [h0,h1) -> out (NH*HS); work: S scores
    const int64_t KVD = NKV * HS, group = NH / NKV;
    for (int64_t h = h0; h < h1; h++) {
        const float* qh = q + h * HS;
        const int64_t kvo = (h / group) * HS;
        float mx = -INFINITY;
        for (int64_t s = 0; s < S; s++) {
            work[s] = dot_hs(qh, k + s * KVD + kvo, HS) * scale;
            mx = work[s] > mx ? work[s] : mx;
        }
        // softmax, subtracting the max
        float sum = 0.0f;
        int64_t s = 0;
        vf vsum = vzero();
        const vf vm = vset1(mx);
        for (; s + 8 <= S; s += 8) {
            const vf e = vexp(vsub(vload(work + s), vm));
            vstore(work + s, e);
            vsum = vadd(vsum, e);
        }
        sum = vhsum(vsum);
        for (; s < S; s++) {
            work[s] = std::exp(work[s] - mx);
            sum += work[s];
        }
        const float inv = 1.0f / sum;
        // out = sum_s p_s v_s, HS a few vectors wide
        float* oh = out + h * HS;
        int64_t j = 0;
        for (; j + 16 <= HS; j += 16) {
            vf a0 = vzero(), a1 = vzero();
            for (int64_t t = 0; t < S; t++) {
                const vf p = vset1(work[t]);
                a0 = vfma(p, vload(v + t * KVD + kvo + j), a0);
                a1 = vfma(p, vload(v + t * KVD + kvo + j + 8), a1);
            }
            vstore(oh + j, vmul(a0, vset1(inv)));
            vstore(oh + j + 8, vmul(a1, vset1(inv)));
        }
        for (; j < HS; j++) {
            float a = 0.0f;
            for (int64_t t = 0; t < S; t++) a += work[t] * v[t * KVD + kvo + j];
            oh[j] = a * inv;
        }
    }
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
