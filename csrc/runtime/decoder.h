// One decoder-only transformer runtime for every architecture pyllm loads:
// a block spec (norm kind and placement, biases, q/k norm, activation,
// RoPE style, positions, soft-capping, sliding windows) over weights the
// caller maps or owns, with KV caches; prefill in chunks as GEMMs, the
// decode step (one or several sequences) in one job of the runtime's own
// threads. Not tokenization, sampling, file formats or architecture names:
// pyllm/models/ maps each architecture onto a DecoderSpec.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "threadpool.h"

namespace pyllm {

enum class NormKind { RMS, Layer };            // RMSNorm, or LayerNorm with its bias
enum class Activation { SiluGLU, GeluGLU, Gelu };  // SwiGLU, GeGLU (tanh GELU), plain tanh-GELU MLP
enum class RopeKind { None, Interleaved, Neox };   // pairs (2i, 2i+1), or (i, i + rot/2) (rotate-half)

struct DecoderSpec {
    int64_t vocab_size = 0;   // V
    int64_t hidden_size = 0;  // C
    int64_t n_layer = 0;      // L
    int64_t n_head = 0;       // NH
    int64_t n_kv_head = 0;    // NKV (NH a multiple of it)
    int64_t head_dim = 0;     // HS (NH * HS need not be C)
    int64_t ffn_size = 0;     // FF
    int64_t n_ctx = 0;        // KV cache length
    NormKind norm = NormKind::RMS;
    float norm_eps = 1e-5f;
    Activation act = Activation::SiluGLU;
    RopeKind rope = RopeKind::Neox;
    int64_t rope_dim = 0;        // rotated dimensions per head (even, <= HS)
    float attn_scale = 0.0f;     // scores' scale (0: 1 / sqrt(HS))
    float attn_softcap = 0.0f;   // > 0: scores -> cap * tanh(score / cap)
    float final_softcap = 0.0f;  // > 0: logits -> cap * tanh(logit / cap)
    float embed_scale = 1.0f;    // token embeddings times this
    std::vector<int64_t> window;  // per layer: sliding window length, 0 = all positions
    std::vector<int> rope_table;  // per layer: which of the rope tables it uses
};

// A weight matrix (OUT, IN) as rows of IN elements of one ggml type.
struct Weight {
    const void* data = nullptr;
    uint32_t type = 0;
    int64_t rows = 0, cols = 0;
    int64_t row_bytes = 0;
    // the same matrix repacked at load (qpack_weights, groups of 16 rows), or
    // null; when set, the bytes at `data` are no longer read
    const void* packed = nullptr;
};

// A float32 vector (norm weights, biases); data null when absent.
struct Vector {
    const float* data = nullptr;
    int64_t n = 0;
};

struct DecoderLayer {
    Vector attn_norm, attn_norm_b, attn_post_norm;  // post norm: Gemma 2/3's sandwich
    Vector q_norm, k_norm;                          // per head (HS), Qwen3 / Gemma 3
    Weight wq, wk, wv, wo;
    Vector bq, bk, bv, bo;
    Vector ffn_norm, ffn_norm_b, ffn_post_norm;
    Weight w_gate, w_up, w_down;  // w_gate absent (data null) for a plain MLP
    Vector b_gate, b_up, b_down;
};

struct DecoderWeights {
    Weight tok_embd;  // (V, C)
    Weight pos_embd;  // (>= n_ctx, C) learned absolute positions, or absent
    Vector output_norm, output_norm_b;
    Weight output;  // (V, C); the token embedding when tied
    std::vector<DecoderLayer> layers;
    // rope tables: cos and sin (n_ctx, rope_dim / 2) each, row-major
    std::vector<std::vector<float>> rope_cos, rope_sin;
    // the matrices' bytes are a read-only file mapping whose pages may be
    // dropped once repacked (never for memory the caller owns)
    bool release_packed_source = false;
};

class DecoderModel {
public:
    // Checks the spec and every weight (presence, shape, type) and throws
    // std::invalid_argument naming the first one that is wrong. `owner`
    // keeps the weights' memory alive for the model's lifetime.
    DecoderModel(const DecoderSpec& spec, DecoderWeights weights, std::shared_ptr<void> owner);

    const DecoderSpec& spec() const { return spec_; }
    // the weights as the model reads them (a packed matrix's source bytes no more)
    const DecoderWeights& weights() const { return w_; }

    // Runs tokens (T) at positions n_past() .. n_past()+T-1 and appends them
    // to the cache. logits: (T, V) when all_logits, else (V) for the last one.
    // Throws std::invalid_argument for ids out of range or a full cache.
    void forward(const int32_t* tokens, int64_t T, float* logits, bool all_logits);
    // forward that also writes the hidden states (L + 1, T, C): row l < L is
    // the residual stream entering layer l (the scaled embeddings at l = 0),
    // row L the final norm's output, as transformers' output_hidden_states;
    // only that last one (T, C) unless all_layers. logits as forward's, or
    // null for none.
    void forward_hidden(const int32_t* tokens, int64_t T, float* logits, bool all_logits, float* hidden,
                        bool all_layers);

