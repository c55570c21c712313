# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# The per-row loops over the vocabulary behind pyllm.generation.logits_process: penalties, n-gram
# bans, top-k/top-p/min-p/typical masks, inverse-CDF sampling and the fused sampler. Not policy.
"""Cython core of :mod:`pyllm.generation.logits_process`.

Every function here takes C-contiguous ``scores (B,V) float32`` and history
``ids (B,T) int64`` arrays already checked by the Python layer, works row by
row without the GIL, and edits ``scores`` in place (the Python classes pass a
copy). Validation, defaults and ordering live in ``logits_process.py``; the
readable reference of every step is ``sampling_ref.py``.

Two paths share the same row-level stages, so they agree bit for bit:

* one processor at a time: a stage reads the row, marks which candidates it
  keeps, and writes ``-inf`` over the rest;
* ``fused_sample``: copy the row, apply the penalty ops to the few tokens they
  touch, pick the top-k candidates by partial selection (a min-heap whose
  threshold lets whole blocks of 16 scores be skipped), divide only those by
  the temperature, then run top-p, min-p and the draw on that short list.

Probabilities are always ``exp(score - max)`` in double summed in token-id
order. Tokens whose score is ``-inf`` add exact zeros to those sums, which is
why a short candidate list gives the same sums as the full row.
"""

from libc.math cimport exp, fabs, log, nextafterf, INFINITY
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from libcpp.utility cimport pair


cdef extern from *:
    """
    #include <string.h>
    /* Does any of x[0:16] exceed t (gt) / reach t (ge)? Four 4-float compares with GCC/Clang
       vector extensions (SSE2/NEON without -march flags), a scalar loop elsewhere. */
    #if defined(__GNUC__) || defined(__clang__)
    typedef float pyllm_f4 __attribute__((vector_size(16)));
    typedef int pyllm_i4 __attribute__((vector_size(16)));
    static inline pyllm_f4 pyllm_load4(const float* p) { pyllm_f4 v; memcpy(&v, p, 16); return v; }
    static inline int pyllm_any(pyllm_i4 m) { long long h[2]; memcpy(h, &m, 16); return (h[0] | h[1]) != 0; }
    static inline int pyllm_any_gt16(const float* x, float t) {
        pyllm_f4 v = {t, t, t, t};
        return pyllm_any((pyllm_load4(x) > v) | (pyllm_load4(x + 4) > v) |
                         (pyllm_load4(x + 8) > v) | (pyllm_load4(x + 12) > v));
    }
    static inline int pyllm_any_ge16(const float* x, float t) {
        pyllm_f4 v = {t, t, t, t};
        return pyllm_any((pyllm_load4(x) >= v) | (pyllm_load4(x + 4) >= v) |
                         (pyllm_load4(x + 8) >= v) | (pyllm_load4(x + 12) >= v));
    }
    #else
    static inline int pyllm_any_gt16(const float* x, float t) {
        int hits = 0; for (int j = 0; j < 16; ++j) hits |= x[j] > t; return hits;
    }
    static inline int pyllm_any_ge16(const float* x, float t) {
        int hits = 0; for (int j = 0; j < 16; ++j) hits |= x[j] >= t; return hits;
    }
    #endif
    """
    bint any_gt16 "pyllm_any_gt16"(const float* x, float t) noexcept nogil
    bint any_ge16 "pyllm_any_ge16"(const float* x, float t) noexcept nogil


cdef extern from "<algorithm>" namespace "std" nogil:
    void sort[Iter](Iter first, Iter last)
    void nth_element[Iter](Iter first, Iter nth, Iter last)


# kinds of penalty op understood by fused_sample (the Python layer encodes its processors as these)
cdef enum:
    K_REPETITION = 1     # a: penalty;  start: prompt_ignore_length
    K_FREQ_PRESENCE = 2  # a: frequency, b: presence;  start: prompt_ignore_length
    K_NGRAM = 3          # a: ngram size
    K_BAN = 4            # while T < a: ban_list[ban_off[i]:ban_off[i+1]] set to -inf (eos)

