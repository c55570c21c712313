"""Numpy-facing wrappers over pyllm's C++ kernels: numpy in, numpy out.
Shape handling and input policy live here; no arithmetic beyond reshapes.

Input policy (every op): floating-point arrays of any precision and memory
layout are accepted and converted to C-contiguous float32 (copied only when
needed); integer, bool, complex and object arrays raise ``ValueError``, as
do shapes that do not fit. Outputs are new float32 arrays. Index inputs
(``positions``, ``ids``) must be integer arrays.

>>> import numpy as np
>>> from pyllm import ops
>>> ops.matmul(np.ones((2, 3)), np.ones((3, 4))).shape
(2, 4)
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from . import _C

__all__ = [
    "matmul",
    "linear",
    "softmax",
    "log_softmax",
    "rms_norm",
    "layer_norm",
    "gelu",
    "silu",
    "rope",
    "embedding",
    "scaled_dot_product_attention",
]


def _floats(x: object, name: str) -> np.ndarray:
    """``x`` as a floating-point array of its own dtype and layout (no copy)."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    return a


def _f32(x: object, name: str) -> np.ndarray:
    return np.asarray(_floats(x, name), dtype=np.float32, order="C")


def _ints(x: object, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has values beyond int64")
    return np.asarray(a, dtype=np.int64, order="C")


def _flat2(x: np.ndarray) -> np.ndarray:
    """(..., C) -> (rows, C) view (works when C or rows is 0)."""
    return x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1])


def _compact_batch(x: np.ndarray, nbatch: int) -> np.ndarray:
    """``x`` with each of its first ``nbatch`` axes that repeats one slice
    (stride 0: a ``broadcast_to`` view) cut to length 1; the result
    broadcasts back to ``x``, so a batch that is not there is not copied."""
    keep = tuple(
        slice(0, 1) if x.shape[i] > 1 and x.strides[i] == 0 else slice(None) for i in range(nbatch)
    )
    return x[keep]