    int64_t n_past() const { return caches_[seq_].n_past; }
    // Forget the cached positions after the first n (0 clears the cache).
    void truncate(int64_t n);

    // Several sequences, each with its own KV cache: n_seq() of them
    // (1 at load); forward, n_past and truncate act on the selected one.
    int64_t n_seq() const { return int64_t(caches_.size()); }
    // Keeps the first n caches (n >= 1), frees the others, adds empty ones.
    void set_n_seq(int64_t n);
    void select_seq(int64_t s);
    // Makes sequence dst hold what sequence src holds (its positions and
    // cache rows), e.g. a beam taking over another beam's history.
    void copy_seq(int64_t src, int64_t dst);
    int64_t selected_seq() const { return int64_t(seq_); }
    // One token for each of B distinct sequences (ids seqs[b]), appended to
    // their caches in one decode step that reads each weight once for all:
    // logits (B, V). Needs packed weights (decode_batch_supported()).
    void decode_batch(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits);
    bool decode_batch_supported() const { return decode_packed_; }

    // Held by callers for the whole of a forward: one sequence, one user at a time.
    std::mutex& mutex() { return mu_; }

private:
    void check() const;
    // The model's steps in order (decoder.cpp), run by an executor: Prefill
    // over a chunk of positions, Decode over one position of B sequences.
    enum class Buf { XN, Q, K, V, ATT, H, GATE, UP };  // the rows a step reads or writes
    struct Proj {
        Buf out;
        const Weight* w;
        const Vector* b;
    };
    template <class Exec>
    void graph(Exec& e);
    class Prefill;
    class Decode;
    struct DecodeStep;
    // hidden: null, or the chunk's first row of hidden states whose layers are
    // `layer_stride` floats apart (0: the last layer's alone)
    void forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits,
                       float* hidden = nullptr, int64_t layer_stride = 0);
    void check_tokens(const int32_t* tokens, int64_t T) const;
    // One token for each of B sequences through every layer inside a single
    // job of nt threads (weights packed); logits (B, V) or none.
    void decode_rows(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits, int nt);
    // decode_rows on the thread count decode_threads_ picks, timed for it
    void decode_timed(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits);
    // the input rows of tokens at positions pos (n): embedding, scale, positions
    void embed(float* x, const int32_t* tokens, const int64_t* pos, int64_t n) const;
    void linear(float* out, const float* x, int64_t M, const Weight& w, const Vector& bias);
    void norm(float* out, const float* x, int64_t rows, const Vector& w, const Vector& b);
    void pack(Weight& w);
    void ensure_work();

    DecoderSpec spec_;
    DecoderWeights w_;
    std::shared_ptr<void> owner_;

    struct FreeDelete {
        void operator()(float* p) const noexcept { std::free(p); }
    };
    // zero-filled memory whose pages are committed only as they are written
    // (an anonymous mapping in small pages: with transparent huge pages on
    // "always", a cache row per layer written would commit 2 MB per layer)
    struct ZeroPages {
        float* p = nullptr;
        size_t bytes = 0;
        ZeroPages() = default;
        explicit ZeroPages(size_t floats);
        ZeroPages(ZeroPages&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
        ZeroPages& operator=(ZeroPages&& o) noexcept;
        ~ZeroPages();
        float* get() const { return p; }
    };
    // per sequence, key and value caches (L, n_ctx, NKV*HS) each
    struct KVCache {
        ZeroPages k, v;
        int64_t n_past = 0;
    };
    KVCache new_cache() const;
    std::vector<KVCache> caches_;
    size_t seq_ = 0;  // the sequence forward/truncate act on

    // activations for a chunk of up to kDecoderChunk positions: residual
    // rows x_ and their norm xn_ (prefill), projections, attention, MLP
    std::vector<float> x_, xn_, h_, q_, k_, v_, att_, gate_, up_;
    std::vector<float> work_;
    int work_threads_ = 0;  // the thread count work_ is sized for
    std::mutex mu_;

    // packed weights; the decode step needs every layer matrix packed
    std::vector<std::unique_ptr<float, FreeDelete>> packed_;
    bool decode_packed_ = false;
    // decode_rows scratch per thread: residual rows, normed rows, attention work
    std::vector<float> dec_;
    // per-call thread counts (one thread when the others do not pay)
    ThreadChooser decode_threads_, prefill_threads_;
    ThreadPool pool_;  // decode_rows' threads (declared last: joined first)
};

// Largest number of positions one forward_chunk processes.
constexpr int64_t kDecoderChunk = 256;

}  // namespace pyllm
