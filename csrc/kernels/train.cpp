// Training kernels: backward twins of the GPT-2 ops, attention with saved probabilities, AdamW.
// Not the forward ops inference shares (nn.cpp) nor the GEMMs (matmul.cpp). Backward ops add (+=).
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
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// [c0, c1) of n split into `parts` slices of whole 8-float vectors
inline void slice8(int64_t n, int part, int parts, int64_t* c0, int64_t* c1) {
    const int64_t vecs = ceil_div(n, 8);
    *c0 = min64(n, vecs * part / parts * 8);
    *c1 = min64(n, vecs * (part + 1) / parts * 8);
}

}  // namespace

// ---- bias

void bias_add(float* out, const float* bias, int64_t R, int64_t N) {
    // out (R,N) += bias (N) on every row
#pragma omp parallel for num_threads(threads_for(R * N)) schedule(static)
    for (int64_t r = 0; r < R; r++) row_add(out + r * N, bias, N);
}

void bias_backward(float* dbias, const float* dout, int64_t R, int64_t N, float* work) {
    // dout (R,N) -> dbias (N) += sum over rows
    // Threads stream their own rows (4 at a time) into a partial sum in
    // work (nthreads, N); the partials are then added in thread order, each
    // thread a slice of the columns.
#pragma omp parallel num_threads(threads_for(R * N))
    {
        const int ti = thread_index(), nr = thread_count();
        float* part = work + int64_t(ti) * N;  // (N)
        std::memset(part, 0, sizeof(float) * N);
        const int64_t r1 = R * (ti + 1) / nr;
        int64_t r = R * ti / nr;
        for (; r + 4 <= r1; r += 4) {
            const float* d = dout + r * N;
            int64_t j = 0;
            for (; j + 8 <= N; j += 8) {
                const vf s01 = vadd(vload(d + j), vload(d + N + j));
                const vf s23 = vadd(vload(d + 2 * N + j), vload(d + 3 * N + j));
                vstore(part + j, vadd(vload(part + j), vadd(s01, s23)));
            }
            for (; j < N; j++) part[j] += (d[j] + d[N + j]) + (d[2 * N + j] + d[3 * N + j]);
        }
        for (; r < r1; r++) row_add(part, dout + r * N, N);
#pragma omp barrier
        int64_t c0, c1;
        slice8(N, ti, nr, &c0, &c1);
        for (int u = 0; u < nr; u++) row_add(dbias + c0, work + int64_t(u) * N + c0, c1 - c0);
    }
}

// ---- token + position embedding

void encoder_forward(float* out, const int64_t* ids, const float* wte, const float* wpe, int64_t B,
                     int64_t T, int64_t C) {
    // ids (B,T), wte (V,C), wpe (>=T,C) -> out (B,T,C); ids are checked by the caller
#pragma omp parallel for num_threads(threads_for(B * T * C)) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const float* e = wte + ids[bt] * C;
        const float* p = wpe + (bt % T) * C;
        float* o = out + bt * C;
        int64_t j = 0;
        for (; j + 8 <= C; j += 8) vstore(o + j, vadd(vload(e + j), vload(p + j)));
        for (; j < C; j++) o[j] = e[j] + p[j];
    }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int64_t* ids, int64_t B,
                      int64_t T, int64_t C) {
    // dout (B,T,C), ids (B,T) -> dwte (V,C) +=, dwpe (>=T,C) += (rows 0..T-1)
    // Each thread owns a slice of the channels: a token repeated anywhere in
    // the batch is summed by one thread only, in (b,t) order.
    const int nt = C >= 64 ? threads_for(B * T * C) : 1;
#pragma omp parallel num_threads(nt)
    {
        int64_t c0, c1;
        slice8(C, thread_index(), thread_count(), &c0, &c1);
        for (int64_t bt = 0; bt < B * T; bt++)
            row_add(dwte + ids[bt] * C + c0, dout + bt * C + c0, c1 - c0);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++) row_add(dwpe + t * C, dout + (b * T + t) * C, C);
    }
}

