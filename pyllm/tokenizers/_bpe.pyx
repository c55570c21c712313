# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The per-character and per-merge loops of byte-level BPE: pre-tokenizer scanner, rank-table
# merging, word cache, id -> bytes. Not policy (special tokens, BOS, templates): see bpe.py.
"""Cython core of :class:`pyllm.tokenizers.BPETokenizer`.

The scanner walks the UTF-8 bytes of a str and cuts the pieces a split regex
would cut: GPT-2's (``bpe_ref.GPT2_SPLIT``), Llama 3's (``bpe_ref.LLAMA3_SPLIT``)
or Qwen2's (``bpe_ref.QWEN2_SPLIT``, Llama 3's with one digit per piece); each
piece is looked up in a word cache, and on a miss its bytes are merged lowest
rank first with a heap, the way HF's BPE model does (``ignore_merges``: a piece
that is a token is that token). ``encode`` releases the GIL while it runs, so
threads that encode different texts run in parallel.
"""

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.ref cimport PyObject, Py_INCREF
from cython.operator cimport dereference as deref
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libcpp.algorithm cimport pop_heap, push_heap
from libcpp.string cimport string
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector

from ._unicode_classes import RUNS


cdef extern from "Python.h":
    list PyList_New(Py_ssize_t n)
    PyObject* PyList_GET_ITEM(list l, Py_ssize_t i)
    void PyList_SET_ITEM(list l, Py_ssize_t i, PyObject* o)

# ---- code point classes of the split regex: \p{L}, \p{N}, \s, everything else
cdef enum:
    PRE_GPT2 = 0
    PRE_LLAMA3 = 1
    PRE_QWEN2 = 2
    PRE_GPT2_DIGITS = 3  # every \p{N} a piece of its own, GPT-2's regex between them (SmolLM's)

cdef enum:
    CL_OTHER = 0
    CL_LETTER = 1
    CL_NUMBER = 2
    CL_SPACE = 3

# two-stage table: class of cp = _stage2[_stage1[cp >> 7] * 128 + (cp & 127)]
cdef const uint16_t* _stage1
cdef const uint8_t* _stage2
cdef object _tables_keepalive


cdef void _build_class_tables():
    global _stage1, _stage2, _tables_keepalive
    cdef bytearray flat = bytearray(0x110000)  # one class byte per code point
    codes = {"O": CL_OTHER, "L": CL_LETTER, "N": CL_NUMBER, "W": CL_SPACE}
    items = [(int(item[:len(item) - 1], 16), codes[item[len(item) - 1]]) for item in RUNS.split()]
    items.append((0x110000, CL_OTHER))
    for i in range(len(items) - 1):
        start, cls = items[i]
        flat[start:items[i + 1][0]] = bytes([cls]) * (items[i + 1][0] - start)
    blocks = {}
    cdef list index = []
    for b in range(0x110000 >> 7):
        index.append(blocks.setdefault(bytes(flat[b << 7:(b + 1) << 7]), len(blocks)))
    stage1 = bytearray(2 * len(index))
    cdef uint16_t* s1 = <uint16_t*><char*>stage1
    for b in range(len(index)):
        s1[b] = index[b]
    stage2 = b"".join(blocks)  # dict keeps insertion order, which is the block number
    _tables_keepalive = (stage1, stage2)
    _stage1 = <const uint16_t*><char*>stage1
    _stage2 = <const uint8_t*><const char*>stage2


_build_class_tables()


cdef inline uint8_t char_class(uint32_t cp) noexcept nogil:
    return _stage2[(<uint32_t>_stage1[cp >> 7] << 7) | (cp & 127)]


def code_point_class(int cp):
    """0 other, 1 letter, 2 number, 3 whitespace (for tests)."""
    if not 0 <= cp < 0x110000:
        raise ValueError(f"code point {cp} out of range")
    return char_class(cp)


cdef inline uint32_t decode_cp(const uint8_t* s, Py_ssize_t i, int* length) noexcept nogil:
    # s is valid UTF-8 (it comes from a Python str), so no checks
    cdef uint32_t c = s[i]
    if c < 0x80:
        length[0] = 1
        return c
    if c < 0xE0:
        length[0] = 2
        return ((c & 0x1F) << 6) | (s[i + 1] & 0x3F)
    if c < 0xF0:
        length[0] = 3
        return ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F)
    length[0] = 4
    return ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F)


