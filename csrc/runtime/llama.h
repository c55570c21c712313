// The llama architecture forward pass over weights used in place from a GGUF
// file, with a KV cache: prefill in chunks as GEMMs, decode one token at a
// time. Not tokenization, sampling or the Python model classes.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf.h"
#include "threadpool.h"

namespace pyllm {

struct LlamaConfig {
    int64_t vocab_size = 0;     // V
    int64_t hidden_size = 0;    // C
    int64_t n_layer = 0;        // L
    int64_t n_head = 0;         // NH
    int64_t n_kv_head = 0;      // NKV
    int64_t head_dim = 0;       // HS
    int64_t ffn_size = 0;       // FF
    float rms_eps = 1e-5f;
    float rope_theta = 10000.0f;
    int64_t n_ctx = 2048;       // KV cache length
};

// A weight matrix (OUT, IN) as stored in the file: rows of IN elements.
struct Weight {
    const void* data = nullptr;
    uint32_t type = 0;
    int64_t rows = 0, cols = 0;
    int64_t row_bytes = 0;
    // the same matrix repacked at load (qpack_weights, groups of 4 rows), or
    // null; when set, the mapped bytes at `data` are no longer read
    const void* packed = nullptr;
};

class LlamaModel {
public:
    // Checks every tensor the architecture needs (name, shape, type) and
    // throws std::invalid_argument naming the first one that is missing or
    // unsupported. Keeps `file` mapped for the model's lifetime.
    LlamaModel(std::shared_ptr<GGUFFile> file, const LlamaConfig& cfg);

    const LlamaConfig& config() const { return cfg_; }

    // Runs tokens (T) at positions n_past() .. n_past()+T-1 and appends them
    // to the cache. logits: (T, V) when all_logits, else (V) for the last one.
    // Throws std::invalid_argument for ids out of range or a full cache.
    void forward(const int32_t* tokens, int64_t T, float* logits, bool all_logits);

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
    struct Layer {
        const float* attn_norm;
        const float* ffn_norm;
        Weight wq, wk, wv, wo, w_gate, w_up, w_down;
    };

    void forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits);
    // One token for each of B sequences through every layer inside a single
    // job of nt threads (weights packed); logits (B, V) or none.
    void decode_rows(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits, int nt);
    // decode_rows on the thread count decode_threads_ picks, timed for it
    void decode_timed(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits);
    void linear(float* out, const float* x, int64_t M, const Weight& w);
    void pack(Weight& w);
    void ensure_work();

    std::shared_ptr<GGUFFile> file_;
    LlamaConfig cfg_;
    Weight tok_embd_, output_;
    const float* output_norm_ = nullptr;
    std::vector<Layer> layers_;

    struct FreeDelete {
        void operator()(float* p) const noexcept { std::free(p); }
    };
    std::vector<float> rope_cos_, rope_sin_;  // (n_ctx, HS/2)
    // per sequence, key and value caches (L, n_ctx, NKV*HS) each, calloc'd:
    // pages are committed only as positions are written
    struct KVCache {
        std::unique_ptr<float, FreeDelete> k, v;
        int64_t n_past = 0;
    };
    KVCache new_cache() const;
    std::vector<KVCache> caches_;
    size_t seq_ = 0;  // the sequence forward/truncate act on

    // activations for a chunk of up to kChunk positions
    std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_;
    std::vector<float> work_;
    int work_threads_ = 0;  // the thread count work_ is sized for
    std::mutex mu_;

    // packed weights, 64-byte aligned; decode_step needs every layer matrix packed
    std::vector<std::unique_ptr<float, FreeDelete>> packed_;
    bool decode_packed_ = false;
    // decode_rows scratch per thread: residual rows, their norm, attention work
    std::vector<float> dec_;
    // per-call thread counts (one thread when the others do not pay)
    ThreadChooser decode_threads_, prefill_threads_;
    ThreadPool pool_;  // decode_rows' threads (declared last: joined first)
};

// Largest number of positions one forward_chunk processes.
constexpr int64_t kLlamaChunk = 256;

}  // namespace pyllm
