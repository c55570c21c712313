// The llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU,
// tied or separate output head) over GGUF weights, chunked prefill + decode.
// Not sampling, tokenization or anything Python: one call per step.
#include "llama.h"

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

    // Block-type matrices are repacked once (groups of 4 rows, see common.h)
    // and their mapped pages released, so the copy replaces them in memory.
    // The token embedding keeps its mapped rows (a few are read per step);
    // a tied output head is packed as the output matrix.
    for (Layer& L : layers_)
        for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) pack(*w);
    pack(output_);
    decode_packed_ = output_.packed != nullptr;
    for (const Layer& L : layers_)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            decode_packed_ = decode_packed_ && w->packed;
    // (packing needs K a multiple of 32: C, QD and FF; the step splits
    // outputs in whole groups of 16 rows: QD, KVD, C and FF)
    decode_packed_ = decode_packed_ && C % kQuantBlock == 0 && QD % kQuantBlock == 0 &&
                     cfg.ffn_size % kQuantBlock == 0 && KVD % kPackRows == 0;

    // rotary tables for every cache position (n_ctx, HS/2)
    const int64_t half = HS / 2;
    rope_cos_.resize(size_t(cfg.n_ctx * half));
    rope_sin_.resize(size_t(cfg.n_ctx * half));
    std::vector<int64_t> pos(size_t(cfg.n_ctx));
    for (int64_t i = 0; i < cfg.n_ctx; i++) pos[size_t(i)] = i;
    kernels().rope_cache(rope_cos_.data(), rope_sin_.data(), pos.data(), cfg.n_ctx, HS, cfg.rope_theta);

    caches_.push_back(new_cache());

    const int64_t T = kLlamaChunk;
    x_.resize(size_t(T * C));
    h_.resize(size_t(T * std::max(C, QD)));
    q_.resize(size_t(T * QD));
    k_.resize(size_t(T * KVD));
    v_.resize(size_t(T * KVD));
    att_.resize(size_t(T * QD));
    gate_.resize(size_t(T * cfg.ffn_size));
    up_.resize(size_t(T * cfg.ffn_size));
    ensure_work();
}

void LlamaModel::ensure_work() {
    // kernel scratch for the current thread count, grown (never inside a
    // parallel region) when set_num_threads raised it; zero-filled, so it is
    // sized for the threads in use rather than for a generous maximum
    const int nt = num_threads();
    if (nt <= work_threads_) return;
    const int64_t C = cfg_.hidden_size, QD = cfg_.n_head * cfg_.head_dim, T = kLlamaChunk;
    int64_t work = attention_work_floats(cfg_.head_dim, nt);
    for (int64_t K : {C, QD, cfg_.ffn_size})
        for (uint32_t type : {tok_embd_.type, output_.type, layers_[0].wq.type, layers_[0].w_down.type})
            work = std::max({work, qmatmul_work_floats(K, nt), qpack_work_floats(T, K, int(type), nt)});
    work_.resize(size_t(work) + 16);
    work_threads_ = nt;
}

void LlamaModel::pack(Weight& w) {
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
    release_mapped(w.data, w.rows * w.row_bytes);
    w.packed = buf;
}

void LlamaModel::linear(float* out, const float* x, int64_t M, const Weight& w) {
    // x (M, cols) @ w^T -> out (M, rows)
    float* work = align64(work_.data());
    if (w.packed)
        kernels().qpack_matmul(out, x, w.packed, M, w.rows, w.cols, int(w.type), work);
    else
        kernels().qmatmul(out, x, w.data, M, w.rows, w.cols, int(w.type), work);
}

LlamaModel::KVCache LlamaModel::new_cache() const {
    const size_t n = size_t(cfg_.n_layer * cfg_.n_ctx * cfg_.n_kv_head * cfg_.head_dim);
    KVCache c;
    c.k.reset(static_cast<float*>(std::calloc(n, sizeof(float))));
    c.v.reset(static_cast<float*>(std::calloc(n, sizeof(float))));
    if (!c.k || !c.v) throw std::bad_alloc();
    return c;
}

void LlamaModel::set_n_seq(int64_t n) {
    if (n < 1) throw std::invalid_argument("the number of sequences must be at least 1, got " + std::to_string(n));
    while (int64_t(caches_.size()) > n) caches_.pop_back();
    while (int64_t(caches_.size()) < n) caches_.push_back(new_cache());
    if (seq_ >= caches_.size()) seq_ = 0;
}

