// The BERT encoder graph over the kernel table: forward keeping activations, backward
// adding into a flat gradient buffer. Not the checks of user input (the bindings) nor
// the losses (Python, on the small logits).
#include "encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "dispatch.h"
#include "workspace.h"

namespace pyllm {

namespace {

uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void zero(std::vector<float>& v) { std::memset(v.data(), 0, sizeof(float) * v.size()); }

}  // namespace

EncoderModel::EncoderModel(const EncoderConfig& cfg) : cfg_(cfg) {
    const int64_t C = cfg.hidden, F = cfg.intermediate;
    if (cfg.vocab_size <= 0 || cfg.max_positions <= 0 || cfg.type_vocab <= 0 || C <= 0 || cfg.layers < 0 ||
        cfg.heads <= 0 || F <= 0 || cfg.num_labels < 0)
        throw std::invalid_argument("encoder: every size must be positive");
    if (C % cfg.heads) throw std::invalid_argument("encoder: hidden size is not a multiple of the head count");
    if (cfg.num_labels > 0 && !cfg.pooler) throw std::invalid_argument("encoder: a classifier needs the pooler");
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
        int64_t n = 1;
        for (int64_t s : shape) n *= s;
        layout_.push_back({name, shape, n_params_});
        n_params_ += n;
        return layout_.back().offset;
    };
    wte_ = add("embeddings.word_embeddings.weight", {cfg.vocab_size, C});
    wpe_ = add("embeddings.position_embeddings.weight", {cfg.max_positions, C});
    wtt_ = add("embeddings.token_type_embeddings.weight", {cfg.type_vocab, C});
    lne_w_ = add("embeddings.LayerNorm.weight", {C});
    lne_b_ = add("embeddings.LayerNorm.bias", {C});
    for (int64_t l = 0; l < cfg.layers; l++) {
        const std::string p = "encoder.layer." + std::to_string(l) + ".";
        LayerParams lp{};
        lp.qkv_w = add(p + "attention.self.query.weight", {C, C});
        add(p + "attention.self.key.weight", {C, C});
        add(p + "attention.self.value.weight", {C, C});
        lp.qkv_b = add(p + "attention.self.query.bias", {C});
        add(p + "attention.self.key.bias", {C});
        add(p + "attention.self.value.bias", {C});
        lp.ao_w = add(p + "attention.output.dense.weight", {C, C});
        lp.ao_b = add(p + "attention.output.dense.bias", {C});
        lp.ln1_w = add(p + "attention.output.LayerNorm.weight", {C});
        lp.ln1_b = add(p + "attention.output.LayerNorm.bias", {C});
        lp.in_w = add(p + "intermediate.dense.weight", {F, C});
        lp.in_b = add(p + "intermediate.dense.bias", {F});
        lp.out_w = add(p + "output.dense.weight", {C, F});
        lp.out_b = add(p + "output.dense.bias", {C});
        lp.ln2_w = add(p + "output.LayerNorm.weight", {C});
        lp.ln2_b = add(p + "output.LayerNorm.bias", {C});
        lp_.push_back(lp);
    }
    if (cfg.pooler) {
        pool_w_ = add("pooler.dense.weight", {C, C});
        pool_b_ = add("pooler.dense.bias", {C});
    }
    if (cfg.num_labels > 0) {
        cls_w_ = add("classifier.weight", {cfg.num_labels, C});
        cls_b_ = add("classifier.bias", {cfg.num_labels});
    }
}

void EncoderModel::resize(int64_t B, int64_t T) {
    if (B == B_ && T == T_) return;
    const int64_t L = cfg_.layers, C = cfg_.hidden, F = cfg_.intermediate, NH = cfg_.heads, R = B * T;
    const int64_t NL = cfg_.num_labels;
    B_ = B;
    T_ = T;
    for (auto* v : {&ids_, &types_, &src_, &row_of_}) v->assign(R, 0);
    for (auto* v : {&seq_, &att_off_}) v->assign(B + 1, 0);
    keys_.assign(B, 0);
    kmask_.assign(R, 0.0f);
    pmask_.assign(R, 0.0f);
    pad_qkv_.clear();
    pad_dqkv_.clear();
    pad_drop_.clear();
    emb_.assign(R * C, 0.0f);
    emb_mean_.assign(R, 0.0f);
    emb_rstd_.assign(R, 0.0f);
    h_.assign((L + 1) * R * C, 0.0f);
    qkv_.assign(L * R * 3 * C, 0.0f);
    att_.assign(L * B * NH * T * T, 0.0f);
    for (auto* v : {&ctx_, &r1_, &a1_, &r2_}) v->assign(L * R * C, 0.0f);
    for (auto* v : {&fc_, &fcg_}) v->assign(L * R * F, 0.0f);
    for (auto* v : {&m1_, &s1_, &m2_, &s2_}) v->assign(L * R, 0.0f);
    for (auto* v : {&cls_, &pooled_, &pooled_drop_, &d_b1_, &d_b2_}) v->assign(B * C, 0.0f);
    logits_.assign(B * (NL > 0 ? NL : 1), 0.0f);
    for (auto* v : {&tmp_, &d_h_, &d_r_, &d_a1_, &d_ctx_}) v->assign(R * C, 0.0f);
    d_qkv_.assign(R * 3 * C, 0.0f);
    for (auto* v : {&d_fc_, &d_fcg_}) v->assign(R * F, 0.0f);
}

