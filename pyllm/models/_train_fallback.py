"""numpy stand-ins for training kernels that this build of pyllm._C lacks, with
the same in-place contract (outputs first; backward kernels accumulate). Not fast."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, List

import numpy as np

from .. import _C

NAMES = (
    "sgemm", "bias_add", "bias_backward", "encoder_forward", "encoder_backward",
    "layernorm_forward", "layernorm_backward", "gelu_forward", "gelu_backward",
    "attention_forward", "attention_backward", "residual_forward",
    "crossentropy_forward", "crossentropy_backward", "adamw_step", "sumsq", "scale_",
)

_GELU_C = math.sqrt(2.0 / math.pi)


def sgemm(out: np.ndarray, a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False,
          accumulate: bool = False) -> None:
    # a (M,K) or (K,M), b (K,N) or (N,K) -> out (M,N)
    prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if accumulate:
        out += prod
    else:
        out[...] = prod


def bias_add(out: np.ndarray, bias: np.ndarray) -> None:
    out += bias


def bias_backward(dbias: np.ndarray, dout: np.ndarray) -> None:
    dbias += dout.sum(axis=0, dtype=np.float64).astype(np.float32)


def encoder_forward(out: np.ndarray, ids: np.ndarray, wte: np.ndarray, wpe: np.ndarray) -> None:
    # ids (B,T) -> out (B,T,C)
    if ids.size and (ids.min() < 0 or ids.max() >= wte.shape[0]):
        raise ValueError(f"token ids must be in [0, {wte.shape[0]})")
    out[...] = wte[ids] + wpe[: ids.shape[1]]


def encoder_backward(dwte: np.ndarray, dwpe: np.ndarray, dout: np.ndarray, ids: np.ndarray) -> None:
    # dout (B,T,C) -> dwte (V,C), dwpe (maxT,C)
    C = dout.shape[-1]
    np.add.at(dwte, ids.reshape(-1), dout.reshape(-1, C))
    dwpe[: ids.shape[1]] += dout.sum(axis=0)


def layernorm_forward(out: np.ndarray, mean: np.ndarray, rstd: np.ndarray, inp: np.ndarray,
                      weight: np.ndarray, bias: np.ndarray, eps: float) -> None:
    # inp (R,C) -> out (R,C), mean (R,), rstd (R,)
    m = inp.mean(axis=-1)
    xc = inp - m[:, None]
    r = 1.0 / np.sqrt((xc * xc).mean(axis=-1) + np.float32(eps))
    mean[...] = m
    rstd[...] = r
    out[...] = xc * r[:, None] * weight + bias


def layernorm_backward(dinp: np.ndarray, dweight: np.ndarray, dbias: np.ndarray, dout: np.ndarray,
                       inp: np.ndarray, weight: np.ndarray, mean: np.ndarray, rstd: np.ndarray) -> None:
    # dout (R,C), inp (R,C) -> dinp (R,C) +=, dweight (C,) +=, dbias (C,) +=
    xhat = (inp - mean[:, None]) * rstd[:, None]
    dbias += dout.sum(axis=0)
    dweight += (dout * xhat).sum(axis=0)
    dxhat = dout * weight
    dinp += (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)) * rstd[:, None]


def gelu_forward(out: np.ndarray, inp: np.ndarray) -> None:
    x = inp
    out[...] = 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))


def gelu_backward(dinp: np.ndarray, inp: np.ndarray, dout: np.ndarray) -> None:
    x = inp
    th = np.tanh(_GELU_C * (x + 0.044715 * x**3))
    dudx = _GELU_C * (1.0 + 3 * 0.044715 * x * x)
    dinp += dout * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * dudx)


def _heads(qkv: np.ndarray, n_head: int) -> Any:
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    return q, k, v, hs  # each (B,NH,T,HS)


def attention_forward(out: np.ndarray, att: np.ndarray, qkv: np.ndarray, n_head: int) -> None:
    # qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T)
    B, T, _ = qkv.shape
    q, k, v, hs = _heads(qkv, n_head)
    s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(hs))
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    att[...] = s / s.sum(-1, keepdims=True)
    out[...] = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)


def attention_backward(dqkv: np.ndarray, dout: np.ndarray, qkv: np.ndarray, att: np.ndarray, n_head: int) -> None:
    # dout (B,T,C) -> dqkv (B,T,3C) +=
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v, hs = _heads(qkv, n_head)
    dy = dout.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)
    datt = dy @ v.transpose(0, 1, 3, 2)
    dv = att.transpose(0, 1, 3, 2) @ dy
    ds = att * (datt - (datt * att).sum(-1, keepdims=True)) * np.float32(1.0 / math.sqrt(hs))
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    for i, d in enumerate((dq, dk, dv)):
        dqkv[..., i * C:(i + 1) * C] += d.transpose(0, 2, 1, 3).reshape(B, T, C)


def residual_forward(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    np.add(a, b, out=out)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    out: np.ndarray = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return out


def crossentropy_forward(losses: np.ndarray, logits: np.ndarray, targets: np.ndarray) -> None:
    # logits (R,V), targets (R,) -> losses (R,)
    V = logits.shape[1]
    valid = targets != -100
    if ((targets[valid] < 0) | (targets[valid] >= V)).any():
        raise ValueError(f"targets must be in [0, {V}) or -100")
    lp = _log_softmax(logits)
    t = np.where(valid, targets, 0)
    losses[...] = np.where(valid, -lp[np.arange(len(t)), t], 0.0)


def crossentropy_backward(dlogits: np.ndarray, logits: np.ndarray, targets: np.ndarray, dloss: float) -> None:
    # logits (R,V), targets (R,) -> dlogits (R,V) written (may alias logits)
    valid = targets != -100
    p = np.exp(_log_softmax(logits))
    rows = np.flatnonzero(valid)
    p[rows, targets[rows]] -= 1.0
    p *= np.where(valid, np.float32(dloss), np.float32(0.0))[:, None]
    dlogits[...] = p


def adamw_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float, step: int) -> None:
    param *= np.float32(1.0 - lr * weight_decay)
    m *= np.float32(beta1)
    m += np.float32(1.0 - beta1) * grad
    v *= np.float32(beta2)
    v += np.float32(1.0 - beta2) * grad * grad
    denom = np.sqrt(v) / np.float32(math.sqrt(1.0 - beta2**step)) + np.float32(eps)
    param -= np.float32(lr / (1.0 - beta1**step)) * m / denom


def sumsq(x: np.ndarray) -> float:
    x64 = x.astype(np.float64).reshape(-1)
    return float(x64 @ x64)


def scale_(x: np.ndarray, s: float) -> None:
    x *= np.float32(s)


def kernels() -> SimpleNamespace:
    """The training kernels: pyllm._C's where this build has them, the numpy
    stand-ins above otherwise."""
    here = globals()
    return SimpleNamespace(**{n: getattr(_C, n, here[n]) for n in NAMES})


def missing() -> List[str]:
    """Names of the training kernels this build of pyllm._C lacks."""
    return [n for n in NAMES if not hasattr(_C, n)]
