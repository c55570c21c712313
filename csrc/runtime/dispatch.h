// Run-time choice of kernel ISA: CPU feature detection and the table of
// kernel entry points for the chosen ISA. Not the kernels themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../kernels/common.h"

// The kernel list, once, as an X-macro: every ISA build provides each name.
#define PYLLM_KERNEL_LIST(X) \
    X(sgemm)                 \
    X(sgemm_bias)            \
    X(sgemm_strided)         \
    X(matmul_ref)            \
    X(softmax_forward)       \
    X(log_softmax_forward)   \
    X(rmsnorm_forward)       \
    X(layernorm_forward)     \
    X(gelu_forward)          \
    X(silu_forward)          \
    X(rope_cache)            \
    X(rope_forward)          \
    X(swiglu_forward)        \
    X(geglu_forward)         \
    X(residual_forward)      \
    X(embedding_forward)     \
    X(sum_forward)           \
    X(attention_forward)     \
    X(attention_forward_units) \
    X(dequantize_row)        \
    X(dequantize_row_ref)    \
    X(quantize_row)          \
    X(qmatmul)               \
    X(qmatmul_ref)           \
    X(qpack_weights)         \
    X(qpack_matvec)          \
    X(qpack_matmul)          \
    X(rmsnorm_rows)          \
    X(rope_rows)             \
    X(swiglu_rows)           \
    X(layernorm_rows)        \
    X(gelu_rows)             \
    X(geglu_rows)            \
    X(bias_add)              \
    X(bias_backward)         \
    X(encoder_forward)       \
    X(encoder_backward)      \
    X(layernorm_backward)    \
    X(layernorm_backward_ref) \
    X(gelu_backward)         \
    X(crossentropy_forward)  \
    X(crossentropy_backward) \
    X(adamw_step)            \
    X(sumsq_forward)         \
    X(scale_forward)         \
    X(attention_qkv_forward) \
    X(attention_qkv_forward_ref) \
    X(attention_qkv_backward) \
    X(attention_qkv_backward_ref) \
    X(bert_embed_forward)    \
    X(bert_embed_backward)   \
    X(gelu_erf_forward)      \
    X(gelu_erf_backward)     \
    X(tanh_forward)          \
    X(tanh_backward)         \
    X(dropout_forward)       \
    X(attention_masked_forward) \
    X(attention_packed_forward) \
    X(attention_masked_backward)

namespace pyllm {

namespace scalar {
#include "../kernels/kernels.inc"
}

struct KernelTable {
    const char* isa;
#define PYLLM_KERNEL_MEMBER(name) decltype(&scalar::name) name;
    PYLLM_KERNEL_LIST(PYLLM_KERNEL_MEMBER)
#undef PYLLM_KERNEL_MEMBER
};

// The table in use. Chosen at first use from PYLLM_ISA (auto, scalar, avx2,
// avx512, neon) and the CPU; changed by set_isa.
const KernelTable& kernels();

// Makes `isa` current; throws std::invalid_argument when it is unknown or
// the CPU (or this build) cannot run it.
void set_isa(const std::string& isa);

// The ISAs this build contains and this CPU can run, best last.
std::vector<std::string> available_isas();

// CPU features this process detected (e.g. "avx2", "fma", "f16c", "avx512f").
std::vector<std::string> cpu_features();

// The process-wide thread count (set_num_threads, OMP_NUM_THREADS, or the
// physical cores); num_threads() (common.h) is what a kernel called from
// this thread uses: max_threads(), unless a ScopedThreads says fewer.
// n must be in [1, kMaxThreads] (std::invalid_argument otherwise).
constexpr int64_t kMaxThreads = 1024;
void set_num_threads(int64_t n);
int max_threads();
// Whether the runtime may run a call on one thread when that has lately been
// faster (ThreadChooser); on by default, PYLLM_ADAPTIVE_THREADS=0 turns it off.
bool adaptive_threads();
void set_adaptive_threads(bool on);

// For its lifetime, kernels called from the constructing thread use n
// threads (the runtime's per-call choice, ThreadChooser).
class ScopedThreads {
public:
    explicit ScopedThreads(int n);
    ~ScopedThreads();
    ScopedThreads(const ScopedThreads&) = delete;
    ScopedThreads& operator=(const ScopedThreads&) = delete;

private:
    int saved_;
};

}  // namespace pyllm