void LlamaModel::select_seq(int64_t s) {
    if (s < 0 || s >= n_seq())
        throw std::invalid_argument("sequence " + std::to_string(s) + " is out of range [0, " +
                                    std::to_string(n_seq()) + ")");
    seq_ = size_t(s);
}

void LlamaModel::copy_seq(int64_t src, int64_t dst) {
    for (int64_t s : {src, dst})
        if (s < 0 || s >= n_seq())
            throw std::invalid_argument("sequence " + std::to_string(s) + " is out of range [0, " +
                                        std::to_string(n_seq()) + ")");
    if (src == dst) return;
    const KVCache& a = caches_[size_t(src)];
    KVCache& b = caches_[size_t(dst)];
    const int64_t KVD = cfg_.n_kv_head * cfg_.head_dim, n = a.n_past * KVD;
    for (int64_t l = 0; l < cfg_.n_layer; l++) {
        const int64_t off = l * cfg_.n_ctx * KVD;  // layer l's rows (n_ctx, NKV*HS)
        std::memcpy(b.k.get() + off, a.k.get() + off, sizeof(float) * size_t(n));
        std::memcpy(b.v.get() + off, a.v.get() + off, sizeof(float) * size_t(n));
    }
    b.n_past = a.n_past;
}

void LlamaModel::truncate(int64_t n) {
    KVCache& c = caches_[seq_];
    if (n < 0 || n > c.n_past)
        throw std::invalid_argument("cannot keep " + std::to_string(n) + " cached positions of " +
                                    std::to_string(c.n_past));
    c.n_past = n;
}

void LlamaModel::forward(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
    if (T <= 0) throw std::invalid_argument("forward needs at least one token");
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= cfg_.vocab_size)
            throw std::invalid_argument("token id " + std::to_string(tokens[t]) + " at position " +
                                        std::to_string(t) + " is out of range [0, " +
                                        std::to_string(cfg_.vocab_size) + ")");
    if (n_past() + T > cfg_.n_ctx)
        throw std::invalid_argument(std::to_string(n_past()) + " cached + " + std::to_string(T) +
                                    " new tokens exceed the context length n_ctx=" +
                                    std::to_string(cfg_.n_ctx));
    ensure_work();
    if (T == 1 && decode_packed_) {
        const int64_t seq = int64_t(seq_);
        decode_timed(tokens, &seq, 1, logits);
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += kLlamaChunk) {
        const int64_t n = std::min(kLlamaChunk, T - t0);
        const bool last = t0 + n == T;
        const int nt = prefill_threads_.pick(max_threads());
        ScopedThreads scoped(nt);  // the kernels' OpenMP regions
        const auto start = std::chrono::steady_clock::now();
        if (all_logits)
            forward_chunk(tokens + t0, n, logits + t0 * cfg_.vocab_size, true);
        else
            forward_chunk(tokens + t0, n, last ? logits : nullptr, false);
        prefill_threads_.record(nt, seconds_since(start), double(n));
    }
}

void LlamaModel::decode_timed(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits) {
    const int nt = decode_threads_.pick(max_threads());
    const auto start = std::chrono::steady_clock::now();
    decode_rows(tokens, seqs, B, logits, nt);
    decode_threads_.record(nt, seconds_since(start), double(B));
}

void LlamaModel::forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
    // tokens (T) at positions pos0.. -> logits (T,V) or (V) for the last, or none
    const KernelTable& k = kernels();
    const int64_t C = cfg_.hidden_size, HS = cfg_.head_dim, NH = cfg_.n_head, NKV = cfg_.n_kv_head;
    const int64_t QD = NH * HS, KVD = NKV * HS, FF = cfg_.ffn_size, half = HS / 2;
    KVCache& cache = caches_[seq_];
    const int64_t pos0 = cache.n_past, S = pos0 + T;
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
        float* kc = cache.k.get() + l * cfg_.n_ctx * KVD;  // key cache (n_ctx, NKV*HS)
        float* vc = cache.v.get() + l * cfg_.n_ctx * KVD;  // value cache (n_ctx, NKV*HS)

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
    cache.n_past = S;

    if (!logits) return;
    if (all_logits) {
        k.rmsnorm_forward(h, x, output_norm_, T, C, cfg_.rms_eps);
        linear(logits, h, T, output_);
    } else {
        k.rmsnorm_forward(h, x + (T - 1) * C, output_norm_, 1, C, cfg_.rms_eps);
        linear(logits, h, 1, output_);
    }
}

