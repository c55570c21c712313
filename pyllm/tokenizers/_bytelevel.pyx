# cython: language_level=3, boundscheck=False, wraparound=False
# The per-byte loops of the byte-level alphabet (see bytelevel.py for the
# table and the reference). Not BPE merging itself.

include "_alphabet.pxi"


def encode(bytes data):
    """bytes -> str of byte-level symbols."""
    cdef Py_ssize_t n = len(data), i
    cdef const unsigned char* p = data
    cdef list out = [None] * n
    for i in range(n):
        out[i] = chr(_BYTE_TO_SYM[p[i]])
    return "".join(out)


def decode(str text):
    """str of byte-level symbols -> bytes; ValueError on any other character."""
    cdef Py_ssize_t n = len(text), i
    cdef bytearray out = bytearray(n)
    cdef unsigned char* q = out
    cdef Py_UCS4 ch
    cdef int b
    for i in range(n):
        ch = text[i]
        b = _SYM_TO_BYTE[ch] if ch < 512 else -1
        if b < 0:
            raise ValueError(f"character {ch!r} at index {i} is not a byte-level symbol")
        q[i] = <unsigned char>b
    return bytes(out)