void EncoderModel::pack(const int64_t* mask, bool pad_rows) {
    const int64_t B = B_, T = T_, NH = cfg_.heads;
    int64_t r = 0;
    for (int64_t b = 0; b < B; b++) {
        seq_[b] = r;
        const int64_t* m = mask + b * T;
        auto take = [&](int64_t t, bool key) {
            src_[r] = b * T + t;
            kmask_[r] = key ? 0.0f : -INFINITY;
            row_of_[b * T + t] = r++;
        };
        for (int64_t t = 0; t < T; t++) {
            row_of_[b * T + t] = -1;
            pmask_[b * T + t] = m[t] ? 0.0f : -INFINITY;
        }
        for (int64_t t = 0; t < T; t++)
            if (m[t]) take(t, true);
        keys_[b] = r - seq_[b];
        // padded positions as queries: all of them, or the pooler's first token
        for (int64_t t = 0; t < T; t++)
            if (!m[t] && (pad_rows || (t == 0 && cfg_.pooler))) take(t, false);
        const int64_t n = r - seq_[b];
        att_off_[b + 1] = att_off_[b] + NH * n * n;
    }
    seq_[B] = r;
    N_ = r;
    A_ = padded_attention() ? NH * B * T * T : att_off_[B];
}

// rows (N,W) -> their places in out (B*T,W); rows not computed are left as they are
void EncoderModel::scatter_rows(float* out, const float* rows, int64_t W) const {
    for (int64_t r = 0; r < N_; r++) std::memcpy(out + src_[r] * W, rows + r * W, sizeof(float) * W);
}

// padded (B*T,W) -> the computed rows (N,W)
void EncoderModel::gather_rows(float* rows, const float* padded, int64_t W) const {
    for (int64_t r = 0; r < N_; r++) std::memcpy(rows + r * W, padded + src_[r] * W, sizeof(float) * W);
}

// Dropout of the (N,C) rows x at a site, drawn on the padded (B*T,C) layout:
// a token's mask depends on (seed, site, its padded index) only, however the
// batch packs.
void EncoderModel::dropout_rows(float* x, float p, int64_t site) {
    if (p <= 0.0f) return;
    const int64_t C = cfg_.hidden, R = B_ * T_;
    if (pad_drop_.size() != size_t(R * C)) pad_drop_.assign(R * C, 0.0f);
    scatter_rows(pad_drop_.data(), x, C);
    kernels().dropout_forward(pad_drop_.data(), R * C, p, site_seed(site));
    gather_rows(x, pad_drop_.data(), C);
}

void EncoderModel::hidden_into(int64_t l, float* out) const {
    const int64_t C = cfg_.hidden, R = B_ * T_;
    const float* h = h_.data() + l * R * C;
    for (int64_t i = 0; i < R; i++) {
        if (row_of_[i] >= 0) std::memcpy(out + i * C, h + row_of_[i] * C, sizeof(float) * C);
        else std::memset(out + i * C, 0, sizeof(float) * C);
    }
}

void EncoderModel::mean_pool_into(float* out) const {
    const int64_t C = cfg_.hidden;
    const float* h = h_.data() + cfg_.layers * B_ * T_ * C;
    for (int64_t b = 0; b < B_; b++) {
        float* o = out + b * C;
        std::memset(o, 0, sizeof(float) * C);
        // the unmasked tokens are the sequence's first keys_[b] rows, in position order
        for (int64_t r = seq_[b]; r < seq_[b] + keys_[b]; r++)
            for (int64_t c = 0; c < C; c++) o[c] += h[r * C + c];
        const float n = float(keys_[b]);
        for (int64_t c = 0; c < C; c++) o[c] /= n;
    }
}

float* EncoderModel::work(int64_t floats) { return thread_workspace(floats); }

