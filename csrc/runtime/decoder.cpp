// The decoder runtime (decoder.h): one graph of shared steps, run two ways.
// Prefill runs a chunk of positions through each step as whole-matrix
// kernels (GEMMs, OpenMP inside the kernels); the decode step runs one
// position of each of B sequences through the same steps inside one job of
// the runtime's threads, each step split over output rows and followed by
// a barrier where other threads read what it wrote. Each step computes the
// same bits either way (the same row functions, products summed in one
// order: kernels/common.h), so a position's logits do not depend on how it
// was run. Not sampling, tokenization or anything Python.
#include "decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <atomic>
#include <chrono>
#include <climits>
#include <initializer_list>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_pause: SSE2, in the x86-64 baseline
#endif

#include "dispatch.h"

namespace pyllm {

namespace {

const std::string& kSupported = quant_type_list();  // the types the runtime computes with

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

std::string dims(int64_t r, int64_t c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; }

void check_weight(const Weight& w, const std::string& name, int64_t rows, int64_t cols, bool min_rows = false) {
    if (!w.data) fail("the model has no weight '" + name + "' (GGUF tensor " + name + ".weight)");
    if ((min_rows ? w.rows < rows : w.rows != rows) || w.cols != cols)
        fail("weight '" + name + "' has shape " + dims(w.rows, w.cols) + ", expected " +
             (min_rows ? "at least " : "") + dims(rows, cols));
    const QuantType* t = quant_type(w.type);
    if (!t) fail("unknown tensor type id " + std::to_string(w.type) + " in " + name + ".weight");
    if (!t->computable())
        fail("unsupported GGUF tensor type " + std::string(t->name) + " in " + name + ".weight; supported: " +
             kSupported);
    if (cols % t->block != 0)
        fail("weight '" + name + "' has " + std::to_string(cols) + " columns, not a multiple of " + t->name +
             "'s block of " + std::to_string(t->block));
    if (w.row_bytes != quant_row_bytes(int(w.type), cols))
        fail("weight '" + name + "': row of " + std::to_string(w.row_bytes) + " bytes, expected " +
             std::to_string(quant_row_bytes(int(w.type), cols)));
}

void check_vector(const Vector& v, const std::string& name, int64_t n, bool required) {
    if (!v.data) {
        if (required) fail("the model has no vector '" + name + "' (GGUF tensor " + name + ".weight)");
        return;
    }
    if (v.n != n) fail("vector '" + name + "' has " + std::to_string(v.n) + " elements, expected " + std::to_string(n));
}

// Drops the pages of [p, p+n) from this process's resident set: the mapping
// stays valid (a later read faults the page back in from the file).
void release_mapped(const void* p, int64_t n) {
#if defined(__unix__) || defined(__APPLE__)
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + uintptr_t(n)) & ~(page - 1);
    if (b > a) ::madvise(reinterpret_cast<void*>(a), size_t(b - a), MADV_DONTNEED);
#else
    (void)p;
    (void)n;
#endif
}

// [u0, u1) of `units` for thread tid of nth, contiguous and balanced
inline void thread_range(int64_t units, int tid, int nth, int64_t& u0, int64_t& u1) {
    u0 = units * tid / nth;
    u1 = units * (tid + 1) / nth;
}

// The barrier inside the decode step's job: a short spin, then sleeping on
// a futex until the last thread arrives. OpenMP's barrier (and its workers
// between regions) spin far longer by default (GOMP_SPINCOUNT), and a
// thread that yields still holds its core: on a machine whose other cores
// are busy, the late thread needs exactly the core the early one spins on.
// A sleeping thread frees it (the scheduler moves the late one there).
class StepBarrier {
public:
    void wait(int nth) {
        if (nth <= 1) return;
        const unsigned gen = gen_.load();
        if (count_.fetch_add(1) == nth - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.fetch_add(1);  // publishes every thread's writes
            if (sleepers_.load() > 0) wake_all();
            return;
        }
        for (int i = 0; i < kSpins; i++) {
            if (gen_.load(std::memory_order_acquire) != gen) return;
#if defined(__x86_64__) || defined(__i386__)
            _mm_pause();
#endif
        }
        sleepers_.fetch_add(1);
        while (gen_.load() == gen) sleep_while(gen);
        sleepers_.fetch_sub(1);
    }

private:
    static constexpr int kSpins = 1024;  // ~5-20 microseconds
#if defined(__linux__)
    int* word() { return reinterpret_cast<int*>(&gen_); }
    void sleep_while(unsigned gen) { syscall(SYS_futex, word(), FUTEX_WAIT_PRIVATE, int(gen), nullptr, nullptr, 0); }
    void wake_all() { syscall(SYS_futex, word(), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0); }
#else
    void sleep_while(unsigned) { std::this_thread::yield(); }
    void wake_all() {}
#endif
    static_assert(sizeof(std::atomic<unsigned>) == sizeof(int), "the futex word is the generation");
    alignas(64) std::atomic<int> count_{0};
    alignas(64) std::atomic<unsigned> gen_{0};
    alignas(64) std::atomic<int> sleepers_{0};
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

inline float* align64(float* p) {
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}


// the attention scores' scale: the spec's, or 1 / sqrt(head size)
inline float attn_scale(const DecoderSpec& s) {
    return s.attn_scale > 0.0f ? s.attn_scale : 1.0f / std::sqrt(float(s.head_dim));
}

// y[0:n] = cap * tanh(y / cap), in torch's order (Gemma 2's final logits)
void softcap_span(float* y, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) y[i] = std::tanh(y[i] / cap) * cap;
}

}  // namespace

