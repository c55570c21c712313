"""Quantized tensors in GGUF's formats: dequantize, quantize, and the
quantized matrix product inference runs on. Not a GGUF file reader.

A GGUF weight of shape (N, K) is N rows of K elements; a row is K/block
blocks of ``block_bytes`` bytes each. Every type GGUF defines is a row of
one table, kept in C++ (``csrc/kernels/quant_types.h``, with each layout)
and read here as :data:`TYPES`:

>>> from pyllm import quant
>>> t = quant.type_info("Q4_K")
>>> t.id, t.block, t.block_bytes, t.computable
(12, 256, 144, True)

The runtime computes with :data:`SUPPORTED_TYPES` (F32, F16 and BF16
arrays; Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL blocks of 32; Q2_K to Q6_K
and IQ4_XS super-blocks of 256), each decoded exactly as gguf's numpy
dequantizers decode it; :func:`quantize` writes :data:`QUANTIZED_TYPES`
(Q8_0, Q4_0, Q4_1). The other types (IQ1-IQ3, TQ, MXFP4, ...) are known by
name and size, so files holding them read, but nothing computes with them.

>>> import numpy as np
>>> x = np.linspace(-1, 1, 64, dtype=np.float32)
>>> raw = quant.quantize(x, "Q8_0")
>>> raw.nbytes
68
>>> bool(np.abs(quant.dequantize(raw, "Q8_0", 64) - x).max() <= 1 / 254)
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, SupportsInt, Tuple, Union, cast

import numpy as np

from . import _C

__all__ = [
    "QuantType",
    "TYPES",
    "GGML_TYPES",
    "BLOCK_SIZES",
    "TYPE_SIZES",
    "SUPPORTED_TYPES",
    "QUANTIZED_TYPES",
    "FILE_TYPES",
    "type_info",
    "type_name",
    "row_bytes",
    "dequantize",
    "quantize",
    "quantize_file",
    "qmatmul",
]


@dataclass(frozen=True)
class QuantType:
    """One GGUF tensor type: a row of the C++ table."""

    id: int  # ggml type id
    name: str  # GGUF's name for it, e.g. "Q4_K"
    block: int  # elements per block (1 for plain arrays)
    block_bytes: int  # bytes per block
    computable: bool  # the runtime computes with it (dequantize reads it)
    quantizable: bool  # quantize writes it
    file_quantizable: bool  # quantize_file (and so ``pyllm quantize``) writes it
    packed: bool  # the runtime repacks its matrices at load (groups of 16 rows) for its packed products


# every tensor type GGUF defines, in ggml id order
TYPES: Tuple[QuantType, ...] = tuple(QuantType(**row) for row in _C.quant_types())
_BY_ID: Dict[int, QuantType] = {t.id: t for t in TYPES}
_BY_NAME: Dict[str, QuantType] = {t.name: t for t in TYPES}
# name -> ggml id, elements per block and bytes per block, of every type
GGML_TYPES: Dict[str, int] = {t.name: t.id for t in TYPES}
BLOCK_SIZES: Dict[str, int] = {t.name: t.block for t in TYPES}
TYPE_SIZES: Dict[str, int] = {t.name: t.block_bytes for t in TYPES}
# the types the runtime computes with, and those quantize() writes
SUPPORTED_TYPES: Tuple[str, ...] = tuple(t.name for t in TYPES if t.computable)
QUANTIZED_TYPES: Tuple[str, ...] = tuple(t.name for t in TYPES if t.quantizable)
# the types quantize_file (and ``pyllm quantize``) writes
FILE_TYPES: Tuple[str, ...] = tuple(t.name for t in TYPES if t.file_quantizable)

TensorType = Union[str, int]


def type_info(type: TensorType) -> QuantType:
    """The table row of a type given by name or ggml id; ValueError if GGUF
    defines no such type.

    >>> type_info(23).name, type_info("iq4_xs").block_bytes
    ('IQ4_XS', 136)
    """
    if isinstance(type, (int, np.integer)) and not isinstance(type, bool):
        row = _BY_ID.get(int(type))
        if row is None:
            raise ValueError(f"unknown tensor type id {int(type)}; GGUF's types are {', '.join(GGML_TYPES)}")
        return row
    if isinstance(type, str):
        row = _BY_NAME.get(type.upper())
        if row is None:
            raise ValueError(f"unknown tensor type {type!r}; GGUF's types are {', '.join(GGML_TYPES)}")
        return row
    raise TypeError(f"tensor type must be a name or a ggml id, got {type!r}")


def type_name(type: TensorType, quantized_only: bool = False) -> str:
    """The canonical name of a type this module computes with (or, with
    ``quantized_only``, writes), given by name or ggml id.

    >>> type_name(3), type_name("q8_0"), type_name(12)
    ('Q4_1', 'Q8_0', 'Q4_K')
    """
    row = type_info(type)
    supported = QUANTIZED_TYPES if quantized_only else SUPPORTED_TYPES
    if row.name not in supported:
        raise ValueError(f"unsupported tensor type {row.name}; supported: {', '.join(supported)}")
    return row.name


def row_bytes(type: TensorType, n: int) -> int:
    """Bytes that ``n`` elements of ``type`` take (``n`` a multiple of its
    block size), for any type GGUF defines.

    >>> row_bytes("Q4_1", 576), row_bytes("IQ2_XXS", 512)
    (360, 132)
    """
    row = type_info(type)
    _check_multiple(row.name, n, "n")
    return n // row.block * row.block_bytes


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
    """Decode raw tensor bytes of ``type`` (one of :data:`SUPPORTED_TYPES`)
    to float32, exactly: the bits gguf's numpy dequantizers give.

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