uint64_t EncoderModel::site_seed(int64_t site) const { return mix64(drop_.seed * 0x100000001b3ull + uint64_t(site)); }

void EncoderModel::forward(const float* P, const int64_t* ids, const int64_t* types, const int64_t* mask,
                           int64_t B, int64_t T, const EncoderDropout& dropout, bool pad_rows) {
    const KernelTable& k = kernels();
    const int64_t L = cfg_.layers, C = cfg_.hidden, F = cfg_.intermediate, NH = cfg_.heads, R = B * T;
    const int nt = max_threads();
    resize(B, T);
    drop_ = dropout;
    ids_.assign(ids, ids + R);
    types_.assign(types, types + R);
    pack(mask, pad_rows);
    const int64_t N = N_;
    const int64_t* src = src_.data();
    float* gw = work(std::max({sgemm_work_floats(nt), attention_masked_work_floats(T, nt),
                               attention_packed_work_floats(T, C / NH, nt)}));
    // embeddings: LayerNorm(word + type + position), dropout; the computed rows (N,C) from here on
    k.bert_embed_forward(tmp_.data(), ids, types, P + wte_, P + wpe_, P + wtt_, B, T, C);
    for (int64_t r = 0; r < N; r++) std::memcpy(emb_.data() + r * C, tmp_.data() + src[r] * C, sizeof(float) * C);
    k.layernorm_forward(h_.data(), emb_mean_.data(), emb_rstd_.data(), emb_.data(), P + lne_w_, P + lne_b_, N, C,
                        cfg_.eps);
    dropout_rows(h_.data(), drop_.hidden, 0);
    for (int64_t l = 0; l < L; l++) {
        const LayerParams& lp = lp_[l];
        const float* x = h_.data() + l * R * C;
        float* qkv = qkv_.data() + l * R * 3 * C;
        float* ctx = ctx_.data() + l * R * C;
        float* r1 = r1_.data() + l * R * C;
        float* a1 = a1_.data() + l * R * C;
        float* fc = fc_.data() + l * R * F;
        float* fcg = fcg_.data() + l * R * F;
        float* r2 = r2_.data() + l * R * C;
        // attention block: a1 = LayerNorm(x + dropout(attn(x) @ Wo^T + bo))
        k.sgemm_bias(qkv, x, P + lp.qkv_w, P + lp.qkv_b, N, 3 * C, C, false, true, false, gw);
        if (padded_attention()) {
            // on the padded layout, the masks of (B,NH,T,T); rows not computed hold stale finite
            // values there, masked as keys, and their outputs are dropped
            if (pad_qkv_.size() != size_t(R * 3 * C)) pad_qkv_.assign(R * 3 * C, 0.0f);
            scatter_rows(pad_qkv_.data(), qkv, 3 * C);
            k.attention_masked_forward(d_ctx_.data(), att_.data() + l * A_, pad_qkv_.data(), pmask_.data(), B, T, C,
                                       NH, drop_.attention, site_seed(1 + 4 * l), gw);
            gather_rows(ctx, d_ctx_.data(), C);
        } else {
            // each sequence's block of rows attends over its own keys
            k.attention_packed_forward(ctx, att_.data() + l * A_, qkv, kmask_.data(), seq_.data(),
                                       att_off_.data(), B, C, NH, gw);
        }
        k.sgemm_bias(tmp_.data(), ctx, P + lp.ao_w, P + lp.ao_b, N, C, C, false, true, false, gw);
        dropout_rows(tmp_.data(), drop_.hidden, 2 + 4 * l);
        k.residual_forward(r1, tmp_.data(), x, N * C);
        k.layernorm_forward(a1, m1_.data() + l * R, s1_.data() + l * R, r1, P + lp.ln1_w, P + lp.ln1_b, N, C,
                            cfg_.eps);
        // MLP block: h = LayerNorm(a1 + dropout(gelu(a1 @ Wi^T + bi) @ Wout^T + bout))
        k.sgemm_bias(fc, a1, P + lp.in_w, P + lp.in_b, N, F, C, false, true, false, gw);
        k.gelu_erf_forward(fcg, fc, N * F);
        k.sgemm_bias(tmp_.data(), fcg, P + lp.out_w, P + lp.out_b, N, C, F, false, true, false, gw);
        dropout_rows(tmp_.data(), drop_.hidden, 3 + 4 * l);
        k.residual_forward(r2, tmp_.data(), a1, N * C);
        k.layernorm_forward(h_.data() + (l + 1) * R * C, m2_.data() + l * R, s2_.data() + l * R, r2, P + lp.ln2_w,
                            P + lp.ln2_b, N, C, cfg_.eps);
    }
    if (!cfg_.pooler) return;
    // pooler: tanh(first token @ Wp^T + bp); classifier on its dropped copy
    const float* last = h_.data() + L * R * C;
    for (int64_t b = 0; b < B; b++)
        std::memcpy(cls_.data() + b * C, last + row_of_[b * T] * C, sizeof(float) * C);
    k.sgemm_bias(tmp_.data(), cls_.data(), P + pool_w_, P + pool_b_, B, C, C, false, true, false, gw);
    k.tanh_forward(pooled_.data(), tmp_.data(), B * C);
    if (cfg_.num_labels > 0) {
        std::memcpy(pooled_drop_.data(), pooled_.data(), sizeof(float) * B * C);
        k.dropout_forward(pooled_drop_.data(), B * C, drop_.classifier, site_seed(1 + 4 * L));
        k.sgemm_bias(logits_.data(), pooled_drop_.data(), P + cls_w_, P + cls_b_, B, cfg_.num_labels, C, false,
                     true, false, gw);
    }
}

