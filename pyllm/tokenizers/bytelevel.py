"""The byte-level alphabet of GPT-2 style BPE: every byte maps to one
printable unicode character, so any byte string is a str of "symbols".
The per-byte loops run in the Cython core (_bytelevel); the pure-Python
versions here are the reference they are tested against.

>>> encode_bytelevel(" hi".encode())
'Ġhi'
>>> decode_bytelevel('Ġhi')
b' hi'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict

from . import _bytelevel


@lru_cache(maxsize=None)
def bytes_to_unicode() -> Dict[int, str]:
    """Byte value -> symbol. Printable Latin-1 bytes map to themselves; the
    other 68 bytes map to code points 256, 257, ... in byte order."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def encode_bytelevel_ref(data: bytes) -> str:
    """Reference: bytes -> symbol string."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def decode_bytelevel_ref(text: str) -> bytes:
    """Reference: symbol string -> bytes; raises ValueError on a character
    outside the byte-level alphabet."""
    inverse = {s: b for b, s in bytes_to_unicode().items()}
    out = bytearray()
    for i, ch in enumerate(text):
        if ch not in inverse:
            raise ValueError(f"character {ch!r} at index {i} is not a byte-level symbol")
        out.append(inverse[ch])
    return bytes(out)


def encode_bytelevel(data: bytes) -> str:
    """bytes -> symbol string (fast path)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    return _bytelevel.encode(bytes(data))


def decode_bytelevel(text: str) -> bytes:
    """symbol string -> bytes (fast path); ValueError on a foreign character."""
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    return _bytelevel.decode(text)
