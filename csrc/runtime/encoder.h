// The BERT encoder graph: embeddings, post-norm blocks with padded bidirectional
// attention, the tanh pooler and a linear classifier, forward and backward over one
// flat parameter buffer, activations kept for the backward pass. Not the loss (the
// caller turns logits into dlogits) nor the optimizer; no Python here.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace pyllm {

struct EncoderConfig {
    int64_t vocab_size = 0;     // V
    int64_t max_positions = 0;  // learned absolute positions
    int64_t type_vocab = 0;     // token types (segments)
    int64_t hidden = 0;         // C
    int64_t layers = 0;         // L
    int64_t heads = 0;          // NH, HS = C / NH
    int64_t intermediate = 0;   // F, the MLP width
    float eps = 1e-12f;         // layer norm epsilon
    bool pooler = true;         // pooler.dense (C,C) + tanh on the first token
    int64_t num_labels = 0;     // classifier (num_labels, C) on the pooled output; 0: none
};

// One parameter of the flat buffer: its Hugging Face BertModel name (the
// classifier as "classifier.*"), shape and offset in floats.
struct EncoderParam {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset;
};

// Dropout rates and the seed one forward (and its backward) uses; all 0 in eval.
struct EncoderDropout {
    float hidden = 0.0f;      // embeddings, attention output, MLP output
    float attention = 0.0f;   // attention probabilities
    float classifier = 0.0f;  // pooled output before the classifier
    uint64_t seed = 0;
};

class EncoderModel {
public:
    explicit EncoderModel(const EncoderConfig& cfg);

    const EncoderConfig& config() const { return cfg_; }
    // The flat layout: per layer query, key, value weights adjacent (one (3C,C)
    // matrix) and their biases adjacent (3C), so q, k and v come from one GEMM.
    const std::vector<EncoderParam>& layout() const { return layout_; }
    int64_t num_parameters() const { return n_params_; }

    // ids, types, mask (B,T) int64 validated by the caller (mask 0/1, every row
    // with a 1; ids and types in range; T <= max_positions). Keeps every
    // activation for backward. Results: hidden_into(l) l = 0..L (B,T,C),
    // pooled() (B,C) and logits() (B,num_labels) when the model has them.
    //
    // Only the unmasked tokens are computed (packed into one (N,C) matrix for
    // the dense ops, attention per sequence over its own keys), plus the first
    // token of every row when there is a pooler. A padded position changes no
    // unmasked one, so those results are what the padded (B,T) graph gives;
    // with pad_rows the padded positions are computed too (as queries over
    // their row's keys, as transformers does), else their hidden states read 0.
    void forward(const float* params, const int64_t* ids, const int64_t* types, const int64_t* mask, int64_t B,
                 int64_t T, const EncoderDropout& dropout, bool pad_rows = false);
    // Adds the gradients of the last forward into grads (the flat layout):
    // dlogits (B,num_labels), dpooled (B,C) and dlast (B,T,C), each optional
    // (null); dlast at positions the forward did not compute is ignored.
    void backward(const float* params, float* grads, const float* dlogits, const float* dpooled,
                  const float* dlast);

    int64_t batch() const { return B_; }
    int64_t time() const { return T_; }
    int64_t rows() const { return N_; }  // positions computed by the last forward
    // out (B,T,C) = the input of layer l (l = L: the last output), 0 where not computed
    void hidden_into(int64_t l, float* out) const;
    // out (B,C) = the mean of the last output over each row's unmasked tokens:
    // their sum in position order, divided by their count (the bits of numpy's
    // (h * mask).sum(axis=1) / mask.sum(axis=1) on hidden_into(L))
    void mean_pool_into(float* out) const;
    const float* pooled() const { return pooled_.data(); }
    const float* logits() const { return logits_.data(); }

    // Held by callers around forward/backward and while reading results.
    std::mutex& mutex() { return mu_; }

private:
    struct LayerParams {
        int64_t qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b;
    };
    void resize(int64_t B, int64_t T);
    void pack(const int64_t* mask, bool pad_rows);
    void dropout_rows(float* x, float p, int64_t site);
    void scatter_rows(float* out, const float* rows, int64_t W) const;
    void gather_rows(float* rows, const float* padded, int64_t W) const;
    float* work(int64_t floats);
    uint64_t site_seed(int64_t site) const;

    EncoderConfig cfg_;
    std::vector<EncoderParam> layout_;
    int64_t n_params_ = 0;
    int64_t wte_ = 0, wpe_ = 0, wtt_ = 0, lne_w_ = 0, lne_b_ = 0, pool_w_ = -1, pool_b_ = -1, cls_w_ = -1,
            cls_b_ = -1;
    std::vector<LayerParams> lp_;

    int64_t B_ = 0, T_ = 0, N_ = 0, A_ = 0;
    EncoderDropout drop_;
    std::vector<int64_t> ids_, types_;  // the last forward's (B,T) ids and token types
    // the packing, N computed rows (N <= B*T): sequence b owns rows
    // [seq_[b], seq_[b+1]), its keys_[b] unmasked tokens first (in order), then
    // any padded positions computed as queries only. src_ (N) the index b*T+t
    // of each row in the padded batch, row_of_ (B*T) the row of each padded
    // index or -1; kmask_ (N) the additive key mask of each row in its
    // sequence's block (0 for its keys, -inf for the extra queries); att_off_
    // (B+1) each sequence's offset in one layer's (NH,n,n) probabilities, A_ =
    // att_off_[B] floats
    std::vector<int64_t> seq_, keys_, att_off_, src_, row_of_;
    std::vector<float> kmask_;
    // With attention dropout the attention runs on the padded layout, so its
    // masks are the padded (B,NH,T,T) ones whatever the packing: pmask_ (B*T)
    // the additive key mask, pad_qkv_/pad_dqkv_ (B*T,3C) the rows scattered
    // there (allocated at first use); att then holds (B,NH,T,T) per layer.
    std::vector<float> pmask_, pad_qkv_, pad_dqkv_;
    // hidden-state dropout likewise draws on the padded (B*T,C) layout: pad_drop_
    // (B*T,C) holds the rows meanwhile (allocated at first use)
    std::vector<float> pad_drop_;
    bool padded_attention() const { return drop_.attention > 0.0f; }
    // activations over the N rows (buffers sized for R = B*T): the embedding
    // sum before its norm (R,C) with the norm's mean and rstd; h_ (L+1,R,C)
    // each layer's input and the last output; per layer qkv (L,R,3C), att
    // (L, NH*B*T*T) (layer l at l*A_), ctx (L,R,C) the heads' outputs, r1/r2
    // (L,R,C) the sums before each norm, a1 (L,R,C) the attention block's
    // output, fc/fcg (L,R,F) the MLP before/after GELU, the norms' mean and
    // rstd (L,R)
    std::vector<float> emb_, emb_mean_, emb_rstd_, h_;
    std::vector<float> qkv_, att_, ctx_, r1_, a1_, fc_, fcg_, r2_;
    std::vector<float> m1_, s1_, m2_, s2_;
    // the head: first-token rows (B,C), pooled = tanh(...) (B,C), its dropped copy, logits
    std::vector<float> cls_, pooled_, pooled_drop_, logits_;
    // scratch
    std::vector<float> tmp_, d_h_, d_r_, d_a1_, d_ctx_, d_qkv_, d_fc_, d_fcg_, d_b1_, d_b2_;
    std::vector<float> work_;
    std::mutex mu_;
};

}  // namespace pyllm