DecoderModel::DecoderModel(const DecoderSpec& spec, DecoderWeights weights, std::shared_ptr<void> owner)
    : spec_(spec), w_(std::move(weights)), owner_(std::move(owner)) {
    check();
    const DecoderSpec& s = spec_;
    const int64_t C = s.hidden_size, QD = s.n_head * s.head_dim, KVD = s.n_kv_head * s.head_dim;

    // Block-type matrices are repacked once (groups of 16 rows, see
    // common.h); a file mapping's pages are released after, so the copy
    // replaces them in memory. The token embedding keeps its rows (a few are
    // read per step); a tied output head is packed as the output matrix.
    for (DecoderLayer& L : w_.layers)
        for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            if (w->data) pack(*w);
    pack(w_.output);
    decode_packed_ = w_.output.packed != nullptr;
    for (const DecoderLayer& L : w_.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            decode_packed_ = decode_packed_ && (!w->data || w->packed);
    // (the step splits outputs in whole groups of 16 rows: QD, KVD, C and FF)
    decode_packed_ = decode_packed_ && C % kPackRows == 0 && QD % kPackRows == 0 && KVD % kPackRows == 0 &&
                     s.ffn_size % kPackRows == 0;

    caches_.push_back(new_cache());

    const int64_t T = kDecoderChunk;
    x_.resize(size_t(T * C));
    xn_.resize(size_t(T * C));
    h_.resize(size_t(T * C));
    q_.resize(size_t(T * QD));
    k_.resize(size_t(T * KVD));
    v_.resize(size_t(T * KVD));
    att_.resize(size_t(T * QD));
    gate_.resize(size_t(T * s.ffn_size));
    up_.resize(size_t(T * s.ffn_size));
    ensure_work();
}

void DecoderModel::check() const {
    const DecoderSpec& s = spec_;
    const int64_t C = s.hidden_size, HS = s.head_dim;
    if (C <= 0 || s.n_layer <= 0 || s.n_head <= 0 || s.n_kv_head <= 0 || HS <= 0 || s.ffn_size <= 0 ||
        s.vocab_size <= 0 || s.n_ctx <= 0)
        fail("decoder spec: every size must be positive");
    if (s.n_head % s.n_kv_head != 0)
        fail("decoder spec: attention heads (" + std::to_string(s.n_head) + ") must be a multiple of key/value heads (" +
             std::to_string(s.n_kv_head) + ")");
    if (s.rope != RopeKind::None && (s.rope_dim <= 0 || s.rope_dim % 2 != 0 || s.rope_dim > HS))
        fail("decoder spec: rotary dimensions " + std::to_string(s.rope_dim) + " must be even and in [2, head size " +
             std::to_string(HS) + "]");
    if (!(s.norm_eps >= 0.0f) || !std::isfinite(s.attn_scale) || !(s.attn_softcap >= 0.0f) ||
        !(s.final_softcap >= 0.0f) || !std::isfinite(s.embed_scale) || !std::isfinite(s.attn_softcap) ||
        !std::isfinite(s.final_softcap))
        fail("decoder spec: eps, scales and soft-caps must be finite (eps and caps >= 0)");
    if (int64_t(s.window.size()) != s.n_layer || int64_t(s.rope_table.size()) != s.n_layer)
        fail("decoder spec: window and rope_table need one entry per layer (" + std::to_string(s.n_layer) + ")");
    for (int64_t l = 0; l < s.n_layer; l++) {
        if (s.window[size_t(l)] < 0) fail("decoder spec: layer " + std::to_string(l) + " has a negative window");
        const int t = s.rope_table[size_t(l)];
        if (s.rope != RopeKind::None && (t < 0 || t >= int(w_.rope_cos.size())))
            fail("decoder spec: layer " + std::to_string(l) + " uses rope table " + std::to_string(t) + " of " +
                 std::to_string(w_.rope_cos.size()));
    }
    if (w_.rope_cos.size() != w_.rope_sin.size()) fail("rope tables: as many sine tables as cosine tables needed");
    const size_t table = size_t(s.n_ctx * (s.rope_dim / 2));
    if (s.rope != RopeKind::None)
        for (size_t i = 0; i < w_.rope_cos.size(); i++)
            if (w_.rope_cos[i].size() != table || w_.rope_sin[i].size() != table)
                fail("rope table " + std::to_string(i) + " must be (n_ctx, rope_dim / 2) = " +
                     dims(s.n_ctx, s.rope_dim / 2));
    if (int64_t(w_.layers.size()) != s.n_layer)
        fail("the weights have " + std::to_string(w_.layers.size()) + " layers, the spec " + std::to_string(s.n_layer));

    const bool layer_norm = s.norm == NormKind::Layer;
    const int64_t QD = s.n_head * HS, KVD = s.n_kv_head * HS, FF = s.ffn_size, V = s.vocab_size;
    check_weight(w_.tok_embd, "token_embd", V, C);
    if (w_.pos_embd.data) check_weight(w_.pos_embd, "position_embd", s.n_ctx, C, true);
    check_weight(w_.output, "output", V, C);
    check_vector(w_.output_norm, "output_norm", C, true);
    check_vector(w_.output_norm_b, "output_norm.bias", C, false);
    if (!layer_norm && w_.output_norm_b.data) fail("an RMS-normed model has no norm biases (output_norm.bias)");
    for (int64_t l = 0; l < s.n_layer; l++) {
        const DecoderLayer& L = w_.layers[size_t(l)];
        const std::string p = "blk." + std::to_string(l) + ".";
        check_vector(L.attn_norm, p + "attn_norm", C, true);
        check_vector(L.attn_norm_b, p + "attn_norm.bias", C, false);
        check_vector(L.attn_post_norm, p + "post_attention_norm", C, false);
        check_vector(L.ffn_norm, p + "ffn_norm", C, true);
        check_vector(L.ffn_norm_b, p + "ffn_norm.bias", C, false);
        check_vector(L.ffn_post_norm, p + "post_ffw_norm", C, false);
        if (!layer_norm && (L.attn_norm_b.data || L.ffn_norm_b.data))
            fail("an RMS-normed model has no norm biases (" + p + ")");
        check_vector(L.q_norm, p + "attn_q_norm", HS, false);
        check_vector(L.k_norm, p + "attn_k_norm", HS, false);
        check_weight(L.wq, p + "attn_q", QD, C);
        check_weight(L.wk, p + "attn_k", KVD, C);
        check_weight(L.wv, p + "attn_v", KVD, C);
        check_weight(L.wo, p + "attn_output", C, QD);
        check_vector(L.bq, p + "attn_q.bias", QD, false);
        check_vector(L.bk, p + "attn_k.bias", KVD, false);
        check_vector(L.bv, p + "attn_v.bias", KVD, false);
        check_vector(L.bo, p + "attn_output.bias", C, false);
        const bool gated = s.act != Activation::Gelu;
        if (gated) check_weight(L.w_gate, p + "ffn_gate", FF, C);
        else if (L.w_gate.data) fail("a plain (ungated) MLP has no " + p + "ffn_gate");
        check_weight(L.w_up, p + "ffn_up", FF, C);
        check_weight(L.w_down, p + "ffn_down", C, FF);
        check_vector(L.b_gate, p + "ffn_gate.bias", FF, false);
        check_vector(L.b_up, p + "ffn_up.bias", FF, false);
        check_vector(L.b_down, p + "ffn_down.bias", C, false);
    }
}

void DecoderModel::ensure_work() {
    // kernel scratch for the current thread count, grown (never inside a
    // parallel region) when set_num_threads raised it; zero-filled, so it is
    // sized for the threads in use rather than for a generous maximum
    const int nt = num_threads();
    if (nt <= work_threads_) return;
    const int64_t C = spec_.hidden_size, QD = spec_.n_head * spec_.head_dim, T = kDecoderChunk;
    int64_t work = attention_work_floats(spec_.head_dim, nt);
    std::vector<uint32_t> types{w_.tok_embd.type, w_.output.type};
    for (const DecoderLayer& L : w_.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            if (w->data) types.push_back(w->type);
    std::sort(types.begin(), types.end());
    types.erase(std::unique(types.begin(), types.end()), types.end());
    for (int64_t K : {C, QD, spec_.ffn_size})
        for (uint32_t type : types)
            work = std::max({work, qmatmul_work_floats(K, nt), qpack_work_floats(T, K, int(type), nt)});
    work_.resize(size_t(work) + 16);
    work_threads_ = nt;
}

void DecoderModel::pack(Weight& w) {
    if (w.packed || !qpack_supported(int(w.type)) || w.cols % kQuantBlock != 0) return;
    const size_t bytes = size_t(qpack_bytes(int(w.type), w.rows, w.cols));
    // 2 MB aligned and advised as huge pages: the decode step streams every
    // packed byte once per token, and with 4 KB pages each page costs a TLB miss
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t size = bytes >= kHuge ? (bytes + kHuge - 1) / kHuge * kHuge : (bytes + 63) / 64 * 64;
    float* buf = static_cast<float*>(std::aligned_alloc(bytes >= kHuge ? kHuge : 64, size));
    if (!buf) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    if (bytes >= kHuge) ::madvise(buf, size, MADV_HUGEPAGE);
#endif
    packed_.emplace_back(buf);
    kernels().qpack_weights(buf, w.data, w.rows, w.cols, int(w.type));
    if (w_.release_packed_source) release_mapped(w.data, w.rows * w.row_bytes);
    w.packed = buf;
}

void DecoderModel::linear(float* out, const float* x, int64_t M, const Weight& w, const Vector& bias) {
    // x (M, cols) @ w^T [+ bias] -> out (M, rows)
    float* work = align64(work_.data());
    if (w.packed)
        kernels().qpack_matmul(out, x, w.packed, M, w.rows, w.cols, int(w.type), work);
    else
        kernels().qmatmul(out, x, w.data, M, w.rows, w.cols, int(w.type), work);
    if (bias.data) kernels().bias_add(out, bias.data, M, w.rows);
}

void DecoderModel::norm(float* out, const float* x, int64_t rows, const Vector& w, const Vector& b) {
    if (spec_.norm == NormKind::Layer)
        kernels().layernorm_forward(out, nullptr, nullptr, x, w.data, b.data, rows, spec_.hidden_size,
                                    spec_.norm_eps);
    else
        kernels().rmsnorm_forward(out, x, w.data, rows, spec_.hidden_size, spec_.norm_eps);
}

void DecoderModel::embed(float* x, const int32_t* tokens, const int64_t* pos, int64_t n) const {
    // rows of the token embedding [* embed_scale] [+ the position's embedding]
    const KernelTable& k = kernels();
    const int64_t C = spec_.hidden_size;
    const float scale = spec_.embed_scale;
    const bool f32_pos = w_.pos_embd.type == uint32_t(kTypeF32);
    std::vector<float> prow(w_.pos_embd.data && !f32_pos ? size_t(C) : 0);
    for (int64_t t = 0; t < n; t++) {
        float* xr = x + t * C;
        k.dequantize_row(xr, static_cast<const uint8_t*>(w_.tok_embd.data) + int64_t(tokens[t]) * w_.tok_embd.row_bytes,
                         C, int(w_.tok_embd.type));
        if (scale != 1.0f)
            for (int64_t i = 0; i < C; i++) xr[i] *= scale;
        if (!w_.pos_embd.data) continue;
        const uint8_t* pr = static_cast<const uint8_t*>(w_.pos_embd.data) + pos[t] * w_.pos_embd.row_bytes;
        const float* pf = reinterpret_cast<const float*>(pr);
        if (!f32_pos) {
            k.dequantize_row(prow.data(), pr, C, int(w_.pos_embd.type));
            pf = prow.data();
        }
        for (int64_t i = 0; i < C; i++) xr[i] += pf[i];
    }
}

DecoderModel::ZeroPages::ZeroPages(size_t floats) : bytes(floats * sizeof(float)) {
#if defined(__unix__) || defined(__APPLE__)
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_NOHUGEPAGE)
    ::madvise(m, bytes, MADV_NOHUGEPAGE);
#endif
    p = static_cast<float*>(m);
#else
    p = static_cast<float*>(std::calloc(floats, sizeof(float)));
    if (!p) throw std::bad_alloc();
#endif
}

DecoderModel::ZeroPages& DecoderModel::ZeroPages::operator=(ZeroPages&& o) noexcept {
    if (this != &o) {
        this->~ZeroPages();
        p = o.p;
        bytes = o.bytes;
        o.p = nullptr;
    }
    return *this;
}

DecoderModel::ZeroPages::~ZeroPages() {
    if (!p) return;
#if defined(__unix__) || defined(__APPLE__)
    ::munmap(p, bytes);
#else
    std::free(p);
#endif
    p = nullptr;
}

DecoderModel::KVCache DecoderModel::new_cache() const {
    const size_t n = size_t(spec_.n_layer * spec_.n_ctx * spec_.n_kv_head * spec_.head_dim);
    KVCache c;
    c.k = ZeroPages(n);
    c.v = ZeroPages(n);
    return c;
}

void DecoderModel::set_n_seq(int64_t n) {
    if (n < 1) throw std::invalid_argument("the number of sequences must be at least 1, got " + std::to_string(n));
    while (int64_t(caches_.size()) > n) caches_.pop_back();
    while (int64_t(caches_.size()) < n) caches_.push_back(new_cache());
    if (seq_ >= caches_.size()) seq_ = 0;
}

void DecoderModel::select_seq(int64_t s) {
    if (s < 0 || s >= n_seq())
        throw std::invalid_argument("sequence " + std::to_string(s) + " is out of range [0, " +
                                    std::to_string(n_seq()) + ")");
    seq_ = size_t(s);
}

void DecoderModel::copy_seq(int64_t src, int64_t dst) {
    for (int64_t s : {src, dst})
        if (s < 0 || s >= n_seq())
            throw std::invalid_argument("sequence " + std::to_string(s) + " is out of range [0, " +
                                        std::to_string(n_seq()) + ")");
    if (src == dst) return;
    const KVCache& a = caches_[size_t(src)];
    KVCache& b = caches_[size_t(dst)];
    const int64_t KVD = spec_.n_kv_head * spec_.head_dim, n = a.n_past * KVD;
    for (int64_t l = 0; l < spec_.n_layer; l++) {
        const int64_t off = l * spec_.n_ctx * KVD;  // layer l's rows (n_ctx, NKV*HS)
        std::memcpy(b.k.get() + off, a.k.get() + off, sizeof(float) * size_t(n));
        std::memcpy(b.v.get() + off, a.v.get() + off, sizeof(float) * size_t(n));
    }
    b.n_past = a.n_past;
}

void DecoderModel::truncate(int64_t n) {
    KVCache& c = caches_[seq_];
    if (n < 0 || n > c.n_past)
        throw std::invalid_argument("cannot keep " + std::to_string(n) + " cached positions of " +
                                    std::to_string(c.n_past));
    c.n_past = n;
}

void DecoderModel::check_tokens(const int32_t* tokens, int64_t T) const {
    if (T <= 0) throw std::invalid_argument("forward needs at least one token");
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= spec_.vocab_size)
            throw std::invalid_argument("token id " + std::to_string(tokens[t]) + " at position " +
                                        std::to_string(t) + " is out of range [0, " +
                                        std::to_string(spec_.vocab_size) + ")");
    if (n_past() + T > spec_.n_ctx)
        throw std::invalid_argument(std::to_string(n_past()) + " cached + " + std::to_string(T) +
                                    " new tokens exceed the context length n_ctx=" + std::to_string(spec_.n_ctx));
}

