# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The per-character and per-word loops of BERT's WordPiece: normalizer + pre-tokenizer scan,
# greedy longest-match, word cache, offsets. Not policy (special tokens, pairs, padding): wordpiece.py.
"""Cython core of :class:`pyllm.tokenizers.BertTokenizerFast`.

One pass over the UTF-8 bytes of a str does what HF's BertNormalizer and
BertPreTokenizer do: characters of class R are dropped (``clean_text``), W ends a
word, C (CJK ideographs, ``handle_chinese_chars``) and P (punctuation) are words
of their own, and every character is replaced by its ``strip_accents`` /
``lowercase`` mapping (``_wordpiece_tables.py``, recorded from tokenizers). Each
word is then looked up in a word cache and, on a miss, cut greedily into the
longest vocabulary pieces (``##`` pieces after the first); a word longer than
``max_chars`` characters, or one that cannot be cut, is ``[UNK]``. Offsets are
the original character positions (Python str indices) each token came from.
The GIL is released while a text, or a whole list of texts, is encoded.
"""

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.ref cimport PyObject, Py_INCREF
from cython.operator cimport dereference as deref
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libcpp.string cimport string
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector

from ._wordpiece_tables import RUNS


cdef extern from "Python.h":
    list PyList_New(Py_ssize_t n)
    PyObject* PyList_GET_ITEM(list l, Py_ssize_t i)
    void PyList_SET_ITEM(list l, Py_ssize_t i, PyObject* o)

cdef enum:
    CL_OTHER = 0
    CL_REMOVED = 1
    CL_SPACE = 2
    CL_CJK = 3
    CL_PUNCT = 4

# two-stage table: class of cp = _stage2[_stage1[cp >> 7] * 128 + (cp & 127)]
cdef const uint16_t* _stage1
cdef const uint8_t* _stage2
cdef object _tables_keepalive


cdef void _build_class_tables():
    global _stage1, _stage2, _tables_keepalive
    cdef bytearray flat = bytearray(0x110000)  # one class byte per code point
    codes = {"O": CL_OTHER, "R": CL_REMOVED, "W": CL_SPACE, "C": CL_CJK, "P": CL_PUNCT}
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
    """0 other, 1 removed, 2 whitespace, 3 CJK, 4 punctuation (for tests)."""
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


cdef inline void append_utf8(string& out, uint32_t c) noexcept nogil:
    if c < 0x80:
        out.push_back(<char>c)
    elif c < 0x800:
        out.push_back(<char>(0xC0 | (c >> 6)))
        out.push_back(<char>(0x80 | (c & 0x3F)))
    elif c < 0x10000:
        out.push_back(<char>(0xE0 | (c >> 12)))
        out.push_back(<char>(0x80 | ((c >> 6) & 0x3F)))
        out.push_back(<char>(0x80 | (c & 0x3F)))
    else:
        out.push_back(<char>(0xF0 | (c >> 18)))
        out.push_back(<char>(0x80 | ((c >> 12) & 0x3F)))
        out.push_back(<char>(0x80 | ((c >> 6) & 0x3F)))
        out.push_back(<char>(0x80 | (c & 0x3F)))


cdef list ids_to_list(const int32_t* ids, Py_ssize_t n, list id_objects):
    # PyList_New leaves the slots empty; each gets a new reference to a cached int
    cdef Py_ssize_t i
    cdef list out = PyList_New(n)
    cdef PyObject* obj
    for i in range(n):
        obj = PyList_GET_ITEM(id_objects, ids[i])
        Py_INCREF(<object>obj)
        PyList_SET_ITEM(out, i, obj)
    return out


include "_wordcache.pxi"


cdef struct Scratch:
    string word          # the normalized word being collected (UTF-8)
    vector[int32_t] src  # original character index of each of its characters
    string key           # lookup buffer
    vector[int32_t] piece_ids


