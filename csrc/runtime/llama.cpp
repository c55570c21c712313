// The llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU,
// tied or separate output head) over GGUF weights, chunked prefill + decode.
// Not sampling, tokenization or anything Python: one call per step.
#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "dispatch.h"

namespace pyllm {

namespace {

const char* kSupported = "F32, F16, BF16, Q8_0, Q4_0, Q4_1";

std::string shape_of(const GGUFTensor& t) {
    std::string s = "(";
    for (size_t k = t.ne.size(); k-- > 0;) s += std::to_string(t.ne[k]) + (k ? ", " : "");
    return s + ")";
}

const GGUFTensor& require(const GGUFFile& f, const std::string& name) {
    const GGUFTensor* t = f.tensor(name);
    if (!t) throw std::invalid_argument("the GGUF file has no tensor '" + name + "' (llama architecture)");
    return *t;
}

// A (rows, cols) weight in a supported type.
Weight load_weight(const GGUFFile& f, const std::string& name, int64_t rows, int64_t cols) {
    const GGUFTensor& t = require(f, name);
    if (t.ne.size() < 2 || t.ne[0] != cols || t.ne[1] != rows ||
        (t.ne.size() > 2 && t.numel() != rows * cols))
        throw std::invalid_argument("tensor '" + name + "' has shape " + shape_of(t) + ", expected (" +
                                    std::to_string(rows) + ", " + std::to_string(cols) + ")");
    if (quant_block_elems(int(t.type)) == 0)
        throw std::invalid_argument("unsupported GGUF tensor type " +
                                    std::string(ggml_type_info(t.type)->name) + " in " + name +
                                    "; supported: " + kSupported);
    Weight w;
    w.data = f.data(t);
    w.type = t.type;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = quant_row_bytes(int(t.type), cols);
    return w;
}

// A (n,) F32 vector (norm weights).
const float* load_vector(const GGUFFile& f, const std::string& name, int64_t n) {
    const GGUFTensor& t = require(f, name);
    if (t.numel() != n)
        throw std::invalid_argument("tensor '" + name + "' has shape " + shape_of(t) + ", expected (" +
                                    std::to_string(n) + ",)");
    if (t.type != uint32_t(kTypeF32))
        throw std::invalid_argument("unsupported GGUF tensor type " +
                                    std::string(ggml_type_info(t.type)->name) + " in " + name +
                                    "; norm weights must be F32");
    return reinterpret_cast<const float*>(f.data(t));
}

}  // namespace

LlamaModel::LlamaModel(std::shared_ptr<GGUFFile> file, const LlamaConfig& cfg)
    : file_(std::move(file)), cfg_(cfg) {
    const GGUFFile& f = *file_;
    const int64_t C = cfg.hidden_size, HS = cfg.head_dim;
    if (C <= 0 || cfg.n_layer <= 0 || cfg.n_head <= 0 || cfg.n_kv_head <= 0 || HS <= 0 ||
        cfg.ffn_size <= 0 || cfg.vocab_size <= 0 || cfg.n_ctx <= 0)
        throw std::invalid_argument("llama config: every size must be positive");
    if (cfg.n_head % cfg.n_kv_head != 0)
        throw std::invalid_argument("llama config: attention heads (" + std::to_string(cfg.n_head) +
                                    ") must be a multiple of key/value heads (" +
                                    std::to_string(cfg.n_kv_head) + ")");
    if (HS % 2 != 0) throw std::invalid_argument("llama config: head size must be even for RoPE");
    const int64_t QD = cfg.n_head * HS, KVD = cfg.n_kv_head * HS;

    tok_embd_ = load_weight(f, "token_embd.weight", cfg.vocab_size, C);
    output_norm_ = load_vector(f, "output_norm.weight", C);
    output_ = f.tensor("output.weight") ? load_weight(f, "output.weight", cfg.vocab_size, C) : tok_embd_;
    for (int64_t l = 0; l < cfg.n_layer; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        Layer L;
        L.attn_norm = load_vector(f, p + "attn_norm.weight", C);
        L.ffn_norm = load_vector(f, p + "ffn_norm.weight", C);
        L.wq = load_weight(f, p + "attn_q.weight", QD, C);
        L.wk = load_weight(f, p + "attn_k.weight", KVD, C);
        L.wv = load_weight(f, p + "attn_v.weight", KVD, C);
        L.wo = load_weight(f, p + "attn_output.weight", C, QD);
        L.w_gate = load_weight(f, p + "ffn_gate.weight", cfg.ffn_size, C);
        L.w_up = load_weight(f, p + "ffn_up.weight", cfg.ffn_size, C);
        L.w_down = load_weight(f, p + "ffn_down.weight", C, cfg.ffn_size);
        layers_.push_back(L);
    }

    // rotary tables for every cache position (n_ctx, HS/2)
    const int64_t half = HS / 2;
    rope_cos_.resize(size_t(cfg.n_ctx * half));
    rope_sin_.resize(size_t(cfg.n_ctx * half));
    std::vector<int64_t> pos(size_t(cfg.n_ctx));
    for (int64_t i = 0; i < cfg.n_ctx; i++) pos[size_t(i)] = i;
    kernels().rope_cache(rope_cos_.data(), rope_sin_.data(), pos.data(), cfg.n_ctx, HS, cfg.rope_theta);

    const size_t cache = size_t(cfg.n_layer * cfg.n_ctx * KVD);
    k_cache_.reset(static_cast<float*>(std::calloc(cache, sizeof(float))));
    v_cache_.reset(static_cast<float*>(std::calloc(cache, sizeof(float))));
    if (!k_cache_ || !v_cache_) throw std::bad_alloc();

    const int64_t T = kLlamaChunk;
    x_.resize(size_t(T * C));
    h_.resize(size_t(T * std::max(C, QD)));
    q_.resize(size_t(T * QD));
    k_.resize(size_t(T * KVD));
    v_.resize(size_t(T * KVD));
    att_.resize(size_t(T * QD));
    gate_.resize(size_t(T * cfg.ffn_size));
    up_.resize(size_t(T * cfg.ffn_size));
    const int nt = num_threads() > 64 ? num_threads() : 64;
    int64_t work = attention_work_floats(HS, nt);
    for (int64_t K : {C, QD, cfg.ffn_size})
        for (uint32_t type : {tok_embd_.type, output_.type, layers_[0].wq.type, layers_[0].w_down.type})
            work = std::max(work, qmatmul_work_floats(T, K, int(type), nt));
    work_.resize(size_t(work) + 16);
}

void LlamaModel::linear(float* out, const float* x, int64_t M, const Weight& w) {
    // x (M, cols) @ w^T -> out (M, rows)
    float* work = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work_.data()) + 63) & ~uintptr_t(63));
    kernels().qmatmul(out, x, w.data, M, w.rows, w.cols, int(w.type), work);
}

