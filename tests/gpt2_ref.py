"""A readable numpy float64 GPT-2 forward and backward pass: the reference the
fast training path is tested against on tiny models. Not fast, not used by pyllm."""

from __future__ import annotations

import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    return xhat * w + b, (xhat, rstd)


def layernorm_back(dy, w, cache):
    xhat, rstd = cache
    dxhat = dy * w
    dx = (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)) * rstd
    return dx, (dy * xhat).reshape(-1, w.size).sum(0), dy.reshape(-1, w.size).sum(0)


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x**3)))


def gelu_back(dy, x):
    th = np.tanh(GELU_C * (x + 0.044715 * x**3))
    return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_C * (1.0 + 3 * 0.044715 * x * x))


def attention(qkv, NH):
    # qkv (B,T,3C) -> y (B,T,C), probabilities (B,NH,T,T)
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, C // NH).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(C // NH)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C), (q, k, v, p)


def attention_back(dy, NH, cache):
    q, k, v, p = cache
    B, _, T, HS = q.shape
    dy = dy.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    dp = dy @ v.transpose(0, 1, 3, 2)
    dv = p.transpose(0, 1, 3, 2) @ dy
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / math.sqrt(HS)
    dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
    return np.concatenate([d.transpose(0, 2, 1, 3).reshape(B, T, NH * HS) for d in (dq, dk, dv)], axis=-1)


def forward_backward(W, cfg, ids, labels):
    """W: HF name -> float64 array; ids, labels (B,T) -> (loss, logits, grads by name)."""
    L, NH, eps = cfg["n_layer"], cfg["n_head"], cfg["layer_norm_epsilon"]
    B, T = ids.shape
    g = {name: np.zeros_like(w) for name, w in W.items()}
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T]  # (B,T,C)
    caches = []
    for i in range(L):
        h = f"transformer.h.{i}."
        a, ln1c = layernorm(x, W[h + "ln_1.weight"], W[h + "ln_1.bias"], eps)
        qkv = a @ W[h + "attn.c_attn.weight"] + W[h + "attn.c_attn.bias"]
        y, attc = attention(qkv, NH)
        x2 = x + y @ W[h + "attn.c_proj.weight"] + W[h + "attn.c_proj.bias"]
        m, ln2c = layernorm(x2, W[h + "ln_2.weight"], W[h + "ln_2.bias"], eps)
        f = m @ W[h + "mlp.c_fc.weight"] + W[h + "mlp.c_fc.bias"]
        x3 = x2 + gelu(f) @ W[h + "mlp.c_proj.weight"] + W[h + "mlp.c_proj.bias"]
        caches.append((a, ln1c, y, attc, m, ln2c, f))
        x = x3
    z, lnfc = layernorm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    logits = z @ W["transformer.wte.weight"].T  # (B,T,V)

    valid = labels != -100
    n = valid.sum()
    zl = logits - logits.max(-1, keepdims=True)
    logp = zl - np.log(np.exp(zl).sum(-1, keepdims=True))
    tgt = np.where(valid, labels, 0)
    nll = -np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    loss = (nll * valid).sum() / n

    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, tgt[..., None], np.take_along_axis(dlogits, tgt[..., None], -1) - 1.0, -1)
    dlogits *= (valid / n)[..., None]
    C = z.shape[-1]
    g["transformer.wte.weight"] += dlogits.reshape(-1, dlogits.shape[-1]).T @ z.reshape(-1, C)
    dx, g["transformer.ln_f.weight"], g["transformer.ln_f.bias"] = layernorm_back(
        dlogits @ W["transformer.wte.weight"], W["transformer.ln_f.weight"], lnfc)

    def linear_back(dout, inp, name):
        g[name + ".weight"] += inp.reshape(-1, inp.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])
        g[name + ".bias"] += dout.reshape(-1, dout.shape[-1]).sum(0)
        return dout @ W[name + ".weight"].T

    for i in reversed(range(L)):
        h = f"transformer.h.{i}."
        a, ln1c, y, attc, m, ln2c, f = caches[i]
        df = gelu_back(linear_back(dx, gelu(f), h + "mlp.c_proj"), f)
        dm = linear_back(df, m, h + "mlp.c_fc")
        d, g[h + "ln_2.weight"], g[h + "ln_2.bias"] = layernorm_back(dm, W[h + "ln_2.weight"], ln2c)
        dx = dx + d
        dy = linear_back(dx, y, h + "attn.c_proj")
        da = linear_back(attention_back(dy, NH, attc), a, h + "attn.c_attn")
        d, g[h + "ln_1.weight"], g[h + "ln_1.bias"] = layernorm_back(da, W[h + "ln_1.weight"], ln1c)
        dx = dx + d
    np.add.at(g["transformer.wte.weight"], ids.reshape(-1), dx.reshape(-1, C))
    g["transformer.wpe.weight"][:T] += dx.sum(0)
    return float(loss), logits, g


def loss_only(W, cfg, ids, labels):
    return forward_backward(W, cfg, ids, labels)[0]