cdef class WordPieceCore:
    """Vocabulary, character mapping and word caches of one BERT tokenizer.

    ``vocab`` spelling -> id; ``mapping`` code point -> the code points it becomes
    (the composed strip_accents / lowercase mapping; absent: itself); ``unk_id`` the
    id of ``[UNK]``; ``max_chars`` the longest word (in characters) that is cut into
    pieces; ``prefix`` the continuation prefix (``"##"``).
    """
    cdef unordered_map[string, int32_t] start_pieces  # UTF-8 spelling -> id
    cdef unordered_map[string, int32_t] cont_pieces   # spelling without the prefix -> id
    cdef unordered_map[uint32_t, vector[uint32_t]] mapping
    cdef uint32_t ascii_map[128]
    cdef bint clean_text, cjk
    cdef int32_t unk_id
    cdef int64_t max_chars
    cdef size_t max_piece_bytes
    cdef vector[int32_t] piece_chars  # characters each token covers (without the prefix)
    cdef vector[WordCache] caches     # one per concurrent caller (_wordcache.pxi)
    cdef list free_slots
    cdef list id_objects
    cdef int64_t n_tokens

    def __init__(self, dict vocab, dict mapping, int unk_id, int max_chars=100, str prefix="##",
                 bint clean_text=True, bint handle_chinese_chars=True, int cache_slots=16):
        cdef bytes b
        cdef str tok
        cdef int tid
        self.n_tokens = (max(vocab.values()) + 1) if vocab else 0
        if not 0 <= unk_id < self.n_tokens:
            raise ValueError(f"unk_id={unk_id} is out of range for a vocabulary of {self.n_tokens} tokens")
        self.unk_id = unk_id
        self.max_chars = max_chars
        self.clean_text = clean_text
        self.cjk = handle_chinese_chars
        self.piece_chars.assign(self.n_tokens, 1)
        self.max_piece_bytes = 1
        for tok, tid in vocab.items():
            b = tok.encode("utf-8")
            self.start_pieces[string(<const char*>b, len(b))] = tid
            self.piece_chars[tid] = len(tok)
            self.max_piece_bytes = max(self.max_piece_bytes, len(b))
            if prefix and tok.startswith(prefix) and len(tok) > len(prefix):
                b = tok[len(prefix):].encode("utf-8")
                self.cont_pieces[string(<const char*>b, len(b))] = tid
                self.piece_chars[tid] = len(tok) - len(prefix)
        for cp in range(128):
            self.ascii_map[cp] = cp
        for cp, out in mapping.items():
            if cp < 128 and len(out) == 1:
                self.ascii_map[cp] = out[0]
            else:
                self.mapping[cp] = out
        self.caches.resize(cache_slots)
        self.free_slots = list(range(cache_slots))
        self.id_objects = list(range(self.n_tokens))

    def __len__(self):
        return self.n_tokens

    # ---- WordPiece on one normalized word
    cdef int cut_word(self, Scratch* sc, const char* w, size_t nb, int64_t nchars, vector[int32_t]& out) except -1 nogil:
        """Greedy longest-match pieces of w (nb bytes) appended to out; [UNK] if it cannot be cut."""
        cdef size_t start = 0, end
        cdef unordered_map[string, int32_t].iterator hit
        cdef unordered_map[string, int32_t]* table
        if nchars > self.max_chars:
            out.push_back(self.unk_id)
            return 0
        sc.piece_ids.clear()
        while start < nb:
            end = nb if nb - start <= self.max_piece_bytes else start + self.max_piece_bytes
            while end < nb and (<uint8_t>w[end] & 0xC0) == 0x80:  # back to a character boundary
                end -= 1
            table = &self.start_pieces if start == 0 else &self.cont_pieces
            while end > start:
                sc.key.assign(w + start, end - start)
                hit = table.find(sc.key)
                if hit != table.end():
                    break
                end -= 1
                while end > start and (<uint8_t>w[end] & 0xC0) == 0x80:
                    end -= 1
            if end == start:
                out.push_back(self.unk_id)
                return 0
            sc.piece_ids.push_back(deref(hit).second)
            start = end
        out.insert(out.end(), sc.piece_ids.begin(), sc.piece_ids.end())
        return 0

    cdef int flush(self, int slot, Scratch* sc, vector[int32_t]& ids, vector[int32_t]* offsets,
                   int32_t base) except -1 nogil:
        cdef size_t first = ids.size(), k
        cdef int64_t nchars = sc.src.size()
        cdef int32_t pos = 0, n, tid
        if nchars == 0:
            return 0
        if slot >= 0 and sc.word.size() <= MAX_CACHED_WORD:
            if not cache_get(&self.caches[slot], sc.word, ids):
                self.cut_word(sc, sc.word.data(), sc.word.size(), nchars, ids)
                cache_put(&self.caches[slot], sc.word, ids, first)
        else:
            self.cut_word(sc, sc.word.data(), sc.word.size(), nchars, ids)
        if offsets != NULL:
            for k in range(first, ids.size()):
                tid = ids[k]
                n = <int32_t>nchars - pos if tid == self.unk_id else self.piece_chars[tid]
                if pos + n > nchars:  # cannot happen for pieces of this word; stay in bounds anyway
                    n = <int32_t>nchars - pos
                offsets.push_back(base + sc.src[pos])
                offsets.push_back(base + sc.src[pos + n - 1] + 1)
                pos += n
        sc.word.clear()
        sc.src.clear()
        return 0

    cdef inline int add_char(self, int slot, Scratch* sc, uint32_t c, int32_t index, vector[int32_t]& ids,
                             vector[int32_t]* offsets, int32_t base) except -1 nogil:
        # one normalized character: a space ends the word, punctuation is a word of its own
        cdef uint8_t k = char_class(c)
        if k == CL_SPACE:
            self.flush(slot, sc, ids, offsets, base)
        elif k == CL_PUNCT:
            self.flush(slot, sc, ids, offsets, base)
            append_utf8(sc.word, c)
            sc.src.push_back(index)
            self.flush(slot, sc, ids, offsets, base)
        else:
            append_utf8(sc.word, c)
            sc.src.push_back(index)
        return 0

    cdef int encode_utf8(self, int slot, const uint8_t* s, Py_ssize_t n, vector[int32_t]& ids,
                         vector[int32_t]* offsets, int32_t base) except -1 nogil:
        cdef Scratch sc
        cdef Py_ssize_t i = 0
        cdef int ln
        cdef int32_t index = 0  # code point index in the original text
        cdef uint32_t c
        cdef uint8_t k
        cdef size_t j
        cdef unordered_map[uint32_t, vector[uint32_t]].iterator m
        while i < n:
            c = decode_cp(s, i, &ln)
            i += ln
            k = char_class(c)
            if k == CL_REMOVED and self.clean_text:
                pass
            elif k == CL_SPACE:
                self.flush(slot, &sc, ids, offsets, base)
            elif c < 128:
                self.add_char(slot, &sc, self.ascii_map[c], index, ids, offsets, base)
            else:
                if k == CL_CJK and self.cjk:
                    self.flush(slot, &sc, ids, offsets, base)
                m = self.mapping.find(c)
                if m == self.mapping.end():
                    self.add_char(slot, &sc, c, index, ids, offsets, base)
                else:
                    for j in range(deref(m).second.size()):
                        self.add_char(slot, &sc, deref(m).second[j], index, ids, offsets, base)
                if k == CL_CJK and self.cjk:
                    self.flush(slot, &sc, ids, offsets, base)
            index += 1
        self.flush(slot, &sc, ids, offsets, base)
        return 0

    cdef int take_slot(self):
        try:
            return self.free_slots.pop()  # this call's own word cache
        except IndexError:
            return -1  # more concurrent callers than caches: this one runs without a cache

    def encode(self, str text, bint offsets=False, int base=0):
        """(ids, offsets) of text with no special tokens; offsets is a list of (start, end)
        character positions plus ``base``, or None. The GIL is released while it runs.
        Lone surrogates cannot be encoded as UTF-8: UnicodeEncodeError."""
        cdef Py_ssize_t n
        cdef const uint8_t* s = <const uint8_t*>PyUnicode_AsUTF8AndSize(text, &n)
        cdef vector[int32_t] ids, offs
        cdef int slot = self.take_slot()
        try:
            with nogil:
                self.encode_utf8(slot, s, n, ids, &offs if offsets else NULL, base)
        finally:
            if slot >= 0:
                self.free_slots.append(slot)
        cdef list pairs = None
        cdef size_t j
        if offsets:
            pairs = [(offs[2 * j], offs[2 * j + 1]) for j in range(offs.size() // 2)]
        return ids_to_list(ids.data(), ids.size(), self.id_objects), pairs

    def encode_batch(self, list texts, int first=-1, int last=-1, int max_tokens=-1):
        """Ids of each text: ``first`` before and ``last`` after (when >= 0), the text's own ids
        cut to ``max_tokens`` (when >= 0). Texts must be str; the GIL is released over the
        whole list."""
        cdef Py_ssize_t k, n = len(texts), length
        cdef vector[const uint8_t*] ptrs
        cdef vector[Py_ssize_t] lens
        cdef vector[int32_t] ids
        cdef vector[size_t] ends
        cdef size_t row_start, cut
        cdef int slot
        cdef list out = PyList_New(n)
        cdef list row
        ptrs.resize(n)
        lens.resize(n)
        for k in range(n):
            ptrs[k] = <const uint8_t*>PyUnicode_AsUTF8AndSize(texts[k], &length)
            lens[k] = length
        slot = self.take_slot()
        try:
            with nogil:
                for k in range(n):
                    row_start = ids.size()
                    if first >= 0:
                        ids.push_back(first)
                    self.encode_utf8(slot, ptrs[k], lens[k], ids, NULL, 0)
                    if max_tokens >= 0:
                        cut = row_start + (1 if first >= 0 else 0) + <size_t>max_tokens
                        if ids.size() > cut:
                            ids.resize(cut)
                    if last >= 0:
                        ids.push_back(last)
                    ends.push_back(ids.size())
        finally:
            if slot >= 0:
                self.free_slots.append(slot)
        row_start = 0
        for k in range(n):
            row = ids_to_list(ids.data() + row_start, ends[k] - row_start, self.id_objects)
            Py_INCREF(row)
            PyList_SET_ITEM(out, k, <PyObject*>row)
            row_start = ends[k]
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
