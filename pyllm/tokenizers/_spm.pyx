# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The per-character and per-merge loops of SentencePiece-style BPE: characters to ids with byte
# fallback, rank-table merging, word cache. Not policy (normalizing, added tokens, BOS): see spm.py.
"""Cython core of :class:`pyllm.tokenizers.SentencePieceBPETokenizer`.

``encode`` takes text that is already normalized (spaces written as U+2581, the
prefix added) and returns the ids Hugging Face's BPE model gives it: each
character is its own symbol when the vocabulary has it, else its UTF-8 bytes as
``<0xNN>`` tokens (byte fallback), else the unknown token (consecutive unknowns
fused into one); then the adjacent pair of lowest merge rank (leftmost on ties)
is merged until no pair has a rank.

The text is cut into words before merging only where the result cannot change:
before a U+2581 that follows another character, when no merge joins a symbol
ending in something else to one starting with U+2581 (``split_mode=1``, checked
by the caller), or before every U+2581 (``split_mode=2``, Metaspace's
``split=True``). Words are cached, and the GIL is released while ``encode`` runs.
"""

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.ref cimport PyObject, Py_INCREF
from cython.operator cimport dereference as deref
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libcpp.algorithm cimport pop_heap, push_heap
from libcpp.string cimport string
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector


cdef extern from "Python.h":
    list PyList_New(Py_ssize_t n)
    PyObject* PyList_GET_ITEM(list l, Py_ssize_t i)
    void PyList_SET_ITEM(list l, Py_ssize_t i, PyObject* o)


cdef enum:
    NO_RANK = 0x7FFFFFFF
    SPACE = 0x2581               # U+2581, SentencePiece's visible space

include "_wordcache.pxi"


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


