// The one-token decode step's row operations on the calling thread, for a
// step that runs inside the runtime's own threads. Not the parallel kernels
// (nn.cpp): each function here gives, row for row, the bits of its twin there.
#include "../simd/simd.h"
#include "common.h"
#include "rows.h"

namespace pyllm {
namespace PYLLM_ISA {

#include "kernels.inc"

void rmsnorm_rows(float* out, const float* inp, const float* weight, int64_t rows, int64_t C, float eps) {
    // inp (rows, C), weight (C) -> out (rows, C), as rmsnorm_forward
    for (int64_t r = 0; r < rows; r++) rmsnorm_row(out + r * C, inp + r * C, weight, C, eps);
}

void rope_rows(float* out, const float* inp, const float* cos_t, const float* sin_t, int64_t H, int64_t HS,
               int64_t rot, bool interleaved) {
    // inp (H, HS), cos/sin (rot/2) of one step -> out (H, HS), as rope_forward
    for (int64_t h = 0; h < H; h++) rope_row(out + h * HS, inp + h * HS, cos_t, sin_t, HS, rot, interleaved);
}

void layernorm_rows(float* out, const float* inp, const float* weight, const float* bias, int64_t rows, int64_t C,
                    float eps) {
    // inp (rows, C) -> out (rows, C), as layernorm_forward
    for (int64_t r = 0; r < rows; r++)
        layernorm_row(out + r * C, inp + r * C, weight, bias, C, eps, nullptr, nullptr);
}

void gelu_rows(float* out, const float* inp, int64_t n) {
    // inp (n) -> out (n), as gelu_forward (tanh) over a span starting at a multiple of 8
    gelu_tanh_span(out, inp, n);
}

void geglu_rows(float* out, const float* gate, const float* up, int64_t n) {
    // as geglu_forward over a span starting at a multiple of 8
    geglu_span(out, gate, up, n);
}

void swiglu_rows(float* out, const float* gate, const float* up, int64_t n) {
    // gate, up (n) -> out (n), as swiglu_forward over a span starting at a multiple of 8
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vstore(out + i, swiglu8(gate + i, up + i));
    for (; i < n; i++) out[i] = swiglu1(gate[i], up[i]);
}

}  // namespace PYLLM_ISA
}  // namespace pyllm