// ---- layernorm

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        int64_t R, int64_t C, float* work) {
    // dout, inp (R,C), weight (C), mean, rstd (R) -> dinp (R,C) +=, dweight, dbias (C) +=
    // With n = (x - mean) * rstd and g = weight * dout:
    //   dinp = rstd * (g - mean(g) - n * mean(g * n)), dweight = sum dout * n, dbias = sum dout.
    // Each thread sums its rows' dweight, dbias into work (nthreads, 2, C); then
    // the partials are added in thread order, each thread a slice of channels.
    const int nt = threads_for(R * C);
#pragma omp parallel num_threads(nt)
    {
        const int ti = thread_index(), nr = thread_count();
        float* pw = work + int64_t(ti) * 2 * C;  // (C) this thread's dweight
        float* pb = pw + C;                      // (C) this thread's dbias
        std::memset(pw, 0, sizeof(float) * 2 * C);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float* x = inp + r * C;
            const float* d = dout + r * C;
            float* dx = dinp + r * C;
            const float mu = mean[r], rs = rstd[r];
            const vf mv = vset1(mu), rv = vset1(rs);
            // pass 1: the two means, and the weight and bias gradients
            vf sg = vzero(), sgn = vzero();
            int64_t j = 0;
            for (; j + 8 <= C; j += 8) {
                const vf n = vmul(vsub(vload(x + j), mv), rv);
                const vf dv = vload(d + j);
                const vf g = vmul(vload(weight + j), dv);
                sg = vadd(sg, g);
                sgn = vfma(g, n, sgn);
                vstore(pw + j, vfma(dv, n, vload(pw + j)));
                vstore(pb + j, vadd(vload(pb + j), dv));
            }
            float sgs = vhsum(sg), sgns = vhsum(sgn);
            for (; j < C; j++) {
                const float n = (x[j] - mu) * rs;
                const float g = weight[j] * d[j];
                sgs += g;
                sgns += g * n;
                pw[j] += d[j] * n;
                pb[j] += d[j];
            }
            const float mg = sgs / float(C), mgn = sgns / float(C);
            // pass 2 (the row is still in L1): the input gradient
            const vf mgv = vset1(mg), mgnv = vset1(mgn);
            for (j = 0; j + 8 <= C; j += 8) {
                const vf n = vmul(vsub(vload(x + j), mv), rv);
                const vf g = vmul(vload(weight + j), vload(d + j));
                const vf t = vsub(vsub(g, mgv), vmul(n, mgnv));
                vstore(dx + j, vfma(t, rv, vload(dx + j)));
            }
            for (; j < C; j++) {
                const float n = (x[j] - mu) * rs;
                const float g = weight[j] * d[j];
                dx[j] += (g - mg - n * mgn) * rs;
            }
        }
        // (the implicit barrier of omp for: every partial is complete)
        int64_t c0, c1;
        slice8(C, ti, nr, &c0, &c1);
        for (int u = 0; u < nr; u++) {
            row_add(dweight + c0, work + int64_t(u) * 2 * C + c0, c1 - c0);
            row_add(dbias + c0, work + int64_t(u) * 2 * C + C + c0, c1 - c0);
        }
    }
}

void layernorm_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* mean,
                            const float* rstd, int64_t R, int64_t C) {
    // dout, inp (R,C), weight (C), mean, rstd (R) -> dinp (R,C) +=, dweight, dbias (C) +=
    for (int64_t r = 0; r < R; r++) {
        const float* x = inp + r * C;
        const float* d = dout + r * C;
        double sg = 0.0, sgn = 0.0;
        for (int64_t j = 0; j < C; j++) {
            const double n = (double(x[j]) - mean[r]) * rstd[r];
            const double g = double(weight[j]) * d[j];
            sg += g;
            sgn += g * n;
            dweight[j] += float(d[j] * n);
            dbias[j] += d[j];
        }
        for (int64_t j = 0; j < C; j++) {
            const double n = (double(x[j]) - mean[r]) * rstd[r];
            const double g = double(weight[j]) * d[j];
            dinp[r * C + j] += float((g - sg / double(C) - n * sgn / double(C)) * rstd[r]);
        }
    }
}