void LlamaModel::truncate(int64_t n) {
    if (n < 0 || n > n_past_)
        throw std::invalid_argument("cannot keep " + std::to_string(n) + " cached positions of " +
                                    std::to_string(n_past_));
    n_past_ = n;
}

void LlamaModel::forward(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
    if (T <= 0) throw std::invalid_argument("forward needs at least one token");
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= cfg_.vocab_size)
            throw std::invalid_argument("token id " + std::to_string(tokens[t]) + " at position " +
                                        std::to_string(t) + " is out of range [0, " +
                                        std::to_string(cfg_.vocab_size) + ")");
    if (n_past_ + T > cfg_.n_ctx)
        throw std::invalid_argument(std::to_string(n_past_) + " cached + " + std::to_string(T) +
                                    " new tokens exceed the context length n_ctx=" +
                                    std::to_string(cfg_.n_ctx));
    for (int64_t t0 = 0; t0 < T; t0 += kLlamaChunk) {
        const int64_t n = std::min(kLlamaChunk, T - t0);
        const bool last = t0 + n == T;
        if (all_logits)
            forward_chunk(tokens + t0, n, logits + t0 * cfg_.vocab_size, true);
        else
            forward_chunk(tokens + t0, n, last ? logits : nullptr, false);
    }
}