void LlamaModel::decode_batch(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits) {
    if (B <= 0) throw std::invalid_argument("decode_batch needs at least one sequence");
    if (!decode_packed_) throw std::invalid_argument("decode_batch needs block-quantized (Q8_0, Q4_0, Q4_1) weights");
    if (B > kLlamaChunk)
        throw std::invalid_argument("decode_batch takes at most " + std::to_string(kLlamaChunk) + " sequences");
    std::vector<bool> seen(caches_.size(), false);
    for (int64_t b = 0; b < B; b++) {
        if (seqs[b] < 0 || seqs[b] >= n_seq())
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " is out of range [0, " +
                                        std::to_string(n_seq()) + ")");
        if (seen[size_t(seqs[b])])
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " appears twice in one step");
        seen[size_t(seqs[b])] = true;
        if (tokens[b] < 0 || tokens[b] >= cfg_.vocab_size)
            throw std::invalid_argument("token id " + std::to_string(tokens[b]) + " of sequence " +
                                        std::to_string(seqs[b]) + " is out of range [0, " +
                                        std::to_string(cfg_.vocab_size) + ")");
        if (caches_[size_t(seqs[b])].n_past + 1 > cfg_.n_ctx)
            throw std::invalid_argument("sequence " + std::to_string(seqs[b]) + " already holds n_ctx=" +
                                        std::to_string(cfg_.n_ctx) + " positions");
    }
    ensure_work();
    decode_timed(tokens, seqs, B, logits);
}