// ---- GELU, tanh approximation

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
    // inp, dout (n) -> dinp (n) += gelu'(inp) * dout
    // gelu(x) = 0.5 x (1 + tanh(u)), u = b (x + k x^3):
    // gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) b (1 + 3 k x^2)
    const float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
    const int64_t blocks = n / 8;
    const vf half = vset1(0.5f), one = vset1(1.0f), two = vset1(2.0f);
    const vf beta = vset1(kBeta), kappa = vset1(kKappa), kappa3 = vset1(3.0f * kKappa);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const vf x = vload(inp + b * 8);
        const vf x2 = vmul(x, x);
        const vf u = vmul(beta, vfma(vmul(kappa, x2), x, x));
        // tanh(u) = 1 - 2 / (exp(2u) + 1): exact limits +-1 for large |u|
        const vf th = vsub(one, vdiv(two, vadd(vexp(vadd(u, u)), one)));
        const vf du = vmul(beta, vfma(kappa3, x2, one));
        const vf sech2 = vsub(one, vmul(th, th));
        const vf grad = vfma(vmul(half, x), vmul(sech2, du), vmul(half, vadd(one, th)));
        vstore(dinp + b * 8, vfma(grad, vload(dout + b * 8), vload(dinp + b * 8)));
    }
    for (int64_t i = blocks * 8; i < n; i++) {
        const float x = inp[i];
        const float th = std::tanh(kBeta * (x + kKappa * x * x * x));
        const float grad = 0.5f * (1.0f + th) +
                           0.5f * x * (1.0f - th * th) * kBeta * (1.0f + 3.0f * kKappa * x * x);
        dinp[i] += grad * dout[i];
    }
}

// ---- causal self-attention over packed qkv, probabilities saved

namespace {

// Query rows per block: the causal products only touch keys before the
// block's end. A whole number of register tiles on every ISA (6 and 12 rows).
constexpr int64_t kAttnRows = 48;

// p[0:n] = softmax(scale * s[0:n]) in place, p[n:T] = 0
inline void causal_softmax_row(float* p, int64_t n, int64_t T, float scale) {
    const float mx = row_max(p, n);
    const vf sv = vset1(scale), mv = vset1(mx * scale);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vstore(p + j, vexp(vsub(vmul(vload(p + j), sv), mv)));
    for (; j < n; j++) p[j] = std::exp(p[j] * scale - mx * scale);
    const float inv = float(1.0 / row_sum(p, n));
    const vf iv = vset1(inv);
    for (j = 0; j + 8 <= n; j += 8) vstore(p + j, vmul(vload(p + j), iv));
    for (; j < n; j++) p[j] *= inv;
    if (T > n) std::memset(p + n, 0, sizeof(float) * (T - n));
}

// d[0:n] = p * (d - sum(p * d)) * scale (softmax backward, in place), d[n:m] = 0
inline void causal_softmax_backward_row(float* d, const float* p, int64_t n, int64_t m, float scale) {
    vf acc = vzero();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc = vfma(vload(p + j), vload(d + j), acc);
    float dot = vhsum(acc);
    for (; j < n; j++) dot += p[j] * d[j];
    const vf dv = vset1(dot), sv = vset1(scale);
    for (j = 0; j + 8 <= n; j += 8)
        vstore(d + j, vmul(vmul(vload(p + j), vsub(vload(d + j), dv)), sv));
    for (; j < n; j++) d[j] = p[j] * (d[j] - dot) * scale;
    if (m > n) std::memset(d + n, 0, sizeof(float) * (m - n));
}

inline int attention_threads(int64_t B, int64_t NH, int64_t T, int64_t HS) {
    const int64_t units = B * NH;
    int nt = threads_for(units * T * T * HS / 8);
    return units < nt ? int(units) : nt;
}

}  // namespace