void DecoderModel::forward(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
    forward_hidden(tokens, T, logits, all_logits, nullptr, false);
}

void DecoderModel::forward_hidden(const int32_t* tokens, int64_t T, float* logits, bool all_logits, float* hidden,
                                  bool all_layers) {
    check_tokens(tokens, T);
    ensure_work();
    if (T == 1 && decode_packed_ && !hidden) {
        const int64_t seq = int64_t(seq_);
        decode_timed(tokens, &seq, 1, logits);
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += kDecoderChunk) {
        const int64_t n = std::min(kDecoderChunk, T - t0);
        const bool last = t0 + n == T;
        const int nt = prefill_threads_.pick(num_threads());
        ScopedThreads scoped(nt);  // the kernels' OpenMP regions
        const auto start = std::chrono::steady_clock::now();
        float* chunk_logits = !logits      ? nullptr
                              : all_logits ? logits + t0 * spec_.vocab_size
                              : last       ? logits
                                           : nullptr;
        forward_chunk(tokens + t0, n, chunk_logits, all_logits, hidden ? hidden + t0 * spec_.hidden_size : nullptr,
                      all_layers ? T * spec_.hidden_size : 0);
        prefill_threads_.record(nt, seconds_since(start), double(n));
    }
}

void DecoderModel::decode_timed(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits) {
    const int nt = decode_threads_.pick(num_threads());
    const auto start = std::chrono::steady_clock::now();
    decode_rows(tokens, seqs, B, logits, nt);
    decode_threads_.record(nt, seconds_since(start), double(B));
}