OP_REPETITION = K_REPETITION
OP_FREQ_PRESENCE = K_FREQ_PRESENCE
OP_NGRAM = K_NGRAM
OP_BAN = K_BAN

cdef enum:
    BLOCK = 16        # scores tested at once against a threshold before looking at any one


cdef struct Scratch:
    # per-call buffers; V is the vocabulary size, T the history length
    float* y           # (V) the row being processed (fused path)
    int32_t* idx       # (V) candidate token ids, ascending
    float* val         # (V) candidate scores
    double* e          # (V) exp(score - max) of each candidate
    uint64_t* keys     # (V) rank keys: score descending, then candidate position
    unsigned char* keep  # (V) stage verdict per candidate
    float* heap        # (V) min-heap of the k largest scores
    int64_t* hist      # (T) sorted copy of a history row
    int64_t* cnt       # (T) run lengths / banned ids


cdef inline Py_ssize_t scratch_bytes(Py_ssize_t V, Py_ssize_t T) noexcept nogil:
    cdef Py_ssize_t v = V if V > 0 else 1
    cdef Py_ssize_t t = T if T > 0 else 1
    return v * (4 + 4 + 4 + 8 + 8 + 1 + 4) + t * 16 + 64


cdef void scratch_carve(Scratch* s, char* p, Py_ssize_t V, Py_ssize_t T) noexcept nogil:
    # p: scratch_bytes(V, T) bytes, 8-byte aligned
    cdef Py_ssize_t v = V if V > 0 else 1
    cdef Py_ssize_t t = T if T > 0 else 1
    s.e = <double*>p
    s.keys = <uint64_t*>(p + 8 * v)
    s.hist = <int64_t*>(p + 16 * v)
    s.cnt = <int64_t*>(p + 16 * v + 8 * t)
    p = p + 16 * v + 16 * t
    s.y = <float*>p
    s.val = <float*>(p + 4 * v)
    s.heap = <float*>(p + 8 * v)
    s.idx = <int32_t*>(p + 12 * v)
    s.keep = <unsigned char*>(p + 16 * v)


cdef int scratch_alloc(Scratch* s, Py_ssize_t V, Py_ssize_t T) noexcept nogil:
    cdef char* p = <char*>malloc(scratch_bytes(V, T))
    if p == NULL:
        return -1
    scratch_carve(s, p, V, T)
    return 0


cdef inline void scratch_free(Scratch* s) noexcept nogil:
    free(s.e)


# ---------------------------------------------------------------- penalties on the history

cdef Py_ssize_t sorted_runs(const int64_t* h, Py_ssize_t T, Scratch* s) noexcept nogil:
    # h (T) -> s.hist[:n] the distinct ids ascending, s.cnt[:n] how often each occurs; returns n
    cdef Py_ssize_t i, n = 0
    if T <= 0:
        return 0
    memcpy(s.hist, h, T * sizeof(int64_t))
    sort(s.hist, s.hist + T)
    for i in range(T):
        if n > 0 and s.hist[n - 1] == s.hist[i]:
            s.cnt[n - 1] += 1
        else:
            s.hist[n] = s.hist[i]
            s.cnt[n] = 1
            n += 1
    return n


cdef void repetition_row(float* y, Py_ssize_t V, const int64_t* h, Py_ssize_t T, float penalty,
                         Scratch* s) noexcept nogil:
    # every distinct id of h (T) once: negative scores times penalty, the others divided by it
    cdef Py_ssize_t i, n = sorted_runs(h, T, s)
    cdef int64_t t
    cdef float v
    for i in range(n):
        t = s.hist[i]
        if 0 <= t < V:
            v = y[t]
            y[t] = v * penalty if v < 0 else v / penalty


cdef void freq_presence_row(float* y, Py_ssize_t V, const int64_t* h, Py_ssize_t T, double freq,
                            double presence, Scratch* s) noexcept nogil:
    # score -= freq * count + presence, over the distinct ids of h (T)
    cdef Py_ssize_t i, n = sorted_runs(h, T, s)
    cdef int64_t t
    for i in range(n):
        t = s.hist[i]
        if 0 <= t < V:
            y[t] = <float>(<double>y[t] - (freq * <double>s.cnt[i] + presence))