cdef class SPMCore:
    """Merge table, character -> id table, byte-fallback ids and word caches for one vocabulary.

    Parameters: ``n_tokens`` the vocabulary size; ``chars`` code point -> id of every
    one-character token; ``byte_ids`` the 256 ids of ``<0x00>``..``<0xFF>`` (-1 where
    missing, and all -1 without byte fallback); ``merges`` (left, right, merged) id
    triples in rank order, a later duplicate pair overriding an earlier one as in HF;
    ``unk_id`` the unknown token (-1: a character with no token is dropped);
    ``fuse_unk`` whether consecutive unknowns become one; ``split_mode`` 0 (the text is
    one word), 1 or 2 (see the module docstring).
    """
    cdef unordered_map[uint64_t, uint64_t] ranks  # (left << 32 | right) -> (rank << 32 | merged)
    cdef unordered_map[uint32_t, int32_t] char_ids
    cdef int32_t byte_ids[256]
    cdef int32_t unk_id
    cdef bint fuse_unk
    cdef int split_mode
    cdef int64_t n_tokens
    cdef vector[WordCache] caches  # one per concurrent caller (_wordcache.pxi)
    cdef list free_slots
    cdef list id_objects  # the int of every id, so building a result list allocates no ints

    def __init__(self, int64_t n_tokens, dict chars, list byte_ids, list merges, int unk_id=-1,
                 bint fuse_unk=True, int split_mode=0, int cache_slots=16):
        cdef int64_t rank, a, b, ab
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids has {len(byte_ids)} entries, expected 256")
        if cache_slots < 0:
            raise ValueError(f"cache_slots must be >= 0, got {cache_slots}")
        if split_mode not in (0, 1, 2):
            raise ValueError(f"split_mode must be 0, 1 or 2, got {split_mode}")
        self.n_tokens = n_tokens
        for cp, i in chars.items():
            self.char_ids[<uint32_t>cp] = <int32_t>self._checked(i, "chars")
        for k in range(256):
            self.byte_ids[k] = <int32_t>(self._checked(byte_ids[k], "byte_ids") if byte_ids[k] >= 0 else -1)
        self.unk_id = <int32_t>(self._checked(unk_id, "unk_id") if unk_id >= 0 else -1)
        self.fuse_unk = fuse_unk
        self.split_mode = split_mode
        self.ranks.reserve(2 * len(merges))
        for rank, (a, b, ab) in enumerate(merges):
            self._checked(a, "merges")
            self._checked(b, "merges")
            self._checked(ab, "merges")
            self.ranks[(<uint64_t>a << 32) | <uint32_t>b] = (<uint64_t>rank << 32) | <uint32_t>ab
        self.caches.resize(cache_slots)
        self.free_slots = list(range(cache_slots))
        self.id_objects = list(range(n_tokens))

    cdef int64_t _checked(self, int64_t i, str what) except -1:
        if not 0 <= i < self.n_tokens:
            raise ValueError(f"{what}: token id {i} is out of range for a vocabulary of {self.n_tokens} tokens")
        return i

    def __len__(self):
        return self.n_tokens

    cdef inline uint64_t lookup(self, int32_t a, int32_t b) noexcept nogil:
        cdef unordered_map[uint64_t, uint64_t].iterator it = self.ranks.find((<uint64_t>a << 32) | <uint32_t>b)
        if it == self.ranks.end():
            return <uint64_t>NO_RANK << 32
        return deref(it).second

    cdef int symbols(self, const uint8_t* s, Py_ssize_t n, vector[int32_t]& ids) except -1 nogil:
        """The initial symbols of a word, as HF's BPE model makes them."""
        cdef Py_ssize_t i = 0, k
        cdef int ln
        cdef uint32_t cp
        cdef bint pending_unk = False, have_bytes
        cdef unordered_map[uint32_t, int32_t].iterator it
        while i < n:
            cp = decode_cp(s, i, &ln)
            it = self.char_ids.find(cp)
            if it != self.char_ids.end():
                if pending_unk:
                    ids.push_back(self.unk_id)
                    pending_unk = False
                ids.push_back(deref(it).second)
            else:
                have_bytes = True
                for k in range(ln):
                    if self.byte_ids[s[i + k]] < 0:
                        have_bytes = False
                if have_bytes:
                    # as HF: a pending unknown is not flushed before the bytes (it follows them)
                    for k in range(ln):
                        ids.push_back(self.byte_ids[s[i + k]])
                elif self.unk_id >= 0:
                    if pending_unk and not self.fuse_unk:
                        ids.push_back(self.unk_id)
                    pending_unk = True
            i += ln
        if pending_unk:
            ids.push_back(self.unk_id)
        return 0

    cdef int merge_word(self, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        """Append the ids of one word: merge the pair of lowest (rank, position) until none is left."""
        cdef vector[int32_t] ids, nxt, prv, rank, merged
        cdef vector[uint64_t] heap  # ~(rank << 32 | position): a max-heap of these pops the min
        cdef Py_ssize_t i, j, m
        cdef uint64_t top
        self.symbols(s, n, ids)
        m = ids.size()
        if m == 0:
            return 0
        if m == 1:
            out.push_back(ids[0])
            return 0
        nxt.resize(m)
        prv.resize(m)
        rank.resize(m, NO_RANK)
        merged.resize(m)
        for i in range(m):
            nxt[i] = i + 1 if i + 1 < m else -1
            prv[i] = i - 1
        for i in range(m - 1):
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

    cdef int encode_word(self, int slot, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        cdef size_t start
        cdef string key
        if slot < 0 or n > MAX_CACHED_WORD:
            return self.merge_word(s, n, out)
        key = string(<const char*>s, <size_t>n)
        if cache_get(&self.caches[slot], key, out):
            return 0
        start = out.size()
        self.merge_word(s, n, out)
        return cache_put(&self.caches[slot], key, out, start)

    cdef int encode_utf8(self, int slot, const uint8_t* s, Py_ssize_t n, vector[int32_t]& out) except -1 nogil:
        # cut before a U+2581 (bytes e2 96 81) that follows another character (mode 1) or before any (mode 2)
        cdef Py_ssize_t start = 0, i = 0
        cdef int ln
        cdef uint32_t cp, prev = SPACE
        if self.split_mode == 0:
            return self.merge_word(s, n, out)
        while i < n:
            cp = decode_cp(s, i, &ln)
            if cp == SPACE and i > start and (self.split_mode == 2 or prev != SPACE):
                self.encode_word(slot, s + start, i - start, out)
                start = i
            prev = cp
            i += ln
        if n > start:
            self.encode_word(slot, s + start, n - start, out)
        return 0

    def encode(self, str text):
        """Ids of normalized text (the GIL is released while it runs).

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

    def merge(self, str word):
        """BPE ids of one word, no splitting and no cache (for tests)."""
        cdef Py_ssize_t n
        cdef const uint8_t* s = <const uint8_t*>PyUnicode_AsUTF8AndSize(word, &n)
        cdef vector[int32_t] out
        self.merge_word(s, n, out)
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
