"""Quantized tensors in GGUF's block formats: dequantize, quantize, and the
quantized matrix product inference runs on. Not a GGUF file reader.

A GGUF weight of shape (N, K) is N rows of K elements; a row of a block type
is K/32 blocks of 32 elements (little-endian, packed):

======  ==  =========================================  ================
type    id  block                                      element
======  ==  =========================================  ================
Q8_0    8   fp16 d, int8 q[32] (34 bytes)              d * q
Q4_0    2   fp16 d, uint8 qs[16] (18 bytes)            d * (q - 8)
Q4_1    3   fp16 d, fp16 m, uint8 qs[16] (20 bytes)    d * q + m
======  ==  =========================================  ================

In Q4 blocks element j < 16 is the low nibble of ``qs[j]`` and element j + 16
its high nibble. F32 (0), F16 (1) and BF16 (30) are plain arrays.

>>> import numpy as np
>>> from pyllm import quant
>>> x = np.linspace(-1, 1, 64, dtype=np.float32)
>>> raw = quant.quantize(x, "Q8_0")
>>> raw.nbytes
68
>>> bool(np.abs(quant.dequantize(raw, "Q8_0", 64) - x).max() <= 1 / 254)
True
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, SupportsInt, Union, cast

import numpy as np

from . import _C

__all__ = [
    "GGML_TYPES",
    "BLOCK_SIZES",
    "TYPE_SIZES",
    "QUANTIZED_TYPES",
    "type_name",
    "row_bytes",
    "dequantize",
    "quantize",
    "qmatmul",
]

# GGUF tensor type ids (ggml's enum) this module reads
GGML_TYPES: Dict[str, int] = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "BF16": 30}
# elements per block
BLOCK_SIZES: Dict[str, int] = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_1": 32}
# bytes per block
TYPE_SIZES: Dict[str, int] = {"F32": 4, "F16": 2, "BF16": 2, "Q8_0": 34, "Q4_0": 18, "Q4_1": 20}
# the types quantize() writes
QUANTIZED_TYPES = ("Q8_0", "Q4_0", "Q4_1")

# ggml ids of types this module does not read, so that errors can name them
_OTHER_TYPES = {6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K",
                14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
                20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
                27: "I64", 28: "F64", 29: "IQ1_M"}
_SUPPORTED = "F32, F16, BF16, Q8_0, Q4_0, Q4_1"

TensorType = Union[str, int]


def type_name(type: TensorType, quantized_only: bool = False) -> str:
    """The canonical name of a tensor type given by name or ggml id.

    >>> type_name(3), type_name("q8_0")
    ('Q4_1', 'Q8_0')
    """
    if isinstance(type, (int, np.integer)) and not isinstance(type, bool):
        names = {v: k for k, v in GGML_TYPES.items()}
        name = names.get(int(type), _OTHER_TYPES.get(int(type), f"id {int(type)}"))
    elif isinstance(type, str):
        name = type.upper()
    else:
        raise TypeError(f"tensor type must be a name or a ggml id, got {type!r}")
    supported = ", ".join(QUANTIZED_TYPES) if quantized_only else _SUPPORTED
    if name not in GGML_TYPES or (quantized_only and name not in QUANTIZED_TYPES):
        raise ValueError(f"unsupported tensor type {name}; supported: {supported}")
    return name


def row_bytes(type: TensorType, n: int) -> int:
    """Bytes that ``n`` elements of ``type`` take (``n`` a multiple of its block size).

    >>> row_bytes("Q4_1", 576)
    360
    """
    name = type_name(type)
    _check_multiple(name, n, "n")
    return n // BLOCK_SIZES[name] * TYPE_SIZES[name]


def _check_multiple(name: str, n: int, what: str) -> None:
    block = BLOCK_SIZES[name]
    if n < 0 or n % block:
        raise ValueError(f"{what} must be a multiple of {block} for {name} tensors, got {n}")


def _raw_bytes(raw: object, name: str) -> np.ndarray:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return np.frombuffer(raw, dtype=np.uint8)
    a = np.asarray(raw)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be raw bytes (a uint8 array or bytes), got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def dequantize(raw: object, type: TensorType, shape: Optional[Union[int, Sequence[int]]] = None) -> np.ndarray:
    """Decode raw tensor bytes of ``type`` to float32, exactly.

    ``shape`` is the tensor's shape in elements (its last dimension a
    multiple of the block size); by default the whole buffer, flat.

    >>> raw = quantize(np.full(32, 0.5, dtype=np.float32), "Q4_1")
    >>> dequantize(raw, "Q4_1", (1, 32))[0, :3]
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    name = type_name(type)
    flat = _raw_bytes(raw, "raw").reshape(-1)
    if shape is None:
        if flat.nbytes % TYPE_SIZES[name]:
            raise ValueError(f"{flat.nbytes} bytes is not a whole number of {name} blocks "
                             f"({TYPE_SIZES[name]} bytes each)")
        shape = (flat.nbytes // TYPE_SIZES[name] * BLOCK_SIZES[name],)
    if np.isscalar(shape):
        shape = (int(cast(SupportsInt, shape)),)  # a numpy or Python scalar; int() rejects the others
    else:
        shape = tuple(int(s) for s in cast(Sequence[int], shape))
    n = int(np.prod(shape, dtype=np.int64))
    _check_multiple(name, shape[-1] if shape else 1, "the last dimension")
    want = n // BLOCK_SIZES[name] * TYPE_SIZES[name]
    if flat.nbytes != want:
        raise ValueError(f"raw has {flat.nbytes} bytes, but a {name} tensor of shape {shape} takes {want}")
    return _C.dequantize(flat, GGML_TYPES[name], n).reshape(shape)


def quantize(x: object, type: TensorType) -> np.ndarray:
    """Quantize rows (..., K) of floats to ``type`` (Q8_0, Q4_0 or Q4_1):
    returns uint8 (..., row_bytes(type, K)).

    Round to nearest with the scale stored as fp16 rounded away from the
    data (d up, Q4_1's m down), so, d and m being the stored values:
    Q8_0 and Q4_1 reproduce every element within d/2; Q4_0 (d = the
    largest-magnitude element / -8) within |d|/2, except elements clamped to
    q = 15, within |d|.

    >>> quantize(np.zeros((2, 64), dtype=np.float32), "Q4_0").shape
    (2, 36)
    """
    name = type_name(type, quantized_only=True)
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"x must be a floating-point array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    _check_multiple(name, a.shape[-1], "x's last dimension")
    a = np.ascontiguousarray(a, dtype=np.float32)
    out = _C.quantize(a.reshape(-1), GGML_TYPES[name])
    return out.reshape(a.shape[:-1] + (row_bytes(name, a.shape[-1]),))


def qmatmul(x: object, w_raw: object, type: TensorType) -> np.ndarray:
    """``x @ W.T`` for a weight W (N, K) stored as raw rows of ``type``.

    ``x`` is (..., K) floats; ``w_raw`` is uint8 (N, row_bytes(type, K)).
    For block types and fewer than 32 rows of x (decoding), each row of x is
    first quantized to int8 blocks of 32 (scale max|x|/127), so each output
    is within sum over blocks of (max|x_block| / 254) * sum|w_block| of the
    exact product. From 32 rows (prefill) W is dequantized in panels and
    multiplied in fp32, as are F32/F16/BF16 weights.

    >>> w = quantize(np.eye(32, dtype=np.float32), "Q8_0")   # W = I (32, 32)
    >>> np.round(qmatmul(np.linspace(0, 1, 32), w, "Q8_0")[-3:], 2)
    array([0.94, 0.97, 1.  ], dtype=float32)
    """
    name = type_name(type)
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"x must be a floating-point array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    K = a.shape[-1]
    _check_multiple(name, K, "x's last dimension (K)")
    w = _raw_bytes(w_raw, "w_raw")
    if w.ndim != 2 or w.shape[1] != row_bytes(name, K):
        raise ValueError(f"w_raw must be (N, {row_bytes(name, K)}) bytes for K={K} {name} rows, "
                         f"got shape {w.shape}")
    x2 = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, K)  # (M, K)
    out = _C.qmatmul(x2, w, GGML_TYPES[name], K)
    return out.reshape(a.shape[:-1] + (w.shape[0],))