cdef Py_ssize_t piece_end(const uint8_t* s, Py_ssize_t n, Py_ssize_t pos, bint digits=False) noexcept nogil:
    """End (byte offset) of the regex match that starts at pos; the alternatives in order:
    's|'t|'re|'ve|'m|'ll|'d | ?\\p{L}+ | ?\\p{N}+ | ?[^\\s\\p{L}\\p{N}]+ | \\s+(?!\\S) | \\s+
    With ``digits``, HF's Digits(individual_digits) runs first: each \\p{N} is a piece alone
    and the regex runs on the text between them, each digit ending it as the text's end would."""
    cdef int ln, ln2
    cdef uint32_t c = decode_cp(s, pos, &ln), c2
    cdef uint8_t k = char_class(c), k2
    cdef Py_ssize_t i = pos, last
    if digits and k == CL_NUMBER:
        return pos + ln
    if c == 39 and pos + 1 < n:  # contractions, lower case only
        c2 = s[pos + 1]
        if c2 == 115 or c2 == 116 or c2 == 109 or c2 == 100:  # s t m d
            return pos + 2
        if pos + 2 < n and ((s[pos + 2] == 101 and (c2 == 114 or c2 == 118))  # re ve
                            or (c2 == 108 and s[pos + 2] == 108)):  # ll
            return pos + 3
    if c == 32 and pos + 1 < n:  # " ?": one space joins a run of letters, numbers or others
        c2 = decode_cp(s, pos + 1, &ln2)
        k2 = char_class(c2)
        if digits and k2 == CL_NUMBER:  # the space ends its text: \s+(?!\S) takes it alone
            return pos + 1
        if k2 != CL_SPACE:
            i = pos + 1
            ln = ln2
            k = k2
    if k != CL_SPACE:  # a run of one class
        i += ln
        while i < n:
            c = decode_cp(s, i, &ln)
            if char_class(c) != k:
                break
            i += ln
        return i
    # whitespace: \s+(?!\S) leaves the run's last character to the piece after it when a
    # non-space follows; a single whitespace character before a non-space is \s+ alone
    last = i
    i += ln
    while i < n:
        c = decode_cp(s, i, &ln)
        k = char_class(c)
        if k != CL_SPACE:
            if digits and k == CL_NUMBER:  # the run ends its text: all of it is one piece
                return i
            return last if last > pos else i
        last = i
        i += ln
    return n


cdef inline bint is_newline(uint32_t c) noexcept nogil:
    return c == 10 or c == 13


cdef inline int fold_ascii(uint32_t c) noexcept nogil:
    # lower case of an ASCII letter; U+017F (long s) folds to s, as in the regex engine's (?i)
    if 65 <= c <= 90:
        return c + 32
    if c == 0x17F:
        return 115
    return c


cdef Py_ssize_t piece_end_llama3(const uint8_t* s, Py_ssize_t n, Py_ssize_t pos, int max_digits) noexcept nogil:
    """End (byte offset) of the regex match that starts at pos; the alternatives in order:
    (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,max_digits} |
     ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+"""
    cdef int ln, ln2, ln3, count
    cdef uint32_t c = decode_cp(s, pos, &ln), c2, c3
    cdef uint8_t k = char_class(c), k2
    cdef Py_ssize_t i, last_newline, last
    if c == 39 and pos + 1 < n:  # contractions, any case
        c2 = decode_cp(s, pos + 1, &ln2)
        c2 = fold_ascii(c2)
        if c2 == 115 or c2 == 116 or c2 == 109 or c2 == 100:  # s t m d
            return pos + 1 + ln2
        if pos + 1 + ln2 < n:
            c3 = fold_ascii(decode_cp(s, pos + 1 + ln2, &ln3))
            if (c3 == 101 and (c2 == 114 or c2 == 118)) or (c2 == 108 and c3 == 108):  # re ve ll
                return pos + 1 + ln2 + ln3
    if k == CL_LETTER:  # a run of letters
        i = pos + ln
        while i < n and char_class(decode_cp(s, i, &ln)) == CL_LETTER:
            i += ln
        return i
    if pos + ln < n and not is_newline(c) and k != CL_NUMBER:  # one non-letter, non-digit before letters
        c2 = decode_cp(s, pos + ln, &ln2)
        if char_class(c2) == CL_LETTER:
            i = pos + ln + ln2
            while i < n and char_class(decode_cp(s, i, &ln)) == CL_LETTER:
                i += ln
            return i
    if k == CL_NUMBER:  # up to max_digits numbers
        i = pos + ln
        count = 1
        while count < max_digits and i < n and char_class(decode_cp(s, i, &ln)) == CL_NUMBER:
            i += ln
            count += 1
        return i
    i = pos
    if c == 32 and pos + 1 < n and char_class(decode_cp(s, pos + 1, &ln2)) == CL_OTHER:
        i = pos + 1
        k = CL_OTHER
    if k == CL_OTHER:  # " ?" then others, then any newlines
        while i < n and char_class(decode_cp(s, i, &ln)) == CL_OTHER:
            i += ln
        while i < n and (s[i] == 10 or s[i] == 13):
            i += 1
        return i
    # whitespace: up to the run's last newline if it has one; else \s+(?!\S) leaves the
    # run's last character to the piece after it when a non-space follows
    last_newline = -1
    last = pos
    i = pos
    while i < n:
        c = decode_cp(s, i, &ln)
        if char_class(c) != CL_SPACE:
            break
        if is_newline(c):
            last_newline = i
        last = i
        i += ln
    if last_newline >= 0:
        return last_newline + 1
    if i == n:
        return n
    return last if last > pos else i