def _expand(out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` broadcast to ``shape`` as a C-contiguous array (``out`` itself when it is one)."""
    res = out if out.shape == shape else np.broadcast_to(out, shape)
    return res if res.flags.c_contiguous else res.copy()  # (ascontiguousarray would make a 0-d result 1-d)


def _rows(x: np.ndarray, op: str) -> np.ndarray:
    """(..., C) -> (rows, C) view; a 0-d input is refused."""
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least one dimension")
    return _flat2(x)


def matmul(a: object, b: object) -> np.ndarray:
    """Matrix product with ``numpy.matmul`` semantics, in float32.

    2-D ``(M, K) @ (K, N)``; leading batch dimensions broadcast without
    being copied (a batch axis of stride 0, as ``np.broadcast_to`` makes,
    is read once); a 1-D operand is promoted and the added dimension
    removed afterwards. One or a few rows take a GEMV path that streams
    ``b`` once. Zero-size operands give numpy's result (zeros when K is 0).

    >>> matmul(np.eye(2), np.arange(4.0).reshape(2, 2)).tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    a0, b0 = _floats(a, "a"), _floats(b, "b")
    if a0.ndim == 0 or b0.ndim == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    if a0.shape[-1] != b0.shape[-2 if b0.ndim > 1 else 0]:
        raise ValueError(
            f"matmul: a has shape {a0.shape} and b has shape {b0.shape}: "
            "the last dimension of a must equal the second-to-last of b"
        )
    if b0.ndim == 1:
        # (..., K) @ (K,) -> (...): the rows of a dotted with b, as one GEMV
        a32 = _f32(_compact_batch(a0, a0.ndim - 1), "a")
        out = _C.matmul(_f32(b0, "b")[None, :], _flat2(a32), trans_b=True)  # (1, rows)
        return _expand(out.reshape(a32.shape[:-1]), a0.shape[:-1])
    if a0.ndim == 1:
        out = matmul(a0[None, :], b0)  # (..., 1, N)
        return out.reshape(out.shape[:-2] + out.shape[-1:])
    try:
        batch = np.broadcast_shapes(a0.shape[:-2], b0.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of a {a0.shape} and b {b0.shape} do not broadcast"
        ) from None
    M, K, N = a0.shape[-2], a0.shape[-1], b0.shape[-1]
    # broadcast views are read in place: only the batches really there are converted
    a32 = _f32(_compact_batch(a0, a0.ndim - 2), "a")
    b32 = _f32(_compact_batch(b0, b0.ndim - 2), "b")
    ab, bb = a32.shape[:-2], b32.shape[:-2]
    na, nb = math.prod(ab), math.prod(bb)
    cbatch = np.broadcast_shapes(ab, bb)
    if nb == 1:
        # one b for every batch of a: one GEMM over all of a's rows
        out = _C.matmul(a32.reshape(na * M, K), b32.reshape(K, N))  # (na*M, N)
    elif na == 1:
        # one a for every batch of b: one GEMM over all of b's columns
        bk = np.ascontiguousarray(b32.reshape(nb, K, N).transpose(1, 0, 2)).reshape(K, nb * N)
        out = _C.matmul(a32.reshape(M, K), bk).reshape(M, nb, N).transpose(1, 0, 2)  # (nb, M, N)
    else:
        # batch i multiplies a[ia[i]] by b[ib[i]]: broadcasting by index, not by copy
        ia = np.ascontiguousarray(np.broadcast_to(np.arange(na, dtype=np.int64).reshape(ab), cbatch))
        ib = np.ascontiguousarray(np.broadcast_to(np.arange(nb, dtype=np.int64).reshape(bb), cbatch))
        out = _C.matmul_batched(a32.reshape(na, M, K), b32.reshape(nb, K, N), ia.reshape(-1), ib.reshape(-1))
    return _expand(out.reshape(cbatch + (M, N)), batch + (M, N))


def linear(x: object, weight: object, bias: Optional[object] = None) -> np.ndarray:
    """``x @ weight.T + bias``, as ``torch.nn.functional.linear``.

    x ``(..., in_features)``, weight ``(out_features, in_features)``,
    bias ``(out_features,)`` or None -> ``(..., out_features)``.

    >>> linear(np.ones((1, 3)), np.ones((2, 3)), np.array([0.0, 1.0])).tolist()
    [[3.0, 4.0]]
    """
    x32, w32 = _f32(x, "input"), _f32(weight, "weight")
    if x32.ndim == 0:
        raise ValueError("linear: input must have at least one dimension")
    if w32.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {w32.shape}")
    if w32.shape[1] != x32.shape[-1]:
        raise ValueError(
            f"linear: input has {x32.shape[-1]} features but weight expects {w32.shape[1]} "
            f"(weight shape {w32.shape})"
        )
    b32 = None if bias is None else _f32(bias, "bias")
    out = _C.linear(_flat2(x32), w32, b32)
    return out.reshape(x32.shape[:-1] + (w32.shape[0],))


def _along_last(x: np.ndarray, axis: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of {x.ndim} dimensions")
    axis %= x.ndim
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    out = fn(_flat2(moved)).reshape(moved.shape)
    return np.moveaxis(out, -1, axis)


def softmax(x: object, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (max subtracted first; a row of all ``-inf``
    gives NaN, as in torch).

    >>> softmax(np.zeros(4)).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    return _along_last(_f32(x, "x"), axis, _C.softmax)


def log_softmax(x: object, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` along ``axis``, computed as
    ``x - max - log(sum(exp(x - max)))``."""
    return _along_last(_f32(x, "x"), axis, _C.log_softmax)


def rms_norm(x: object, weight: object, eps: float = 1e-6) -> np.ndarray:
    """RMSNorm over the last dimension, as llama / HF ``LlamaRMSNorm``:
    ``x / sqrt(mean(x**2) + eps) * weight``; weight ``(C,)``."""
    x32 = _f32(x, "x")
    out = _C.rms_norm(_rows(x32, "rms_norm"), _f32(weight, "weight"), float(eps))
    return out.reshape(x32.shape)


def layer_norm(
    x: object, weight: Optional[object] = None, bias: Optional[object] = None, eps: float = 1e-5
) -> np.ndarray:
    """LayerNorm over the last dimension, as ``torch.nn.functional.layer_norm``
    with ``normalized_shape = x.shape[-1:]`` (biased variance)."""
    x32 = _f32(x, "x")
    w = None if weight is None else _f32(weight, "weight")
    b = None if bias is None else _f32(bias, "bias")
    return _C.layer_norm(_rows(x32, "layer_norm"), w, b, float(eps)).reshape(x32.shape)


def gelu(x: object, approximate: str = "none") -> np.ndarray:
    """GELU, as ``torch.nn.functional.gelu``: ``approximate="none"`` (erf)
    or ``"tanh"`` (the GPT-2 form)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _C.gelu(_f32(x, "x"), approximate == "tanh")


def silu(x: object) -> np.ndarray:
    """SiLU (swish): ``x * sigmoid(x)``."""
    return _C.silu(_f32(x, "x"))


def rope(
    x: object,
    positions: Optional[object] = None,
    theta: float = 10000.0,
    interleaved: bool = False,
) -> np.ndarray:
    """Rotary position embedding over the last dimension of ``x (..., T, HS)``.

    ``positions`` ``(T,)`` integers (default ``0..T-1``); frequency ``i``
    is ``theta ** (-2i / HS)``. Layouts: ``interleaved=False`` rotates
    the pairs ``(x[i], x[i + HS/2])`` (HF ``rotate_half``, llama in HF
    checkpoints); ``interleaved=True`` rotates ``(x[2i], x[2i+1])``
    (GPT-J, Meta's original llama and GGUF files). HS must be even; partial
    rotary dimensions are not supported.
    """
    x32 = _f32(x, "x")
    if x32.ndim < 2:
        raise ValueError(f"rope: x must be (..., T, HS), got shape {x32.shape}")
    T, HS = x32.shape[-2], x32.shape[-1]
    pos = np.arange(T, dtype=np.int64) if positions is None else _ints(positions, "positions")
    if pos.ndim != 1 or pos.shape[0] != T:
        raise ValueError(f"rope: positions must be ({T},), got {pos.shape}")
    N = math.prod(x32.shape[:-2])
    out = _C.rope(x32.reshape(N, T, HS), pos, float(theta), bool(interleaved))
    return out.reshape(x32.shape)


def embedding(ids: object, table: object) -> np.ndarray:
    """Rows of ``table (V, C)`` picked by integer ``ids`` of any shape ->
    ``ids.shape + (C,)``; an id outside ``[0, V)`` raises ``ValueError``."""
    idx = _ints(ids, "ids")
    t32 = _f32(table, "table")
    if t32.ndim != 2:
        raise ValueError(f"embedding: table must be 2-D (V, C), got {t32.shape}")
    return _C.embedding(idx.reshape(-1), t32).reshape(idx.shape + (t32.shape[1],))


def scaled_dot_product_attention(
    query: object,
    key: object,
    value: object,
    attn_mask: Optional[object] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    enable_gqa: bool = True,
) -> np.ndarray:
    """Attention with ``torch.nn.functional.scaled_dot_product_attention``
    semantics, fused (online softmax; no (T, S) score matrix is stored).

    query ``(B, NH, T, HS)``, key/value ``(B, NKV, S, HS)`` (or 3-D
    without the head axis). When NH is a multiple of NKV, query head h uses
    key/value head ``h // (NH // NKV)`` (grouped-query attention, torch's
    ``enable_gqa=True``). ``attn_mask`` broadcasts to ``(B, NH, T, S)``:
    bool (True = may attend) or float (added to the scores). ``is_causal``
    uses torch's top-left alignment: query t sees keys ``s <= t``.
    ``scale`` defaults to ``1 / sqrt(HS)``. A query whose keys are all
    masked gets zeros, as torch 2.13 returns. Dropout is not supported (``dropout_p`` must be 0).
    """
    q, k, v = _f32(query, "query"), _f32(key, "key"), _f32(value, "value")
    if dropout_p != 0.0:
        raise ValueError("scaled_dot_product_attention: dropout is not supported (dropout_p must be 0)")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: give attn_mask or is_causal, not both")
    if not (q.ndim == k.ndim == v.ndim) or q.ndim not in (3, 4):
        raise ValueError(
            "scaled_dot_product_attention: query, key and value must all be 4-D (B, heads, T, HS) "
            f"or all 3-D; got {q.shape}, {k.shape}, {v.shape}"
        )
    squeeze = q.ndim == 3
    if squeeze:
        q, k, v = q[:, None], k[:, None], v[:, None]
    B, NH, T, HS = q.shape
    if k.shape[0] != B or k.shape[3] != HS:
        raise ValueError(f"scaled_dot_product_attention: key {k.shape} does not match query {q.shape}")
    if v.shape != k.shape:
        raise ValueError(f"scaled_dot_product_attention: value {v.shape} must match key {k.shape}")
    NKV, S = k.shape[1], k.shape[2]
    if NKV == 0 and NH != 0:
        raise ValueError(
            f"scaled_dot_product_attention: {NH} query heads and 0 key/value heads: "
            "key and value need at least one head"
        )
    if NH != NKV and (not enable_gqa or NH % NKV != 0):
        raise ValueError(
            f"scaled_dot_product_attention: {NH} query heads and {NKV} key/value heads: "
            "the query heads must be a multiple of the key/value heads"
        )
    mask = None
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        mask_shape = m.shape
        if m.dtype == np.bool_:
            m = np.where(m, np.float32(0.0), np.float32(-np.inf))
        elif m.dtype.kind == "f":
            m = m.astype(np.float32, copy=False)
        else:
            raise ValueError(f"attn_mask must be bool or floating point, got dtype {m.dtype}")
        if squeeze and m.ndim >= 3:
            m = m[..., None, :, :]  # (B, T, S) -> (B, 1, T, S)
        try:
            mb = np.broadcast_to(m, (B, NH, T, S))
        except ValueError:
            raise ValueError(
                f"attn_mask of shape {mask_shape} does not broadcast to {(B, NH, T, S)}"
            ) from None
        if mb.strides[-1] != 4 or any(st % 4 for st in mb.strides):
            mb = np.ascontiguousarray(mb)
        mask = mb
    if q.size == 0:
        # no batch, head, query or head dimension: nothing to attend (as torch)
        out = np.zeros((B, NH, T, HS), dtype=np.float32)
        return out[:, 0] if squeeze else out
    sc = 1.0 / math.sqrt(HS) if scale is None else float(scale)
    out = _C.attention(q, k, v, mask, bool(is_causal), sc, 0)
    return out[:, 0] if squeeze else out