cdef Py_ssize_t ngram_banned(const int64_t* h, Py_ssize_t T, Py_ssize_t ngram, int64_t* out) noexcept nogil:
    # ids that would complete an n-gram already in h (T): the token after every earlier occurrence
    # of the last n-1 tokens. Windows are compared by a rolling hash, then token by token.
    cdef Py_ssize_t L = ngram - 1, i, j, n = 0
    cdef uint64_t P = 0x100000001B3ULL, top = 1, target = 0, cur = 0
    cdef const int64_t* prefix
    if ngram <= 0 or T < ngram:
        return 0
    if L == 0:  # unigrams: every token seen so far
        memcpy(out, h, T * sizeof(int64_t))
        return T
    prefix = h + (T - L)
    for j in range(L):
        target = target * P + <uint64_t>prefix[j]
        cur = cur * P + <uint64_t>h[j]
        if j > 0:
            top = top * P
    for i in range(T - ngram + 1):  # window h[i:i+L], its successor h[i+L]
        if i > 0:
            cur = (cur - <uint64_t>h[i - 1] * top) * P + <uint64_t>h[i + L - 1]
        if cur == target:
            j = 0
            while j < L and h[i + j] == prefix[j]:
                j += 1
            if j == L:
                out[n] = h[i + L]
                n += 1
    return n