void attention_qkv_forward(float* out, float* att, const float* qkv, int64_t B, int64_t T,
                           int64_t C, int64_t NH, float* work) {
    // qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T); threads over (b,h)
    // Per block of query rows [i0,i1): the scores against keys [0,i1) by a
    // GEMM straight into att, the causal softmax in place, then out rows
    // = att[i0:i1, 0:i1] @ v[0:i1], written into the head's columns of out.
    const int64_t HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt(float(HS));
    const int64_t per_thread = attention_qkv_thread_floats(T);
#pragma omp parallel for num_threads(attention_threads(B, NH, T, HS)) schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        float* gw = work + int64_t(thread_index()) * per_thread;  // one thread's sgemm blocks
        const int64_t b = bh / NH, h = bh % NH;
        const float* q = qkv + b * T * C3 + h * HS;  // (T,HS), row stride 3C
        const float* k = q + C;
        const float* v = q + 2 * C;
        float* a = att + bh * T * T;        // (T,T)
        float* o = out + b * T * C + h * HS;  // (T,HS), row stride C
        for (int64_t i0 = 0; i0 < T; i0 += kAttnRows) {
            const int64_t i1 = min64(T, i0 + kAttnRows), m = i1 - i0;
            // a[i0:i1, 0:i1] = q[i0:i1] @ k[0:i1]^T
            sgemm_strided(a + i0 * T, q + i0 * C3, k, m, i1, HS, T, C3, 1, 1, C3, false, gw);
            for (int64_t t = i0; t < i1; t++) causal_softmax_row(a + t * T, t + 1, T, scale);
            // o[i0:i1] = a[i0:i1, 0:i1] @ v[0:i1]
            sgemm_strided(o + i0 * C, a + i0 * T, v, m, HS, i1, C, T, 1, C3, 1, false, gw);
        }
    }
}

void attention_qkv_forward_ref(float* out, float* att, const float* qkv, int64_t B, int64_t T,
                               int64_t C, int64_t NH) {
    // qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T); plain loops, sums in double
    const int64_t HS = C / NH, C3 = 3 * C;
    const double scale = 1.0 / std::sqrt(double(HS));
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            for (int64_t t = 0; t < T; t++) {
                const float* q = qkv + (b * T + t) * C3 + h * HS;
                float* a = att + ((b * NH + h) * T + t) * T;
                double mx = -INFINITY;
                for (int64_t s = 0; s <= t; s++) {
                    const float* k = qkv + (b * T + s) * C3 + C + h * HS;
                    double d = 0.0;
                    for (int64_t i = 0; i < HS; i++) d += double(q[i]) * k[i];
                    a[s] = float(d * scale);
                    mx = a[s] > mx ? a[s] : mx;
                }
                double sum = 0.0;
                for (int64_t s = 0; s <= t; s++) sum += std::exp(double(a[s]) - mx);
                for (int64_t s = 0; s < T; s++) a[s] = s <= t ? float(std::exp(double(a[s]) - mx) / sum) : 0.0f;
                float* o = out + (b * T + t) * C + h * HS;
                for (int64_t i = 0; i < HS; i++) {
                    double acc = 0.0;
                    for (int64_t s = 0; s <= t; s++) acc += double(a[s]) * qkv[(b * T + s) * C3 + 2 * C + h * HS + i];
                    o[i] = float(acc);
                }
            }
        }
    }
}

void attention_qkv_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                            int64_t B, int64_t T, int64_t C, int64_t NH, float* work) {
    // dout (B,T,C), qkv (B,T,3C), att (B,NH,T,T) -> dqkv (B,T,3C) +=; threads over (b,h)
    // With P = att, dO = dout's head columns, S the scaled scores:
    //   dP = dO v^T, dS = P * (dP - rowsum(P * dP)) * scale,
    //   dq += dS k, dk += dS^T q, dv += P^T dO,
    // every product limited to the causal blocks (dS and P are 0 above the diagonal).
    const int64_t HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt(float(HS));
    const int64_t per_thread = attention_qkv_thread_floats(T);
#pragma omp parallel for num_threads(attention_threads(B, NH, T, HS)) schedule(static)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        float* gw = work + int64_t(thread_index()) * per_thread;  // one thread's sgemm blocks
        float* ds = gw + sgemm_work_floats(1);                     // (T,T) dS
        const int64_t b = bh / NH, h = bh % NH;
        const float* q = qkv + b * T * C3 + h * HS;  // (T,HS), row stride 3C
        const float* k = q + C;
        const float* v = q + 2 * C;
        float* dq = dqkv + b * T * C3 + h * HS;
        float* dk = dq + C;
        float* dv = dq + 2 * C;
        const float* dout_h = dout + b * T * C + h * HS;  // (T,HS), row stride C
        const float* a = att + bh * T * T;
        for (int64_t i0 = 0; i0 < T; i0 += kAttnRows) {
            const int64_t i1 = min64(T, i0 + kAttnRows), m = i1 - i0;
            // ds[i0:i1, 0:i1] = dout_h[i0:i1] @ v[0:i1]^T, then the softmax backward
            sgemm_strided(ds + i0 * T, dout_h + i0 * C, v, m, i1, HS, T, C, 1, 1, C3, false, gw);
            for (int64_t t = i0; t < i1; t++) causal_softmax_backward_row(ds + t * T, a + t * T, t + 1, i1, scale);
            // dq[i0:i1] += ds[i0:i1, 0:i1] @ k[0:i1]
            sgemm_strided(dq + i0 * C3, ds + i0 * T, k, m, HS, i1, C3, T, 1, C3, 1, true, gw);
        }
        for (int64_t j0 = 0; j0 < T; j0 += kAttnRows) {
            const int64_t j1 = min64(T, j0 + kAttnRows), n = j1 - j0;
            // dk[j0:j1] += ds[j0:T, j0:j1]^T @ q[j0:T]; dv[j0:j1] += a[j0:T, j0:j1]^T @ dout_h[j0:T]
            sgemm_strided(dk + j0 * C3, ds + j0 * T + j0, q + j0 * C3, n, HS, T - j0, C3, 1, T, C3, 1,
                          true, gw);
            sgemm_strided(dv + j0 * C3, a + j0 * T + j0, dout_h + j0 * C, n, HS, T - j0, C3, 1, T, C, 1,
                          true, gw);
        }
    }
}

