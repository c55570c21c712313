// Row-wise and element-wise neural-network ops: softmax, log-softmax, norms,
// activations, rotary embedding, embedding lookup, sum. Not matmul, not
// attention (their own files), not backward passes (train.cpp).
#include <cmath>
#include <cstring>

#include "../simd/simd.h"
#include "common.h"
#include "rows.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

void softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols) {
    // inp (rows, cols) -> out (rows, cols), each row sums to 1
#pragma omp parallel for num_threads(threads_for(rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float* x = inp + r * cols;
        float* y = out + r * cols;
        const float mx = row_max(x, cols);
        const vf mv = vset1(mx);
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) vstore(y + j, vexp(vsub(vload(x + j), mv)));
        for (; j < cols; j++) y[j] = std::exp(x[j] - mx);
        const float inv = float(1.0 / row_sum(y, cols));
        const vf iv = vset1(inv);
        for (j = 0; j + 8 <= cols; j += 8) vstore(y + j, vmul(vload(y + j), iv));
        for (; j < cols; j++) y[j] *= inv;
    }
}

void log_softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols) {
    // inp (rows, cols) -> out (rows, cols) = x - max - log(sum(exp(x - max)))
#pragma omp parallel for num_threads(threads_for(rows * cols)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float* x = inp + r * cols;
        float* y = out + r * cols;
        const float mx = row_max(x, cols);
        const vf mv = vset1(mx);
        // exp(x - max) goes to y as scratch, then y is overwritten
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) vstore(y + j, vexp(vsub(vload(x + j), mv)));
        for (; j < cols; j++) y[j] = std::exp(x[j] - mx);
        const float shift = mx + float(std::log(row_sum(y, cols)));
        const vf sv = vset1(shift);
        for (j = 0; j + 8 <= cols; j += 8) vstore(y + j, vsub(vload(x + j), sv));
        for (; j < cols; j++) y[j] = x[j] - shift;
    }
}

void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t rows, int64_t C,
                     float eps) {
    // inp (rows, C), weight (C) -> out (rows, C) = x / sqrt(mean(x^2) + eps) * weight
#pragma omp parallel for num_threads(threads_for(rows * C)) schedule(static)
    for (int64_t r = 0; r < rows; r++) rmsnorm_row(out + r * C, inp + r * C, weight, C, eps);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t rows, int64_t C, float eps) {
    // inp (rows, C), weight/bias (C) or null -> out (rows, C); mean, rstd (rows) or null
#pragma omp parallel for num_threads(threads_for(rows * C)) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        layernorm_row(out + r * C, inp + r * C, weight, bias, C, eps, mean ? mean + r : nullptr,
                      rstd ? rstd + r : nullptr);
}

void gelu_forward(float* out, const float* inp, int64_t n, bool tanh_approx) {
    // inp (n) -> out (n)
    const int nt = threads_for(n);
    if (!tanh_approx) {
        // 0.5 x (1 + erf(x / sqrt 2)); erf has no vector form here
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < n; i++)
            out[i] = 0.5f * inp[i] * (1.0f + std::erf(inp[i] * float(M_SQRT1_2)));
        return;
    }
    // the tanh approximation, in blocks of 8 (rows.h's gelu_tanh8), the tail element by element
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < blocks; b++) vstore(out + b * 8, gelu_tanh8(vload(inp + b * 8)));
    for (int64_t i = blocks * 8; i < n; i++) out[i] = gelu_tanh1(inp[i]);
}

void geglu_forward(float* out, const float* gate, const float* up, int64_t n) {
    // gate, up (n) -> out (n) = gelu_tanh(gate) * up
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++)
        vstore(out + b * 8, vmul(gelu_tanh8(vload(gate + b * 8)), vload(up + b * 8)));
    for (int64_t i = blocks * 8; i < n; i++) out[i] = gelu_tanh1(gate[i]) * up[i];
}