cdef inline void ban_ids(float* y, Py_ssize_t V, const int64_t* ids, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if 0 <= ids[i] < V:
            y[ids[i]] = -INFINITY


# ---------------------------------------------------------------- selection and the warper stages

cdef inline void sift_down(float* h, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # restore the min-heap h (n) below position i
    cdef float v = h[i]
    cdef Py_ssize_t c
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and h[c + 1] < h[c]:
            c += 1
        if not (h[c] < v):
            break
        h[i] = h[c]
        i = c
    h[i] = v


cdef float kth_largest(const float* x, Py_ssize_t V, Py_ssize_t k, float* heap) noexcept nogil:
    # x (V), 1 <= k <= V -> the k-th largest score, counting repeats (torch.topk(x, k).values[-1])
    cdef Py_ssize_t i, j
    cdef float thr, v
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        sift_down(heap, k, i)
    thr = heap[0]
    i = k
    while i + BLOCK <= V:
        if any_gt16(x + i, thr):  # most blocks hold nothing above the k-th best so far
            for j in range(BLOCK):
                v = x[i + j]
                if v > thr:
                    heap[0] = v
                    sift_down(heap, k, 0)
                    thr = heap[0]
        i += BLOCK
    while i < V:
        v = x[i]
        if v > thr:
            heap[0] = v
            sift_down(heap, k, 0)
            thr = heap[0]
        i += 1
    return heap[0]


cdef Py_ssize_t first_argmax(const float* y, Py_ssize_t V) noexcept nogil:
    # lowest index of the largest value (0 when all are -inf), like np.argmax / torch.argmax
    cdef Py_ssize_t i = 0, j
    cdef float best = y[0]
    while i < V:
        if i + BLOCK <= V and not any_gt16(y + i, best):
            i += BLOCK
            continue
        j = i + BLOCK if i + BLOCK <= V else V
        while i < j:
            if y[i] > best:
                best = y[i]
            i += 1
    i = 0
    while i + BLOCK <= V and not any_ge16(y + i, best):
        i += BLOCK
    while i < V and not (y[i] >= best):
        i += 1
    return i if i < V else 0  # (NaN scores)


cdef inline uint64_t rank_key(float v, Py_ssize_t pos) noexcept nogil:
    # sorts ascending as (score descending, pos ascending); -0.0 ranks with +0.0
    cdef float f = v + 0.0
    cdef uint32_t b
    memcpy(&b, &f, 4)
    b = (~b) if (b >> 31) else (b | 0x80000000U)  # float order -> unsigned order
    return ((<uint64_t>(~b)) << 32) | <uint64_t>pos


cdef double exp_weights(const float* val, Py_ssize_t n, double* e) noexcept nogil:
    # val (n) -> e (n) = exp(val - max), returns their sum, added in candidate (= token id) order
    cdef Py_ssize_t i
    cdef double m = val[0], Z = 0.0
    for i in range(1, n):
        if val[i] > m:
            m = val[i]
    for i in range(n):
        e[i] = exp(<double>val[i] - m)
        Z += e[i]
    return Z


cdef Py_ssize_t top_ranked(const float* val, Py_ssize_t n, Py_ssize_t want, uint64_t* keys) noexcept nogil:
    # put the `want` best-ranked candidates, in rank order, in keys[:want]; returns how many that is
    cdef Py_ssize_t i
    for i in range(n):
        keys[i] = rank_key(val[i], i)
    if want >= n:
        sort(keys, keys + n)
        return n
    nth_element(keys, keys + want, keys + n)
    sort(keys, keys + want)
    return want


cdef void top_p_mark(const float* val, Py_ssize_t n, double top_p, Py_ssize_t min_keep,
                     Scratch* s) noexcept nogil:
    # keep[i] = candidate i is in the smallest best-ranked prefix whose probability reaches top_p
    # (and in the first min_keep). Ranks are extended 64, 512, 4096, ... until the prefix ends.
    cdef Py_ssize_t i, j, lim, L = -1, want = 64
    cdef double Z = exp_weights(val, n, s.e), cum
    if want < min_keep:
        want = min_keep
    while L < 0:
        lim = top_ranked(val, n, want, s.keys)
        cum = 0.0
        for j in range(lim):
            if j >= min_keep and cum >= top_p:
                L = j
                break
            cum += s.e[s.keys[j] & 0xFFFFFFFFU] / Z
        if L < 0:
            if lim >= min_keep and cum >= top_p:
                L = lim
            elif lim == n:
                L = n
            else:
                want *= 8
    for i in range(n):
        s.keep[i] = 0
    for j in range(L):
        s.keep[s.keys[j] & 0xFFFFFFFFU] = 1


cdef void min_p_mark(const float* val, Py_ssize_t n, double min_p, Py_ssize_t min_keep,
                     Scratch* s) noexcept nogil:
    # keep[i] = p_i >= min_p * p_max, or candidate i is among the min_keep best-ranked
    cdef Py_ssize_t i, j, lim
    cdef double Z = exp_weights(val, n, s.e)
    cdef double thr = min_p * (1.0 / Z)  # the best candidate has e = exp(0) = 1
    for i in range(n):
        s.keep[i] = not (s.e[i] / Z < thr)
    if min_keep > 1:
        lim = top_ranked(val, n, min_keep, s.keys)
        for j in range(lim):
            s.keep[s.keys[j] & 0xFFFFFFFFU] = 1


cdef Py_ssize_t compact(int32_t* idx, float* val, const unsigned char* keep, Py_ssize_t n) noexcept nogil:
    # drop the candidates not kept, preserving id order
    cdef Py_ssize_t i, m = 0
    for i in range(n):
        if keep[i]:
            idx[m] = idx[i]
            val[m] = val[i]
            m += 1
    return m


cdef Py_ssize_t pick(const float* val, Py_ssize_t n, double u, double* e) noexcept nogil:
    # inverse CDF in candidate (= token id) order: first i whose running sum exceeds u * total
    cdef Py_ssize_t i, last = -1
    cdef double Z, target, cum = 0.0
    if n == 0:
        return -1
    Z = exp_weights(val, n, e)
    target = u * Z
    for i in range(n):
        cum += e[i]
        if e[i] > 0.0:
            last = i
            if cum > target:
                return i
    return last  # u * Z rounded up to Z: the last token that has any probability


cdef Py_ssize_t finite_candidates(const float* y, Py_ssize_t V, int32_t* idx, float* val) noexcept nogil:
    # every token whose score is above -inf, in id order
    cdef Py_ssize_t i, n = 0
    cdef float v
    for i in range(V):
        v = y[i]
        if v > -INFINITY:
            idx[n] = <int32_t>i
            val[n] = v
            n += 1
    return n


cdef Py_ssize_t collect(const float* y, Py_ssize_t V, float lb, float t, bint divide, float v_min,
                        int32_t* idx, float* val) noexcept nogil:
    # tokens with y >= lb whose z = y / t (or y) is >= v_min and above -inf, in id order, with z
    cdef Py_ssize_t i = 0, j, n = 0
    cdef float z, x
    if not (lb > -INFINITY):
        lb = nextafterf(-INFINITY, 0.0)  # -FLT_MAX: leaves out -inf only
    while i < V:
        if i + BLOCK <= V and not any_ge16(y + i, lb):
            i += BLOCK
            continue
        j = i + BLOCK if i + BLOCK <= V else V
        while i < j:
            x = y[i]
            if x >= lb:
                z = x / t if divide else x
                if z >= v_min and z > -INFINITY:
                    idx[n] = <int32_t>i
                    val[n] = z
                    n += 1
            i += 1
    return n


cdef float division_floor(float w, float t, float v) noexcept nogil:
    # smallest float y <= w with y / t >= v = w / t (division is monotone), or -inf when that
    # is more than 64 floats below w (overflow/underflow): the caller then checks every token
    cdef float y = w, below
    cdef int steps
    for steps in range(64):
        below = nextafterf(y, -INFINITY)
        if not (below / t >= v):
            return y
        y = below
    return -INFINITY


# ---------------------------------------------------------------- one processor at a time (B,V) in place

def repetition_penalty_(float[:, ::1] scores, const int64_t[:, ::1] ids, Py_ssize_t start, float penalty):
    """HF RepetitionPenaltyLogitsProcessor on ids[:, start:], in place."""
    cdef Py_ssize_t b, B = scores.shape[0], V = scores.shape[1], T = ids.shape[1]
    cdef Scratch s
    if start > T:
        start = T
    with nogil:
        if scratch_alloc(&s, 1, T) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            repetition_row(&scores[b, 0], V, &ids[b, 0] + start if T > 0 else NULL, T - start, penalty, &s)
        scratch_free(&s)


def frequency_presence_penalty_(float[:, ::1] scores, const int64_t[:, ::1] ids, Py_ssize_t start,
                                double frequency, double presence):
    """score -= frequency * count + presence for each id of ids[:, start:], in place."""
    cdef Py_ssize_t b, B = scores.shape[0], V = scores.shape[1], T = ids.shape[1]
    cdef Scratch s
    if start > T:
        start = T
    with nogil:
        if scratch_alloc(&s, 1, T) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            freq_presence_row(&scores[b, 0], V, &ids[b, 0] + start if T > 0 else NULL, T - start,
                              frequency, presence, &s)
        scratch_free(&s)


def no_repeat_ngram_(float[:, ::1] scores, const int64_t[:, ::1] ids, Py_ssize_t ngram):
    """HF NoRepeatNGramLogitsProcessor, in place."""
    cdef Py_ssize_t b, n, B = scores.shape[0], V = scores.shape[1], T = ids.shape[1]
    cdef Scratch s
    if T < ngram:
        return
    with nogil:
        if scratch_alloc(&s, 1, T) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            n = ngram_banned(&ids[b, 0], T, ngram, s.cnt)
            ban_ids(&scores[b, 0], V, s.cnt, n)
        scratch_free(&s)


def top_k_(float[:, ::1] scores, Py_ssize_t k):
    """Scores below each row's k-th largest (1 <= k <= V) become -inf, in place."""
    cdef Py_ssize_t b, i, B = scores.shape[0], V = scores.shape[1]
    cdef float w
    cdef float* row
    cdef Scratch s
    with nogil:
        if scratch_alloc(&s, V, 0) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            row = &scores[b, 0]
            w = kth_largest(row, V, k, s.heap)
            for i in range(V):
                row[i] = -INFINITY if row[i] < w else row[i]
        scratch_free(&s)


cdef void write_back(float* row, const int32_t* idx, const unsigned char* keep, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not keep[i]:
            row[idx[i]] = -INFINITY


def top_p_(float[:, ::1] scores, double top_p, Py_ssize_t min_keep):
    """HF TopPLogitsWarper (ties ranked by lower id first), in place."""
    cdef Py_ssize_t b, n, B = scores.shape[0], V = scores.shape[1]
    cdef Scratch s
    with nogil:
        if scratch_alloc(&s, V, 0) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            n = finite_candidates(&scores[b, 0], V, s.idx, s.val)
            if n > 0:
                top_p_mark(s.val, n, top_p, min_keep, &s)
                write_back(&scores[b, 0], s.idx, s.keep, n)
        scratch_free(&s)


def min_p_(float[:, ::1] scores, double min_p, Py_ssize_t min_keep):
    """HF MinPLogitsWarper, in place."""
    cdef Py_ssize_t b, n, B = scores.shape[0], V = scores.shape[1]
    cdef Scratch s
    with nogil:
        if scratch_alloc(&s, V, 0) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            n = finite_candidates(&scores[b, 0], V, s.idx, s.val)
            if n > 0:
                min_p_mark(s.val, n, min_p, min_keep, &s)
                write_back(&scores[b, 0], s.idx, s.keep, n)
        scratch_free(&s)


def typical_(float[:, ::1] scores, double mass, Py_ssize_t min_keep):
    """HF TypicalLogitsWarper, in place: rank tokens by |-log p - entropy|, keep the mass."""
    cdef Py_ssize_t b, i, j, n, last, B = scores.shape[0], V = scores.shape[1]
    cdef double Z, m, lse, lp, ent, cum, thr
    cdef pair[double, int32_t]* order
    cdef Scratch s
    with nogil:
        order = <pair[double, int32_t]*>malloc((V if V > 0 else 1) * sizeof(pair[double, int32_t]))
        if order == NULL or scratch_alloc(&s, V, 0) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            n = finite_candidates(&scores[b, 0], V, s.idx, s.val)
            if n == 0:
                continue
            Z = exp_weights(s.val, n, s.e)
            m = s.val[0]
            for i in range(1, n):
                if s.val[i] > m:
                    m = s.val[i]
            lse = m + log(Z)  # log of the softmax denominator
            ent = 0.0
            for i in range(n):  # entropy in nats; tokens whose p underflows add 0
                if s.e[i] > 0.0:
                    ent -= (s.e[i] / Z) * (<double>s.val[i] - lse)
            for i in range(n):
                lp = <double>s.val[i] - lse
                order[i].first = fabs(-lp - ent)
                order[i].second = <int32_t>i
            sort(order, order + n)
            cum = 0.0
            last = n - 1
            for j in range(n):
                cum += s.e[order[j].second] / Z
                if cum >= mass:
                    last = j
                    break
            thr = order[last].first
            for i in range(n):
                s.keep[i] = 1
            for j in range(n):
                if j >= min_keep and order[j].first > thr:
                    s.keep[order[j].second] = 0
            write_back(&scores[b, 0], s.idx, s.keep, n)
        scratch_free(&s)
        free(order)


def sample_rows(const float[:, ::1] scores, const double[::1] u, int64_t[::1] out):
    """out[b] = token drawn from softmax(scores[b]) with the uniform u[b]; returns the first row
    with no finite score, or -1."""
    cdef Py_ssize_t b, n, p, B = scores.shape[0], V = scores.shape[1], bad = -1
    cdef Scratch s
    with nogil:
        if scratch_alloc(&s, V, 0) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            n = finite_candidates(&scores[b, 0], V, s.idx, s.val)
            p = pick(s.val, n, u[b], s.e)
            if p < 0:
                if bad < 0:
                    bad = b
                out[b] = 0
            else:
                out[b] = s.idx[p]
        scratch_free(&s)
    return bad


# ---------------------------------------------------------------- the fused path

def fused_scratch_bytes(Py_ssize_t V, Py_ssize_t T):
    """Bytes of the ``scratch`` buffer fused_sample needs for a vocabulary of V and T ids of history."""
    return scratch_bytes(V, T)


def fused_sample(const float[:, ::1] scores, const int64_t[:, ::1] ids,
                 const int32_t[::1] op_kind, const double[::1] op_a, const double[::1] op_b,
                 const int64_t[::1] op_start, const int64_t[::1] ban_list, const int64_t[::1] ban_off,
                 float temperature, Py_ssize_t top_k, double top_p, Py_ssize_t top_p_keep,
                 double min_p, Py_ssize_t min_p_keep, bint warp, const double[::1] u, bint do_sample,
                 int64_t[::1] out, uint64_t[::1] scratch=None):
    """Penalty ops in order, then temperature, top-k (0 or >= V: off), top-p (>= 1: off), min-p
    (0: off) and a draw with u[b] (or the first best token when not do_sample); scores untouched.
    ``warp`` says whether any warper is on. ``scratch``: at least fused_scratch_bytes(V, T)
    bytes reused across calls by one thread (else the call allocates its own).
    Returns the first row that had nothing to sample, or -1."""
    cdef Py_ssize_t b, i, o, n, p, k, B = scores.shape[0], V = scores.shape[1], T = ids.shape[1]
    cdef Py_ssize_t n_ops = op_kind.shape[0], start, bad = -1
    cdef bint divide = temperature != 1.0
    cdef bint own = scratch is None or scratch.shape[0] * 8 < scratch_bytes(V, T)
    cdef float w, v_min, lb, best
    cdef const int64_t* h
    cdef float* y
    cdef Scratch s
    if not own:
        scratch_carve(&s, <char*>&scratch[0], V, T)
    with nogil:
        if own and scratch_alloc(&s, V, T) != 0:
            with gil:
                raise MemoryError()
        for b in range(B):
            if n_ops:
                y = s.y
                memcpy(y, &scores[b, 0], V * sizeof(float))
            else:  # nothing writes the row: read it in place
                y = <float*>&scores[b, 0]
            h = &ids[b, 0] if T > 0 else NULL
            for o in range(n_ops):
                start = op_start[o] if op_start[o] < T else T
                if op_kind[o] == K_REPETITION:
                    repetition_row(y, V, h + start, T - start, <float>op_a[o], &s)
                elif op_kind[o] == K_FREQ_PRESENCE:
                    freq_presence_row(y, V, h + start, T - start, op_a[o], op_b[o], &s)
                elif op_kind[o] == K_NGRAM:
                    n = ngram_banned(h, T, <Py_ssize_t>op_a[o], s.cnt)
                    ban_ids(y, V, s.cnt, n)
                elif op_kind[o] == K_BAN and T < op_a[o]:
                    ban_ids(y, V, &ban_list[0] + ban_off[o], ban_off[o + 1] - ban_off[o])

            if not warp and not do_sample:  # greedy on the penalized row: first best id, like argmax
                out[b] = first_argmax(y, V)
                continue

            # candidates: the top-k scores (after temperature), in id order
            lb = -INFINITY
            v_min = -INFINITY
            if 0 < top_k < V:
                w = kth_largest(y, V, top_k, s.heap)
                if w > -INFINITY:
                    if divide:
                        v_min = w / temperature
                        lb = division_floor(w, temperature, v_min)
                    else:
                        v_min = w
                        lb = w
            n = collect(y, V, lb, temperature, divide, v_min, s.idx, s.val)

            if top_p < 1.0 and n > 0:
                top_p_mark(s.val, n, top_p, top_p_keep, &s)
                n = compact(s.idx, s.val, s.keep, n)
            if min_p > 0.0 and n > 0:
                min_p_mark(s.val, n, min_p, min_p_keep, &s)
                n = compact(s.idx, s.val, s.keep, n)

            if do_sample:
                p = pick(s.val, n, u[b], s.e)
                if p < 0:
                    if bad < 0:
                        bad = b
                    out[b] = 0
                else:
                    out[b] = s.idx[p]
            else:
                p = 0
                for i in range(1, n):
                    if s.val[i] > s.val[p]:
                        p = i
                out[b] = s.idx[p] if n > 0 else 0
        if own:
            scratch_free(&s)
    return bad