void LlamaModel::forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
    // tokens (T) at positions pos0.. -> logits (T,V) or (V) for the last, or none
    const KernelTable& k = kernels();
    const int64_t C = cfg_.hidden_size, HS = cfg_.head_dim, NH = cfg_.n_head, NKV = cfg_.n_kv_head;
    const int64_t QD = NH * HS, KVD = NKV * HS, FF = cfg_.ffn_size, half = HS / 2;
    const int64_t pos0 = n_past_, S = pos0 + T;
    float* x = x_.data();  // residual stream (T, C)
    float* h = h_.data();  // normed input / projection output (T, C)

    for (int64_t t = 0; t < T; t++)
        k.dequantize_row(x + t * C, static_cast<const uint8_t*>(tok_embd_.data) + tokens[t] * tok_embd_.row_bytes,
                         C, int(tok_embd_.type));

    const int64_t q_strides[3] = {T * QD, HS, QD};
    const int64_t kv_strides[3] = {0, HS, KVD};
    const float scale = 1.0f / std::sqrt(float(HS));
    float* attn_work = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(work_.data()) + 63) & ~uintptr_t(63));
    for (int64_t l = 0; l < cfg_.n_layer; l++) {
        const Layer& L = layers_[size_t(l)];
        float* kc = k_cache_.get() + l * cfg_.n_ctx * KVD;  // key cache (n_ctx, NKV*HS)
        float* vc = v_cache_.get() + l * cfg_.n_ctx * KVD;  // value cache (n_ctx, NKV*HS)

        // attention block
        k.rmsnorm_forward(h, x, L.attn_norm, T, C, cfg_.rms_eps);
        linear(q_.data(), h, T, L.wq);                  // (T, NH*HS)
        linear(kc + pos0 * KVD, h, T, L.wk);            // (T, NKV*HS) straight into the cache
        linear(vc + pos0 * KVD, h, T, L.wv);
        // GGUF llama stores Q/K rows permuted for the interleaved-pair rotation
        k.rope_forward(q_.data(), q_.data(), rope_cos_.data() + pos0 * half, rope_sin_.data() + pos0 * half,
                       1, T, NH, HS, true);
        k.rope_forward(kc + pos0 * KVD, kc + pos0 * KVD, rope_cos_.data() + pos0 * half,
                       rope_sin_.data() + pos0 * half, 1, T, NKV, HS, true);
        k.attention_forward(att_.data(), q_.data(), kc, vc, nullptr, q_strides, q_strides, kv_strides,
                            kv_strides, nullptr, 1, NH, NKV, T, S, HS, scale, true, pos0, attn_work);
        linear(h, att_.data(), T, L.wo);                // (T, C)
        k.residual_forward(x, x, h, T * C);

        // MLP block
        k.rmsnorm_forward(h, x, L.ffn_norm, T, C, cfg_.rms_eps);
        linear(gate_.data(), h, T, L.w_gate);           // (T, FF)
        linear(up_.data(), h, T, L.w_up);
        k.swiglu_forward(gate_.data(), gate_.data(), up_.data(), T * FF);
        linear(h, gate_.data(), T, L.w_down);           // (T, C)
        k.residual_forward(x, x, h, T * C);
    }
    n_past_ = S;

    if (!logits) return;
    if (all_logits) {
        k.rmsnorm_forward(h, x, output_norm_, T, C, cfg_.rms_eps);
        linear(logits, h, T, output_);
    } else {
        k.rmsnorm_forward(h, x + (T - 1) * C, output_norm_, 1, C, cfg_.rms_eps);
        linear(logits, h, 1, output_);
    }
}

}  // namespace pyllm
