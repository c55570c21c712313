# The byte-level alphabet's tables, shared by the Cython modules that
# `include` this file (bytelevel.py holds the readable table and reference).

cdef Py_UCS4 _BYTE_TO_SYM[256]
cdef int _SYM_TO_BYTE[512]


cdef void _build_alphabet():
    cdef int b, extra = 0
    for b in range(512):
        _SYM_TO_BYTE[b] = -1
    for b in range(256):
        if (0x21 <= b <= 0x7E) or (0xA1 <= b <= 0xAC) or (0xAE <= b <= 0xFF):
            _BYTE_TO_SYM[b] = b
        else:
            _BYTE_TO_SYM[b] = 256 + extra
            extra += 1
        _SYM_TO_BYTE[_BYTE_TO_SYM[b]] = b


_build_alphabet()