// ---- the graph, written once -------------------------------------------
//
// graph() is the model: the order of the steps and the weights each one
// reads. An executor runs each step on its own rows:
//   embed()                  the residual rows x of the tokens
//   layer(l)                 steps that follow act on layer l's cache
//   norm(w, b)               XN = norm(x)
//   project(in, {out, W, b}) out = in @ W^T + b for each listed matrix;
//                            with activate, then GATE = act(GATE, UP)
//   attend(L)                per-head q/k norms, RoPE, the new key and value
//                            into the cache, ATT = attention
//   residual(post)           x += post_norm(H), or H
//   head()                   logits of the final norm
// Prefill runs a step over a chunk's positions as whole-matrix kernels;
// Decode runs it inside a job of the runtime's threads over one position of
// each of B sequences, a thread per range of output rows, and waits at a
// barrier after each step whose rows other threads read.

template <class Exec>
void DecoderModel::graph(Exec& e) {
    const bool gated = spec_.act != Activation::Gelu;
    e.embed();
    for (int64_t l = 0; l < spec_.n_layer; l++) {
        const DecoderLayer& L = w_.layers[size_t(l)];
        e.layer(l);
        e.norm(L.attn_norm, L.attn_norm_b);
        e.project(Buf::XN, {{Buf::Q, &L.wq, &L.bq}, {Buf::K, &L.wk, &L.bk}, {Buf::V, &L.wv, &L.bv}});
        e.attend(L);
        e.project(Buf::ATT, {{Buf::H, &L.wo, &L.bo}});
        e.residual(L.attn_post_norm);
        e.norm(L.ffn_norm, L.ffn_norm_b);
        if (gated)
            e.project(Buf::XN, {{Buf::GATE, &L.w_gate, &L.b_gate}, {Buf::UP, &L.w_up, &L.b_up}}, true);
        else
            e.project(Buf::XN, {{Buf::GATE, &L.w_up, &L.b_up}}, true);
        e.project(Buf::GATE, {{Buf::H, &L.w_down, &L.b_down}});
        e.residual(L.ffn_post_norm);
    }
    e.head();
}