def quantize_file(x: object, type: TensorType, threads: Optional[int] = None) -> np.ndarray:
    """Quantize rows (..., K) of floats to ``type`` (one of
    :data:`FILE_TYPES`) as ``pyllm quantize`` writes file tensors: uint8
    (..., row_bytes(type, K)).

    Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 come out bit for bit as the gguf
    package's numpy quantizers write them; the K types (Q2_K to Q6_K) and
    IQ4_NL/IQ4_XS search each sub-block's scale (and minimum) for the least
    weighted squared error, then quantize the sub-block scales against the
    block's. Rows are split over ``threads`` threads (default: all cores),
    without the GIL.

    >>> x = np.linspace(-1, 1, 512, dtype=np.float32).reshape(2, 256)
    >>> raw = quantize_file(x, "Q4_K")
    >>> raw.shape, bool(np.abs(dequantize(raw, "Q4_K", x.shape) - x).max() < 0.02)
    ((2, 144), True)
    """
    row = type_info(type)
    if row.name not in FILE_TYPES:
        raise ValueError(f"quantize_file does not write {row.name}; it writes {', '.join(FILE_TYPES)}")
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"x must be a floating-point array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    _check_multiple(row.name, a.shape[-1], "x's last dimension")
    if threads is None:
        threads = os.cpu_count() or 1
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    K = a.shape[-1]
    x2 = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, K)
    out = _C.quantize_file(x2, row.id, int(threads))
    return out.reshape(a.shape[:-1] + (row_bytes(row.name, K),))


def qmatmul(x: object, w_raw: object, type: TensorType) -> np.ndarray:
    """``x @ W.T`` for a weight W (N, K) stored as raw rows of ``type``.

    ``x`` is (..., K) floats; ``w_raw`` is uint8 (N, row_bytes(type, K)).
    W is decoded exactly (as :func:`dequantize` decodes it) and multiplied
    by x in fp32, through the runtime's product for the type: Q8_0, Q4_0
    and Q4_1 repacked in groups of 16 rows, every other type row by row.

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