void attention_qkv_backward_ref(float* dqkv, const float* dout, const float* qkv, const float* att,
                                int64_t B, int64_t T, int64_t C, int64_t NH) {
    // dout (B,T,C), qkv (B,T,3C), att (B,NH,T,T) -> dqkv (B,T,3C) +=; plain loops
    const int64_t HS = C / NH, C3 = 3 * C;
    const double scale = 1.0 / std::sqrt(double(HS));
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            for (int64_t t = 0; t < T; t++) {
                const float* a = att + ((b * NH + h) * T + t) * T;
                const float* d = dout + (b * T + t) * C + h * HS;
                const float* q = qkv + (b * T + t) * C3 + h * HS;
                float* dq = dqkv + (b * T + t) * C3 + h * HS;
                // dP[s] = d . v_s (computed twice: no scratch in the reference)
                auto dp = [&](int64_t s) {
                    const float* v = qkv + (b * T + s) * C3 + 2 * C + h * HS;
                    double x = 0.0;
                    for (int64_t i = 0; i < HS; i++) x += double(d[i]) * v[i];
                    return x;
                };
                double pdp = 0.0;
                for (int64_t s = 0; s <= t; s++) pdp += double(a[s]) * dp(s);
                for (int64_t s = 0; s <= t; s++) {
                    const double dsc = double(a[s]) * (dp(s) - pdp) * scale;
                    const float* k = qkv + (b * T + s) * C3 + C + h * HS;
                    float* dk = dqkv + (b * T + s) * C3 + C + h * HS;
                    float* dv = dk + C;
                    for (int64_t i = 0; i < HS; i++) {
                        dq[i] += float(dsc * k[i]);
                        dk[i] += float(dsc * q[i]);
                        dv[i] += float(double(a[s]) * d[i]);
                    }
                }
            }
        }
    }
}

// ---- cross-entropy over a softmax of the logits

void crossentropy_forward(float* losses, const float* logits, const int64_t* targets, int64_t R,
                          int64_t V) {
    // logits (R,V), targets (R) -> losses (R) = logsumexp(row) - row[target]; target -100 -> 0
#pragma omp parallel for num_threads(threads_for(R * V)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const int64_t tgt = targets[r];
        if (tgt < 0 || tgt >= V) {
            losses[r] = 0.0f;  // ignore_index (the caller rejects other values)
            continue;
        }
        const float* x = logits + r * V;
        const float mx = row_max(x, V);
        const vf mv = vset1(mx);
        double s = 0.0;
        int64_t j = 0;
        while (j + 8 <= V) {
            const int64_t end = V - j >= 256 ? j + 256 : V;
            vf acc = vzero();
            for (; j + 8 <= end; j += 8) acc = vadd(acc, vexp(vsub(vload(x + j), mv)));
            s += double(vhsum(acc));
        }
        for (; j < V; j++) s += double(std::exp(x[j] - mx));
        losses[r] = float(std::log(s) + double(mx) - double(x[tgt]));
    }
}