// A chunk of T positions of the selected sequence, each step one kernel
// call over all T rows (OpenMP inside the kernels): logits (T, V) or (V)
// for the last position, or none.
class DecoderModel::Prefill {
public:
    Prefill(DecoderModel& m, const int32_t* tokens, int64_t T, float* logits, bool all_logits, float* hidden,
            int64_t layer_stride)
        : m_(m), s_(m.spec_), k_(kernels()), tokens_(tokens), T_(T), logits_(logits), all_(all_logits),
          hidden_(hidden), layer_stride_(layer_stride), cache_(m.caches_[m.seq_]), pos0_(cache_.n_past) {}

    void embed() {
        std::vector<int64_t> pos(static_cast<size_t>(T_));
        for (int64_t t = 0; t < T_; t++) pos[size_t(t)] = pos0_ + t;
        m_.embed(m_.x_.data(), tokens_, pos.data(), T_);
    }

    void layer(int64_t l) {
        l_ = l;
        if (hidden_ && layer_stride_) std::copy_n(m_.x_.data(), T_ * s_.hidden_size, hidden_ + l * layer_stride_);
        const int64_t KVD = s_.n_kv_head * s_.head_dim;
        kc_ = cache_.k.get() + l * s_.n_ctx * KVD;  // key cache (n_ctx, NKV*HS)
        vc_ = cache_.v.get() + l * s_.n_ctx * KVD;
    }

    void norm(const Vector& w, const Vector& b) { m_.norm(m_.xn_.data(), m_.x_.data(), T_, w, b); }

    void project(Buf in, std::initializer_list<Proj> ps, bool activate = false) {
        for (const Proj& p : ps) m_.linear(buf(p.out), buf(in), T_, *p.w, *p.b);
        if (!activate) return;
        // over all T rows at once when rows start at a multiple of 8 (the
        // kernels' vector blocks), else row by row: a row's bits never depend on T
        const int64_t FF = s_.ffn_size;
        float* gate = m_.gate_.data();
        const float* up = m_.up_.data();
        for (int64_t r0 = 0, n = FF % 8 == 0 ? T_ * FF : FF; r0 < T_ * FF; r0 += n) {
            if (s_.act == Activation::SiluGLU)
                k_.swiglu_forward(gate + r0, gate + r0, up + r0, n);
            else if (s_.act == Activation::GeluGLU)
                k_.geglu_forward(gate + r0, gate + r0, up + r0, n);
            else
                k_.gelu_forward(gate + r0, gate + r0, n, true);
        }
    }