void EncoderModel::backward(const float* P, float* G, const float* dlogits, const float* dpooled,
                            const float* dlast) {
    const KernelTable& k = kernels();
    const int64_t L = cfg_.layers, C = cfg_.hidden, F = cfg_.intermediate, NH = cfg_.heads;
    const int64_t B = B_, T = T_, R = B * T, N = N_, NL = cfg_.num_labels;
    if (N == 0) throw std::logic_error("encoder: backward before forward");
    if (dlogits && NL == 0) throw std::invalid_argument("encoder: dlogits given to a model without a classifier");
    if (dpooled && !cfg_.pooler) throw std::invalid_argument("encoder: dpooled given to a model without a pooler");
    const int nt = max_threads();
    const int64_t wmax = std::max({sgemm_work_floats(nt), attention_masked_work_floats(T, nt),
                                   bias_backward_work_floats(std::max(3 * C, F), nt),
                                   layernorm_backward_work_floats(C, nt)});
    float* gw = work(wmax);
    const int64_t* src = src_.data();
    const size_t rowbytes = sizeof(float) * C;
    // d_h_ (N,C): the gradient of the current layer's output
    if (dlast)
        for (int64_t r = 0; r < N; r++) std::memcpy(d_h_.data() + r * C, dlast + src[r] * C, rowbytes);
    else std::memset(d_h_.data(), 0, N * rowbytes);
    if (dlogits || dpooled) {
        // d_b1_ = gradient of pooled
        zero(d_b1_);
        if (dlogits) {
            k.sgemm(G + cls_w_, dlogits, pooled_drop_.data(), NL, C, B, true, false, true, gw);
            k.bias_backward(G + cls_b_, dlogits, B, NL, gw);
            k.sgemm(d_b1_.data(), dlogits, P + cls_w_, B, C, NL, false, false, false, gw);
            k.dropout_forward(d_b1_.data(), B * C, drop_.classifier, site_seed(1 + 4 * L));
        }
        if (dpooled) k.residual_forward(d_b1_.data(), d_b1_.data(), dpooled, B * C);
        zero(d_b2_);  // gradient before the tanh
        k.tanh_backward(d_b2_.data(), pooled_.data(), d_b1_.data(), B * C);
        k.sgemm(G + pool_w_, d_b2_.data(), cls_.data(), C, C, B, true, false, true, gw);
        k.bias_backward(G + pool_b_, d_b2_.data(), B, C, gw);
        k.sgemm(d_b1_.data(), d_b2_.data(), P + pool_w_, B, C, C, false, false, false, gw);
        for (int64_t b = 0; b < B; b++) {
            float* d = d_h_.data() + row_of_[b * T] * C;
            k.residual_forward(d, d, d_b1_.data() + b * C, C);
        }
    }
    for (int64_t l = L - 1; l >= 0; l--) {
        const LayerParams& lp = lp_[l];
        const float* x = h_.data() + l * R * C;
        const float* qkv = qkv_.data() + l * R * 3 * C;
        const float* ctx = ctx_.data() + l * R * C;
        const float* a1 = a1_.data() + l * R * C;
        const float* fc = fc_.data() + l * R * F;
        const float* fcg = fcg_.data() + l * R * F;
        // MLP block; d_r_ the gradient of the sum before the norm
        std::memset(d_r_.data(), 0, N * rowbytes);
        k.layernorm_backward(d_r_.data(), G + lp.ln2_w, G + lp.ln2_b, d_h_.data(), r2_.data() + l * R * C,
                             P + lp.ln2_w, m2_.data() + l * R, s2_.data() + l * R, N, C, gw);
        std::memcpy(d_a1_.data(), d_r_.data(), N * rowbytes);
        std::memcpy(tmp_.data(), d_r_.data(), N * rowbytes);
        dropout_rows(tmp_.data(), drop_.hidden, 3 + 4 * l);
        k.sgemm(G + lp.out_w, tmp_.data(), fcg, C, F, N, true, false, true, gw);
        k.bias_backward(G + lp.out_b, tmp_.data(), N, C, gw);
        k.sgemm(d_fcg_.data(), tmp_.data(), P + lp.out_w, N, F, C, false, false, false, gw);
        std::memset(d_fc_.data(), 0, sizeof(float) * N * F);
        k.gelu_erf_backward(d_fc_.data(), fc, d_fcg_.data(), N * F);
        k.sgemm(G + lp.in_w, d_fc_.data(), a1, F, C, N, true, false, true, gw);
        k.bias_backward(G + lp.in_b, d_fc_.data(), N, F, gw);
        k.sgemm(d_a1_.data(), d_fc_.data(), P + lp.in_w, N, C, F, false, false, true, gw);
        // attention block
        std::memset(d_r_.data(), 0, N * rowbytes);
        k.layernorm_backward(d_r_.data(), G + lp.ln1_w, G + lp.ln1_b, d_a1_.data(), r1_.data() + l * R * C,
                             P + lp.ln1_w, m1_.data() + l * R, s1_.data() + l * R, N, C, gw);
        std::memcpy(d_h_.data(), d_r_.data(), N * rowbytes);
        std::memcpy(tmp_.data(), d_r_.data(), N * rowbytes);
        dropout_rows(tmp_.data(), drop_.hidden, 2 + 4 * l);
        k.sgemm(G + lp.ao_w, tmp_.data(), ctx, C, C, N, true, false, true, gw);
        k.bias_backward(G + lp.ao_b, tmp_.data(), N, C, gw);
        k.sgemm(d_ctx_.data(), tmp_.data(), P + lp.ao_w, N, C, C, false, false, false, gw);
        std::memset(d_qkv_.data(), 0, 3 * N * rowbytes);
        if (padded_attention()) {
            // the forward's padded layout again; the gradient is 0 at rows not computed
            if (pad_dqkv_.size() != size_t(R * 3 * C)) pad_dqkv_.assign(R * 3 * C, 0.0f);
            scatter_rows(pad_qkv_.data(), qkv, 3 * C);
            zero(tmp_);
            scatter_rows(tmp_.data(), d_ctx_.data(), C);
            zero(pad_dqkv_);
            k.attention_masked_backward(pad_dqkv_.data(), tmp_.data(), pad_qkv_.data(), att_.data() + l * A_, B, T,
                                        C, NH, drop_.attention, site_seed(1 + 4 * l), gw);
            gather_rows(d_qkv_.data(), pad_dqkv_.data(), 3 * C);
        } else {
            for (int64_t b = 0; b < B; b++)
                k.attention_masked_backward(d_qkv_.data() + seq_[b] * 3 * C, d_ctx_.data() + seq_[b] * C,
                                            qkv + seq_[b] * 3 * C, att_.data() + l * A_ + att_off_[b], 1,
                                            seq_[b + 1] - seq_[b], C, NH, 0.0f, 0, gw);
        }
        k.sgemm(G + lp.qkv_w, d_qkv_.data(), x, 3 * C, C, N, true, false, true, gw);
        k.bias_backward(G + lp.qkv_b, d_qkv_.data(), N, 3 * C, gw);
        k.sgemm(d_h_.data(), d_qkv_.data(), P + lp.qkv_w, N, C, 3 * C, false, false, true, gw);
    }
    // embeddings
    dropout_rows(d_h_.data(), drop_.hidden, 0);
    std::memset(d_r_.data(), 0, N * rowbytes);
    k.layernorm_backward(d_r_.data(), G + lne_w_, G + lne_b_, d_h_.data(), emb_.data(), P + lne_w_,
                         emb_mean_.data(), emb_rstd_.data(), N, C, gw);
    // back to the padded layout (zero where not computed) for the tables' gradients
    zero(tmp_);
    for (int64_t r = 0; r < N; r++) std::memcpy(tmp_.data() + src[r] * C, d_r_.data() + r * C, rowbytes);
    k.bert_embed_backward(G + wte_, G + wpe_, G + wtt_, tmp_.data(), ids_.data(), types_.data(), B, T, C);
}

}  // namespace pyllm