void silu_forward(float* out, const float* inp, int64_t n) {
    // inp (n) -> out (n) = x / (1 + exp(-x))
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const vf x = vload(inp + b * 8);
        const vf e = vexp(vsub(vzero(), x));
        vstore(out + b * 8, vdiv(x, vadd(vset1(1.0f), e)));
    }
    for (int64_t i = blocks * 8; i < n; i++) out[i] = inp[i] / (1.0f + std::exp(-inp[i]));
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
    // gate, up (n) -> out (n) = gate / (1 + exp(-gate)) * up
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) vstore(out + b * 8, swiglu8(gate + b * 8, up + b * 8));
    for (int64_t i = blocks * 8; i < n; i++) out[i] = swiglu1(gate[i], up[i]);
}

void residual_forward(float* out, const float* a, const float* b, int64_t n) {
    // a, b (n) -> out (n) = a + b
    const int64_t blocks = n / 8;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t k = 0; k < blocks; k++) vstore(out + k * 8, vadd(vload(a + k * 8), vload(b + k * 8)));
    for (int64_t i = blocks * 8; i < n; i++) out[i] = a[i] + b[i];
}

void rope_cache(float* cos_out, float* sin_out, const int64_t* pos, int64_t T, int64_t HS,
                float theta) {
    // pos (T) -> cos, sin (T, HS/2); angle = pos * theta^(-2i/HS), rounded as in fp32 torch
    const int64_t half = HS / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < half; i++) {
            const float expo = float(2 * i) / float(HS);
            const float inv_freq = 1.0f / std::pow(theta, expo);
            const float angle = float(pos[t]) * inv_freq;
            cos_out[t * half + i] = float(std::cos(double(angle)));
            sin_out[t * half + i] = float(std::sin(double(angle)));
        }
    }
}

void rope_forward(float* out, const float* inp, const float* cos_t, const float* sin_t, int64_t N,
                  int64_t T, int64_t H, int64_t HS, int64_t rot, bool interleaved) {
    // inp (N,T,H,HS), cos/sin (T,rot/2) -> out (N,T,H,HS), the first rot dimensions of each head rotated
    const int64_t half = rot / 2;
#pragma omp parallel for num_threads(threads_for(N * T * H * HS)) schedule(static)
    for (int64_t row = 0; row < N * T * H; row++) {
        const int64_t t = (row / H) % T;
        rope_row(out + row * HS, inp + row * HS, cos_t + t * half, sin_t + t * half, HS, rot, interleaved);
    }
}

void embedding_forward(float* out, const int64_t* ids, const float* table, int64_t n, int64_t C) {
    // ids (n), table (V, C) -> out (n, C); ids are checked by the caller
#pragma omp parallel for num_threads(threads_for(n * C)) schedule(static)
    for (int64_t i = 0; i < n; i++) std::memcpy(out + i * C, table + ids[i] * C, sizeof(float) * C);
}

double sum_forward(const float* inp, int64_t n) {
    // inp (n) -> sum; four independent lanes of 8 per thread, folded to double
    double total = 0.0;
    const int nt = threads_for(n);
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
        const int t = thread_index(), nr = thread_count();
        const int64_t chunk = ((n + nr - 1) / nr + 31) / 32 * 32;
        const int64_t i0 = int64_t(t) * chunk;
        const int64_t i1 = i0 + chunk < n ? i0 + chunk : n;
        int64_t i = i0;
        while (i + 32 <= i1) {
            const int64_t end = i1 - i >= 4096 ? i + 4096 : i1;
            vf a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
            for (; i + 32 <= end; i += 32) {
                a0 = vadd(a0, vload(inp + i));
                a1 = vadd(a1, vload(inp + i + 8));
                a2 = vadd(a2, vload(inp + i + 16));
                a3 = vadd(a3, vload(inp + i + 24));
            }
            total += double(vhsum(vadd(vadd(a0, a1), vadd(a2, a3))));
        }
        for (; i < i1; i++) total += double(inp[i]);
    }
    return total;
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