    void attend(const DecoderLayer& L) {
        const int64_t HS = s_.head_dim, NH = s_.n_head, NKV = s_.n_kv_head, QD = NH * HS, KVD = NKV * HS;
        float* q = m_.q_.data();
        float* kn = buf(Buf::K);
        if (L.q_norm.data) k_.rmsnorm_forward(q, q, L.q_norm.data, T_ * NH, HS, s_.norm_eps);
        if (L.k_norm.data) k_.rmsnorm_forward(kn, kn, L.k_norm.data, T_ * NKV, HS, s_.norm_eps);
        if (s_.rope != RopeKind::None) {
            const int tb = s_.rope_table[size_t(l_)];
            const int64_t half = s_.rope_dim / 2;
            const float* cs = m_.w_.rope_cos[size_t(tb)].data() + pos0_ * half;
            const float* sn = m_.w_.rope_sin[size_t(tb)].data() + pos0_ * half;
            const bool interleaved = s_.rope == RopeKind::Interleaved;
            k_.rope_forward(q, q, cs, sn, 1, T_, NH, HS, s_.rope_dim, interleaved);
            k_.rope_forward(kn, kn, cs, sn, 1, T_, NKV, HS, s_.rope_dim, interleaved);
        }
        const int64_t q_strides[3] = {T_ * QD, HS, QD}, kv_strides[3] = {0, HS, KVD};
        k_.attention_forward(m_.att_.data(), q, kc_, vc_, nullptr, q_strides, q_strides, kv_strides, kv_strides,
                             nullptr, 1, NH, NKV, T_, pos0_ + T_, HS, attn_scale(s_), true, pos0_, s_.attn_softcap,
                             s_.window[size_t(l_)], align64(m_.work_.data()));
    }

    void residual(const Vector& post) {
        float* h = m_.h_.data();
        if (post.data) m_.norm(h, h, T_, post, Vector{});
        k_.residual_forward(m_.x_.data(), m_.x_.data(), h, T_ * s_.hidden_size);
    }

    void head() {
        cache_.n_past = pos0_ + T_;
        const int64_t C = s_.hidden_size, rows = all_ ? T_ : 1;
        const float* xn = nullptr;  // the final norm of the rows the logits read
        if (hidden_) {              // every row's: the last hidden state
            float* last = hidden_ + s_.n_layer * layer_stride_;
            m_.norm(last, m_.x_.data(), T_, m_.w_.output_norm, m_.w_.output_norm_b);
            xn = all_ ? last : last + (T_ - 1) * C;
        } else if (logits_) {
            const float* x = all_ ? m_.x_.data() : m_.x_.data() + (T_ - 1) * C;
            m_.norm(m_.xn_.data(), x, rows, m_.w_.output_norm, m_.w_.output_norm_b);
            xn = m_.xn_.data();
        }
        if (!logits_) return;
        m_.linear(logits_, xn, rows, m_.w_.output, Vector{});
        if (s_.final_softcap > 0.0f) softcap_span(logits_, rows * s_.vocab_size, s_.final_softcap);
    }

private:
    float* buf(Buf b) {
        const int64_t KVD = s_.n_kv_head * s_.head_dim;
        switch (b) {
            case Buf::XN: return m_.xn_.data();
            case Buf::Q: return m_.q_.data();
            case Buf::K: return kc_ + pos0_ * KVD;  // the chunk's keys and values go straight into the cache
            case Buf::V: return vc_ + pos0_ * KVD;
            case Buf::ATT: return m_.att_.data();
            case Buf::H: return m_.h_.data();
            case Buf::GATE: return m_.gate_.data();
            case Buf::UP: return m_.up_.data();
        }
        return nullptr;
    }

    DecoderModel& m_;
    const DecoderSpec& s_;
    const KernelTable& k_;
    const int32_t* tokens_;
    const int64_t T_;
    float* logits_;
    const bool all_;
    float* hidden_;
    const int64_t layer_stride_;
    KVCache& cache_;
    const int64_t pos0_;
    int64_t l_ = 0;
    float* kc_ = nullptr;
    float* vc_ = nullptr;
};

void DecoderModel::forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits, float* hidden,
                                 int64_t layer_stride) {
    Prefill e(*this, tokens, T, logits, all_logits, hidden, layer_stride);
    graph(e);
}

void DecoderModel::decode_batch(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits) {
    if (B <= 0) throw std::invalid_argument("decode_batch needs at least one sequence");
    if (!decode_packed_)
        throw std::invalid_argument(
            "decode_batch needs every matrix packed: columns a multiple of 32 and the model's widths multiples "
            "of 16");
    if (B > kDecoderChunk)
        throw std::invalid_argument("decode_batch takes at most " + std::to_string(kDecoderChunk) + " sequences");
    std::vector<bool> seen(caches_.size(), false);
    for (int64_t b = 0; b < B; b++) {
        if (seqs[b] < 0 || seqs[b] >= n_seq())
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " is out of range [0, " +
                                        std::to_string(n_seq()) + ")");
        if (seen[size_t(seqs[b])])
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " appears twice in one step");
        seen[size_t(seqs[b])] = true;
        if (tokens[b] < 0 || tokens[b] >= spec_.vocab_size)
            throw std::invalid_argument("token id " + std::to_string(tokens[b]) + " of sequence " +
                                        std::to_string(seqs[b]) + " is out of range [0, " +
                                        std::to_string(spec_.vocab_size) + ")");
        if (caches_[size_t(seqs[b])].n_past + 1 > spec_.n_ctx)
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " already holds n_ctx=" +
                                        std::to_string(spec_.n_ctx) + " positions");
    }
    ensure_work();
    decode_timed(tokens, seqs, B, logits);
}