void crossentropy_backward(float* dlogits, const float* logits, const int64_t* targets,
                           float dloss, int64_t R, int64_t V) {
    // logits, targets (R) -> dlogits (R,V) = (softmax(row) - onehot(target)) * dloss,
    // written (not added); rows with target -100 get 0. dlogits may be logits.
#pragma omp parallel for num_threads(threads_for(R * V)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const int64_t tgt = targets[r];
        const float* x = logits + r * V;
        float* y = dlogits + r * V;
        if (tgt < 0 || tgt >= V) {
            std::memset(y, 0, sizeof(float) * V);
            continue;
        }
        const float mx = row_max(x, V);
        const vf mv = vset1(mx);
        int64_t j = 0;
        for (; j + 8 <= V; j += 8) vstore(y + j, vexp(vsub(vload(x + j), mv)));
        for (; j < V; j++) y[j] = std::exp(x[j] - mx);
        const float sc = float(double(dloss) / row_sum(y, V));
        const vf sv = vset1(sc);
        for (j = 0; j + 8 <= V; j += 8) vstore(y + j, vmul(vload(y + j), sv));
        for (; j < V; j++) y[j] *= sc;
        y[tgt] -= dloss;
    }
}

// ---- optimizer

void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step) {
    // param, m, v, grad (n) -> param, m, v updated in place, as torch.optim.AdamW
    // (scalars computed in double and rounded to float32 where torch does)
    const float decay = float(1.0 - lr * weight_decay);
    const float w1 = float(1.0 - beta1), b2 = float(beta2), w2 = float(1.0 - beta2);
    const float step_size = float(lr / (1.0 - std::pow(beta1, double(step))));
    const float bc2_sqrt = float(std::sqrt(1.0 - std::pow(beta2, double(step))));
    const float epsf = float(eps);
    const vf decay_v = vset1(decay), w1v = vset1(w1), b2v = vset1(b2), w2v = vset1(w2);
    const vf ssv = vset1(step_size), bcv = vset1(bc2_sqrt), epsv = vset1(epsf);
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t i = b * 8;
        const vf g = vload(grad + i);
        const vf p = vmul(vload(param + i), decay_v);
        vf mi = vload(m + i);
        mi = vadd(mi, vmul(w1v, vsub(g, mi)));
        const vf vi = vadd(vmul(vload(v + i), b2v), vmul(vmul(w2v, g), g));
        const vf denom = vadd(vdiv(vsqrt(vi), bcv), epsv);
        vstore(param + i, vsub(p, vdiv(vmul(ssv, mi), denom)));
        vstore(m + i, mi);
        vstore(v + i, vi);
    }
    for (int64_t i = blocks * 8; i < n; i++) {
        const float g = grad[i];
        const float p = param[i] * decay;
        const float mi = m[i] + w1 * (g - m[i]);
        const float vi = v[i] * b2 + (w2 * g) * g;
        const float denom = std::sqrt(vi) / bc2_sqrt + epsf;
        param[i] = p - (step_size * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

double sumsq_forward(const float* x, int64_t n) {
    // x (n) -> sum of x^2, blocks of 4096 in float lanes folded into double
    double total = 0.0;
#pragma omp parallel num_threads(threads_for(n)) reduction(+ : total)
    {
        int64_t i0, i1;
        slice8(n, thread_index(), thread_count(), &i0, &i1);
        int64_t i = i0;
        while (i + 16 <= i1) {
            const int64_t end = i1 - i >= 4096 ? i + 4096 : i1;
            vf a0 = vzero(), a1 = vzero();
            for (; i + 16 <= end; i += 16) {
                const vf x0 = vload(x + i), x1 = vload(x + i + 8);
                a0 = vfma(x0, x0, a0);
                a1 = vfma(x1, x1, a1);
            }
            total += double(vhsum(vadd(a0, a1)));
        }
        for (; i < i1; i++) total += double(x[i]) * double(x[i]);
    }
    return total;
}

void scale_forward(float* x, float s, int64_t n) {
    // x (n) -> x * s in place
    const int64_t blocks = n / 8;
    const vf sv = vset1(s);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) vstore(x + b * 8, vmul(vload(x + b * 8), sv));
    for (int64_t i = blocks * 8; i < n; i++) x[i] *= s;
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