cdef inline Py_ssize_t split_end(int kind, const uint8_t* s, Py_ssize_t n, Py_ssize_t pos) noexcept nogil:
    if kind == PRE_GPT2 or kind == PRE_GPT2_DIGITS:
        return piece_end(s, n, pos, kind == PRE_GPT2_DIGITS)
    return piece_end_llama3(s, n, pos, 3 if kind == PRE_LLAMA3 else 1)


def pretokenize(str text, int kind=0):
    """The pieces the scanner cuts, as str (for tests against the reference regex).
    ``kind``: 0 GPT-2's regex, 1 Llama 3's, 2 Qwen2's, 3 GPT-2's with every digit alone."""
    cdef Py_ssize_t n, pos = 0, end
    cdef const uint8_t* s = <const uint8_t*>PyUnicode_AsUTF8AndSize(text, &n)
    if kind not in (PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_GPT2_DIGITS):
        raise ValueError(f"kind must be 0, 1, 2 or 3, got {kind}")
    out = []
    while pos < n:
        end = split_end(kind, s, n, pos)
        out.append((<const char*>s)[pos:end].decode("utf-8"))
        pos = end
    return out


# ---- the byte-level alphabet
include "_alphabet.pxi"


def foreign_tokens(list tokens):
    """Indices of tokens with a character outside the byte-level alphabet."""
    cdef Py_UCS4 ch
    cdef str t
    out = []
    for i, t in enumerate(tokens):
        for ch in t:
            if ch >= 512 or _SYM_TO_BYTE[ch] < 0:
                out.append(i)
                break
    return out


cdef list ids_to_list(vector[int32_t]& ids, list id_objects):
    # PyList_New leaves the slots empty; each gets a new reference to a cached int
    cdef Py_ssize_t i, n = ids.size()
    cdef list out = PyList_New(n)
    cdef PyObject* obj
    for i in range(n):
        obj = PyList_GET_ITEM(id_objects, ids[i])
        Py_INCREF(<object>obj)
        PyList_SET_ITEM(out, i, obj)
    return out


# ---- BPE merging
cdef enum:
    NO_RANK = 0x7FFFFFFF

include "_wordcache.pxi"