void LlamaModel::decode_rows(const int32_t* tokens, const int64_t* seqs, int64_t B, float* logits, int nt) {
    // tokens (B) of sequences seqs (B), each at its own position n_past -> logits (B, V) or none.
    // One job on the model's thread pool for the whole step, with the
    // arithmetic of forward_chunk row for row (the same kernels, or their
    // serial twins, and products that sum in one order: common.h's
    // gemm_k_block): a position's logits have the same bits whether it was
    // decoded alone, beside other sequences or prefilled, on any number of
    // threads. Every thread keeps its own copy of the B residual rows and
    // norms them itself, so barriers are needed only where a thread reads
    // rows another one wrote: after q/k/v, attention, the output projection,
    // gate/up and down (5 per layer). Work is split over output rows in
    // groups of 16, never over k.
    const KernelTable& k = kernels();
    const int64_t C = cfg_.hidden_size, HS = cfg_.head_dim, NH = cfg_.n_head, NKV = cfg_.n_kv_head;
    const int64_t QD = NH * HS, KVD = NKV * HS, FF = cfg_.ffn_size, half = HS / 2, V = cfg_.vocab_size;
    const float eps = cfg_.rms_eps, scale = 1.0f / std::sqrt(float(HS));
    const int64_t units = attention_units(1, NH, NKV, 1), per_kv = units / NKV;  // attention units per kv head

    // per thread scratch: residual rows (B, C), normed rows (B, C), attention work
    const int64_t per = round_up(2 * B * C, 16) + round_up(attention_thread_floats(HS), 16);
    const size_t need = size_t(int64_t(nt) * per + 16);
    if (dec_.size() < need) dec_.resize(need);
    float* base = align64(dec_.data());

    float* q = q_.data();      // (B, QD)
    float* att = att_.data();  // (B, QD)
    float* hb = h_.data();     // projection outputs (B, C)
    float* kn = k_.data();     // new keys (B, KVD), before RoPE
    float* vn = v_.data();     // new values (B, KVD)
    float* gate = gate_.data();  // (B, FF)
    float* up = up_.data();
    std::vector<int64_t> pos(static_cast<size_t>(B));
    std::vector<KVCache*> cache(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; b++) {
        cache[size_t(b)] = &caches_[size_t(seqs[b])];
        pos[size_t(b)] = cache[size_t(b)]->n_past;
    }
    const int64_t gq = QD / kPackRows, gkv = KVD / kPackRows;  // row groups (decode_packed_: whole groups)
    StepBarrier barrier;

    // rows [r0, r1) of w for the B rows of x (B, K) -> out (B, ldo)
    const auto matvec = [&](float* out, int64_t ldo, const float* x, int64_t K, const Weight& w, int64_t r0,
                            int64_t r1) {
        k.qpack_matvec(out, ldo, x, K, B, w.packed, r0, r1, w.rows, K, int(w.type));
    };

    pool_.run(nt, [&](int tid, int nth) {
        float* my = base + int64_t(tid) * per;
        float* xr = my;          // this thread's residual rows (B, C)
        float* xn = my + B * C;  // and their norm (B, C)
        float* aw = my + round_up(2 * B * C, 16);
        for (int64_t b = 0; b < B; b++)
            k.dequantize_row(xr + b * C,
                             static_cast<const uint8_t*>(tok_embd_.data) + int64_t(tokens[b]) * tok_embd_.row_bytes,
                             C, int(tok_embd_.type));
        int64_t u0, u1;

        for (int64_t l = 0; l < cfg_.n_layer; l++) {
            const Layer& L = layers_[size_t(l)];
            const int64_t lo = l * cfg_.n_ctx * KVD;  // this layer's cache (n_ctx, NKV*HS)

            // q, k, v: one range over their row groups together
            k.rmsnorm_rows(xn, xr, L.attn_norm, B, C, eps);
            thread_range(gq + 2 * gkv, tid, nth, u0, u1);
            const Weight* ws[3] = {&L.wq, &L.wk, &L.wv};
            float* outs[3] = {q, kn, vn};
            const int64_t lds[3] = {QD, KVD, KVD};
            const int64_t g0s[3] = {0, gq, gq + gkv}, gns[3] = {gq, gkv, gkv};
            for (int i = 0; i < 3; i++) {
                const int64_t a = std::max(u0, g0s[i]) - g0s[i], e = std::min(u1, g0s[i] + gns[i]) - g0s[i];
                if (a < e) matvec(outs[i], lds[i], xn, C, *ws[i], a * kPackRows, e * kPackRows);
            }
            barrier.wait(nth);
            // per (sequence, kv head): RoPE on its key (into the cache) and
            // query heads, its value into the cache, then its attention units
            thread_range(B * NKV, tid, nth, u0, u1);
            for (int64_t u = u0; u < u1; u++) {
                const int64_t b = u / NKV, kh = u % NKV, p = pos[size_t(b)];
                const KVCache& c = *cache[size_t(b)];
                const float* cs = rope_cos_.data() + p * half;
                const float* sn = rope_sin_.data() + p * half;
                float* kc = c.k.get() + lo, *vc = c.v.get() + lo;
                // GGUF llama stores Q/K rows permuted for the interleaved-pair rotation
                k.rope_rows(kc + p * KVD + kh * HS, kn + b * KVD + kh * HS, cs, sn, 1, HS, true);
                std::memcpy(vc + p * KVD + kh * HS, vn + b * KVD + kh * HS, sizeof(float) * size_t(HS));
                float* qh = q + b * QD + kh * (NH / NKV) * HS;
                k.rope_rows(qh, qh, cs, sn, NH / NKV, HS, true);
                const int64_t q_strides[3] = {0, HS, QD}, kv_strides[3] = {0, HS, KVD};
                k.attention_forward_units(att + b * QD, q + b * QD, kc, vc, nullptr, q_strides, q_strides, kv_strides,
                                          kv_strides, nullptr, 1, NH, NKV, 1, p + 1, HS, scale, true, p,
                                          kh * per_kv, (kh + 1) * per_kv, aw);
            }
            barrier.wait(nth);
            thread_range(C / kPackRows, tid, nth, u0, u1);
            matvec(hb, C, att, QD, L.wo, u0 * kPackRows, u1 * kPackRows);
            barrier.wait(nth);
            for (int64_t i = 0; i < B * C; i++) xr[i] += hb[i];

            // MLP: gate and up over the same row groups, so this thread can
            // apply SwiGLU to its part of the down projection's input
            k.rmsnorm_rows(xn, xr, L.ffn_norm, B, C, eps);
            thread_range(FF / kPackRows, tid, nth, u0, u1);
            if (u0 < u1) {
                const int64_t r0 = u0 * kPackRows, r1 = u1 * kPackRows;
                matvec(gate, FF, xn, C, L.w_gate, r0, r1);
                matvec(up, FF, xn, C, L.w_up, r0, r1);
                for (int64_t b = 0; b < B; b++)
                    k.swiglu_rows(gate + b * FF + r0, gate + b * FF + r0, up + b * FF + r0, r1 - r0);
            }
            barrier.wait(nth);
            thread_range(C / kPackRows, tid, nth, u0, u1);
            matvec(hb, C, gate, FF, L.w_down, u0 * kPackRows, u1 * kPackRows);
            barrier.wait(nth);
            for (int64_t i = 0; i < B * C; i++) xr[i] += hb[i];
        }

        if (logits) {
            k.rmsnorm_rows(xn, xr, output_norm_, B, C, eps);
            thread_range((V + kPackRows - 1) / kPackRows, tid, nth, u0, u1);
            matvec(logits, V, xn, C, output_, u0 * kPackRows, std::min(u1 * kPackRows, V));
        }
    });
    for (int64_t b = 0; b < B; b++) cache[size_t(b)]->n_past = pos[size_t(b)] + 1;
}

}  // namespace pyllm