// What the threads of one decode step share: B sequences' positions and
// caches, the step's barrier, and the rows every thread reads (projection
// outputs, attention, the MLP's hidden rows: the model's chunk buffers).
struct DecoderModel::DecodeStep {
    const int32_t* tokens;
    int64_t B;
    float* logits;
    std::vector<int64_t> pos;
    std::vector<KVCache*> cache;
    StepBarrier barrier;
};

// One thread's part of a decode step. Every thread keeps its own copy of
// the B residual rows and norms them itself, so it waits only where it
// reads rows another one wrote: after q/k/v, attention, the output
// projection, the MLP's first projections and its down projection (5 per
// layer). Work is split over output rows in groups of 16, never over k,
// and products sum in one order (common.h's gemm_k_block): a position's
// logits have the same bits whether it was decoded alone, beside other
// sequences or prefilled, on any number of threads.
class DecoderModel::Decode {
public:
    Decode(DecoderModel& m, DecodeStep& st, float* scratch, int tid, int nth)
        : m_(m), s_(m.spec_), k_(kernels()), st_(st), B_(st.B), tid_(tid), nth_(nth) {
        const int64_t C = s_.hidden_size;
        xr_ = scratch;            // this thread's residual rows (B, C)
        xn_ = scratch + B_ * C;   // and their norm (B, C)
        hn_ = xn_ + B_ * C;       // post-normed projection rows (B, C)
        aw_ = scratch + round_up(3 * B_ * C, 16);
    }

    // per-thread scratch floats: residual, normed and post-normed rows, attention work
    static int64_t scratch_floats(const DecoderSpec& s, int64_t B) {
        return round_up(3 * B * s.hidden_size, 16) + round_up(attention_thread_floats(s.head_dim), 16);
    }

    void embed() { m_.embed(xr_, st_.tokens, st_.pos.data(), B_); }

    void layer(int64_t l) { l_ = l; }

    void norm(const Vector& w, const Vector& b) { norm_rows(xn_, xr_, w, b); }

    void project(Buf in, std::initializer_list<Proj> ps, bool activate = false) {
        const float* x = buf(in);
        int64_t u0, u1;
        if (!activate) {
            // one range over the row groups of all the matrices together
            int64_t groups = 0;
            for (const Proj& p : ps) groups += ceil_groups(p.w->rows);
            thread_range(groups, tid_, nth_, u0, u1);
            int64_t g0 = 0;
            for (const Proj& p : ps) {
                const int64_t gn = ceil_groups(p.w->rows);
                const int64_t a = std::max(u0, g0) - g0, e = std::min(u1, g0 + gn) - g0;
                if (a < e) matvec(buf(p.out), x, *p.w, *p.b, a * kPackRows, std::min(e * kPackRows, p.w->rows));
                g0 += gn;
            }
        } else {
            // the same row groups of each matrix, so this thread can apply the
            // activation to its part of the down projection's input
            const int64_t FF = s_.ffn_size;
            thread_range(ceil_groups(FF), tid_, nth_, u0, u1);
            const int64_t r0 = u0 * kPackRows, r1 = std::min(u1 * kPackRows, FF);
            if (r0 < r1) {
                for (const Proj& p : ps) matvec(buf(p.out), x, *p.w, *p.b, r0, r1);
                float* gate = m_.gate_.data();
                const float* up = m_.up_.data();
                for (int64_t b = 0; b < B_; b++) {
                    float* g = gate + b * FF + r0;
                    if (s_.act == Activation::SiluGLU)
                        k_.swiglu_rows(g, g, up + b * FF + r0, r1 - r0);
                    else if (s_.act == Activation::GeluGLU)
                        k_.geglu_rows(g, g, up + b * FF + r0, r1 - r0);
                    else
                        k_.gelu_rows(g, g, r1 - r0);
                }
            }
        }
        st_.barrier.wait(nth_);
    }

    void attend(const DecoderLayer& L) {
        // per (sequence, kv head): its key normed and rotated into the cache,
        // its value into the cache, its query heads normed and rotated, then
        // its attention units
        const int64_t HS = s_.head_dim, NH = s_.n_head, NKV = s_.n_kv_head, QD = NH * HS, KVD = NKV * HS;
        const int64_t half = s_.rope_dim / 2, lo = l_ * s_.n_ctx * KVD;  // this layer's cache rows
        const int64_t per_kv = attention_units(1, NH, NKV, 1) / NKV;      // attention units per kv head
        const int G = int(NH / NKV);
        const float eps = s_.norm_eps;
        float* q = m_.q_.data();
        float* kn = m_.k_.data();
        const float* vn = m_.v_.data();
        float* att = m_.att_.data();
        int64_t u0, u1;
        thread_range(B_ * NKV, tid_, nth_, u0, u1);
        for (int64_t u = u0; u < u1; u++) {
            const int64_t b = u / NKV, kh = u % NKV, p = st_.pos[size_t(b)];
            const KVCache& c = *st_.cache[size_t(b)];
            float* kc = c.k.get() + lo;
            float* vc = c.v.get() + lo;
            float* kr = kn + b * KVD + kh * HS;
            float* qh = q + b * QD + kh * G * HS;
            if (L.k_norm.data) k_.rmsnorm_rows(kr, kr, L.k_norm.data, 1, HS, eps);
            if (L.q_norm.data) k_.rmsnorm_rows(qh, qh, L.q_norm.data, G, HS, eps);
            if (s_.rope != RopeKind::None) {
                const int tb = s_.rope_table[size_t(l_)];
                const float* cs = m_.w_.rope_cos[size_t(tb)].data() + p * half;
                const float* sn = m_.w_.rope_sin[size_t(tb)].data() + p * half;
                const bool interleaved = s_.rope == RopeKind::Interleaved;
                k_.rope_rows(kc + p * KVD + kh * HS, kr, cs, sn, 1, HS, s_.rope_dim, interleaved);
                k_.rope_rows(qh, qh, cs, sn, G, HS, s_.rope_dim, interleaved);
            } else {
                std::memcpy(kc + p * KVD + kh * HS, kr, sizeof(float) * size_t(HS));
            }
            std::memcpy(vc + p * KVD + kh * HS, vn + b * KVD + kh * HS, sizeof(float) * size_t(HS));
            const int64_t q_strides[3] = {0, HS, QD}, kv_strides[3] = {0, HS, KVD};
            k_.attention_forward_units(att + b * QD, q + b * QD, kc, vc, nullptr, q_strides, q_strides, kv_strides,
                                       kv_strides, nullptr, 1, NH, NKV, 1, p + 1, HS, attn_scale(s_), true, p,
                                       s_.attn_softcap, s_.window[size_t(l_)], kh * per_kv, (kh + 1) * per_kv, aw_);
        }
        st_.barrier.wait(nth_);
    }