cdef class BPECore:
    """Rank table, byte -> id table, token bytes and word caches for one vocabulary.

    Parameters: ``tokens`` every token's byte-level spelling, in id order; ``merges``
    the "left right" strings in rank order, a later duplicate pair overriding an earlier
    one as in HF; ``vocab`` spelling -> id; ``special_ids`` the ids
    ``decode(skip_special=True)`` drops. A byte with no single-byte token is dropped
    from the text, as HF's BPE without an unk token does.
    """
    cdef unordered_map[uint64_t, uint64_t] ranks  # (left << 32 | right) -> (rank << 32 | merged)
    cdef int32_t byte_ids[256]
    cdef vector[uint8_t] tok_bytes    # every token's bytes, back to back
    cdef vector[int64_t] tok_offsets  # token i is tok_bytes[tok_offsets[i]:tok_offsets[i + 1]]
    cdef vector[uint8_t] is_special
    cdef int64_t n_tokens
    cdef int pre
    cdef bint ignore_merges
    cdef unordered_map[string, int32_t] whole  # token bytes -> id, for ignore_merges
    cdef vector[WordCache] caches  # one per concurrent caller (_wordcache.pxi)
    cdef list free_slots
    cdef list id_objects  # the int of every id, so building a result list allocates no ints

    def __init__(self, list tokens, list merges, dict vocab, special_ids, int cache_slots=16, int pre=0,
                 bint ignore_merges=False):
        cdef int64_t i, rank, k
        cdef Py_UCS4 ch
        cdef str t
        if pre not in (PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_GPT2_DIGITS):
            raise ValueError(f"pre must be 0, 1, 2 or 3, got {pre}")
        if cache_slots < 0:
            raise ValueError(f"cache_slots must be >= 0, got {cache_slots}")
        self.pre = pre
        self.ignore_merges = ignore_merges
        self.n_tokens = len(tokens)
        self.tok_offsets.push_back(0)
        for t in tokens:  # byte-level spelling -> bytes
            for ch in t:
                if ch >= 512 or _SYM_TO_BYTE[ch] < 0:
                    raise ValueError(f"token {t!r} is not spelled in the byte-level alphabet")
                self.tok_bytes.push_back(<uint8_t>_SYM_TO_BYTE[ch])
            self.tok_offsets.push_back(self.tok_bytes.size())
        if ignore_merges:
            for tid in vocab.values():  # the vocabulary's own choice among duplicate spellings
                i = tid
                k = self.tok_offsets[i]
                self.whole[string(<const char*>self.tok_bytes.data() + k, <size_t>(self.tok_offsets[i + 1] - k))] = <int32_t>i
        self.is_special.resize(self.n_tokens, 0)
        for i in special_ids:
            self.is_special[i] = 1
        for i in range(256):
            self.byte_ids[i] = vocab.get(chr(_BYTE_TO_SYM[i]), -1)
        self.ranks.reserve(2 * len(merges))
        for rank, m in enumerate(merges):
            k = m.find(" ")
            a, b, ab = vocab.get(m[:k]), vocab.get(m[k + 1:]), vocab.get(m[:k] + m[k + 1:])
            if k < 0 or a is None or b is None or ab is None:
                raise ValueError(f"merge {rank} {m!r} needs 'left right' with left, right and "
                                 "their concatenation all in the vocabulary")
            self.ranks[(<uint64_t><int64_t>a << 32) | <uint32_t><int64_t>b] = (<uint64_t>rank << 32) | <uint32_t><int64_t>ab
        self.caches.resize(cache_slots)
        self.free_slots = list(range(cache_slots))
        self.id_objects = list(range(self.n_tokens))

    def __len__(self):
        return self.n_tokens

    cdef inline uint64_t lookup(self, int32_t a, int32_t b) noexcept nogil:
        cdef unordered_map[uint64_t, uint64_t].iterator it = self.ranks.find((<uint64_t>a << 32) | <uint32_t>b)
        if it == self.ranks.end():
            return <uint64_t>NO_RANK << 32
        return deref(it).second

    cdef int merge_word(self, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        """Append the ids of one piece: start from its bytes and merge the pair of lowest
        (rank, position) until no adjacent pair has a rank."""
        cdef vector[int32_t] ids, nxt, prv, rank, merged
        cdef vector[uint64_t] heap  # ~(rank << 32 | position): a max-heap of these pops the min
        cdef Py_ssize_t i, j
        cdef uint64_t top
        for i in range(n):
            if self.byte_ids[s[i]] >= 0:  # a byte with no token is dropped, as HF does (no unk)
                ids.push_back(self.byte_ids[s[i]])
        n = ids.size()
        if n == 0:
            return 0
        nxt.resize(n)
        prv.resize(n)
        rank.resize(n, NO_RANK)
        merged.resize(n)
        for i in range(n):
            nxt[i] = i + 1 if i + 1 < n else -1
            prv[i] = i - 1
        for i in range(n - 1):
            self.rank_pair(i, ids, nxt, rank, merged, heap)
        while heap.size():
            pop_heap(heap.begin(), heap.end())
            top = ~heap.back()
            heap.pop_back()
            i = <Py_ssize_t><uint32_t>top
            if ids[i] < 0 or <uint64_t>rank[i] != (top >> 32):
                continue  # stale: the symbol or its right neighbour changed since the push
            j = nxt[i]
            ids[i] = merged[i]
            ids[j] = -1
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            self.rank_pair(i, ids, nxt, rank, merged, heap)
            if prv[i] >= 0:
                self.rank_pair(prv[i], ids, nxt, rank, merged, heap)
        i = 0
        while i >= 0:
            out.push_back(ids[i])
            i = nxt[i]
        return 0

    cdef inline int rank_pair(self, Py_ssize_t i, vector[int32_t]& ids, vector[int32_t]& nxt,
                               vector[int32_t]& rank, vector[int32_t]& merged,
                               vector[uint64_t]& heap) except -1 nogil:
        # rank the pair starting at symbol i and queue it if it can merge
        cdef uint64_t r
        if nxt[i] < 0:
            rank[i] = NO_RANK
            return 0
        r = self.lookup(ids[i], ids[nxt[i]])
        rank[i] = <int32_t>(r >> 32)
        merged[i] = <int32_t><uint32_t>r
        if rank[i] != NO_RANK:
            heap.push_back(~(((r >> 32) << 32) | <uint64_t>i))
            push_heap(heap.begin(), heap.end())
        return 0

    cdef int encode_piece(self, int slot, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        cdef size_t start
        cdef string key
        cdef unordered_map[string, int32_t].iterator hit
        if n == 1:
            if self.byte_ids[s[0]] >= 0:
                out.push_back(self.byte_ids[s[0]])
            return 0
        if self.ignore_merges:
            hit = self.whole.find(string(<const char*>s, <size_t>n))
            if hit != self.whole.end():
                out.push_back(deref(hit).second)
                return 0
        if slot < 0 or n > MAX_CACHED_WORD:
            return self.merge_word(s, n, out)
        key = string(<const char*>s, <size_t>n)
        if cache_get(&self.caches[slot], key, out):
            return 0
        start = out.size()
        self.merge_word(s, n, out)
        return cache_put(&self.caches[slot], key, out, start)

    cdef int encode_utf8(self, int slot, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        cdef Py_ssize_t pos = 0, end
        while pos < n:
            end = split_end(self.pre, s, n, pos)
            self.encode_piece(slot, s + pos, end - pos, out)
            pos = end
        return 0

    def encode(self, str text):
        """Ids of text with no special-token handling (the GIL is released while it runs).

        Lone surrogates cannot be encoded as UTF-8: UnicodeEncodeError.
        """
        cdef Py_ssize_t n
        cdef const uint8_t* s = <const uint8_t*>PyUnicode_AsUTF8AndSize(text, &n)
        cdef vector[int32_t] out
        cdef int slot = -1
        try:
            slot = self.free_slots.pop()  # this call's own word cache
        except IndexError:
            pass  # more concurrent callers than caches: this one merges without a cache
        try:
            out.reserve(n // 3 + 16)
            with nogil:
                self.encode_utf8(slot, s, n, out)
        finally:
            if slot >= 0:
                self.free_slots.append(slot)
        return ids_to_list(out, self.id_objects)

    def merge(self, bytes piece):
        """BPE ids of one piece's bytes, no pre-tokenizing and no cache (for tests)."""
        cdef vector[int32_t] out
        if len(piece):
            self.merge_word(<const uint8_t*><const char*>piece, len(piece), out)
        return out

    def clear_cache(self):
        """Empty the word caches and give their memory back."""
        cdef size_t k
        for k in range(self.caches.size()):
            cache_free(&self.caches[k])
        pyllm_trim_heap()

    def cache_size(self):
        """(entries, estimated bytes) over all word caches (for tests and monitoring)."""
        return cache_stats(self.caches)

    def decode(self, ids, bint skip_special=False):
        """bytes of the tokens ids; ValueError naming the first id out of range."""
        cdef vector[uint8_t] buf
        cdef int64_t i, a, b
        for obj in ids:
            try:
                i = obj
            except (OverflowError, TypeError):
                raise ValueError(f"token id {obj!r} is not a valid id for a vocabulary of {self.n_tokens} tokens") from None
            if i < 0 or i >= self.n_tokens:
                raise ValueError(f"token id {i} is out of range for a vocabulary of {self.n_tokens} tokens")
            if skip_special and self.is_special[i]:
                continue
            a = self.tok_offsets[i]
            b = self.tok_offsets[i + 1]
            buf.insert(buf.end(), self.tok_bytes.begin() + a, self.tok_bytes.begin() + b)
        if buf.size() == 0:
            return b""
        return (<const char*>buf.data())[:buf.size()]