    void residual(const Vector& post) {
        // on this thread's copy of the residual rows
        const float* add = m_.h_.data();
        if (post.data) {
            norm_rows(hn_, add, post, Vector{});
            add = hn_;
        }
        for (int64_t i = 0; i < B_ * s_.hidden_size; i++) xr_[i] += add[i];
    }

    void head() {
        if (!st_.logits) return;
        const int64_t V = s_.vocab_size;
        norm_rows(xn_, xr_, m_.w_.output_norm, m_.w_.output_norm_b);
        int64_t u0, u1;
        thread_range(ceil_groups(V), tid_, nth_, u0, u1);
        const int64_t r0 = u0 * kPackRows, r1 = std::min(u1 * kPackRows, V);
        matvec(st_.logits, xn_, m_.w_.output, Vector{}, r0, r1);
        if (s_.final_softcap > 0.0f && r0 < r1)
            for (int64_t b = 0; b < B_; b++) softcap_span(st_.logits + b * V + r0, r1 - r0, s_.final_softcap);
    }

private:
    static int64_t ceil_groups(int64_t rows) { return (rows + kPackRows - 1) / kPackRows; }

    float* buf(Buf b) {
        switch (b) {
            case Buf::XN: return xn_;
            case Buf::Q: return m_.q_.data();
            case Buf::K: return m_.k_.data();  // normed and rotated into the cache by attend
            case Buf::V: return m_.v_.data();
            case Buf::ATT: return m_.att_.data();
            case Buf::H: return m_.h_.data();
            case Buf::GATE: return m_.gate_.data();
            case Buf::UP: return m_.up_.data();
        }
        return nullptr;
    }

    // rows [r0, r1) of w for the B rows of x (B, w.cols) [+ bias] -> out (B, w.rows)
    void matvec(float* out, const float* x, const Weight& w, const Vector& bias, int64_t r0, int64_t r1) {
        if (r0 >= r1) return;
        const int64_t K = w.cols, ldo = w.rows;
        k_.qpack_matvec(out, ldo, x, K, B_, w.packed, r0, r1, w.rows, K, int(w.type));
        if (bias.data)
            for (int64_t b = 0; b < B_; b++)
                for (int64_t r = r0; r < r1; r++) out[b * ldo + r] += bias.data[r];
    }

    // the B rows of x (B, C) normed -> out (B, C), on this thread
    void norm_rows(float* out, const float* x, const Vector& w, const Vector& b) {
        if (s_.norm == NormKind::Layer)
            k_.layernorm_rows(out, x, w.data, b.data, B_, s_.hidden_size, s_.norm_eps);
        else
            k_.rmsnorm_rows(out, x, w.data, B_, s_.hidden_size, s_.norm_eps);
    }

    DecoderModel& m_;
    const DecoderSpec& s_;
    const KernelTable& k_;
    DecodeStep& st_;
    const int64_t B_;
    const int tid_, nth_;
    int64_t l_ = 0;
    float *xr_, *xn_, *hn_, *aw_;
};

void DecoderModel::decode_rows(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits, int nt) {
    // tokens (B) of sequences seqs (B), each at its own position n_past -> logits (B, V) or none
    DecodeStep st{tokens, B, logits, std::vector<int64_t>(size_t(B)), std::vector<KVCache*>(size_t(B)), {}};
    for (int64_t b = 0; b < B; b++) {
        st.cache[size_t(b)] = &caches_[size_t(seqs[b])];
        st.pos[size_t(b)] = st.cache[size_t(b)]->n_past;
    }
    const int64_t per = Decode::scratch_floats(spec_, B);
    const size_t need = size_t(int64_t(nt) * per + 16);
    if (dec_.size() < need) dec_.resize(need);
    float* base = align64(dec_.data());
    pool_.run(nt, [&](int tid, int nth) {
        Decode e(*this, st, base + int64_t(tid) * per, tid, nth);
        graph(e);
    });
    for (int64_t b = 0; b < B; b++) st.cache[size_t(b)]->n_past = st.pos[size_t(b)] + 1;
}

}  // namespace pyllm
