"""A readable numpy llama forward pass: the reference the C++ runtime is
tested against on small random models. Not fast, not used by pyllm itself."""

from __future__ import annotations

import numpy as np


def rms_norm(x, w, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps)) * w


def rope_interleaved(x, pos, theta):
    # x (T, H, HS): rotate the pairs (x[2i], x[2i+1]) by pos * theta^(-2i/HS)
    HS = x.shape[-1]
    inv = theta ** (-np.arange(0, HS, 2) / HS)
    ang = pos[:, None] * inv[None, :]  # (T, HS/2)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x1 * c + x0 * s
    return out


def llama_forward(W, cfg, ids):
    """W: name -> float64 array (HF orientation: (out, in)); ids (T,) -> logits (T, V)."""
    T = len(ids)
    NH, NKV, HS = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    pos = np.arange(T, dtype=np.float64)
    x = W["token_embd.weight"][ids]  # (T, C)
    causal = np.tril(np.ones((T, T), dtype=bool))
    for layer in range(cfg["num_hidden_layers"]):
        p = f"blk.{layer}."
        h = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = (h @ W[p + "attn_q.weight"].T).reshape(T, NH, HS)
        k = (h @ W[p + "attn_k.weight"].T).reshape(T, NKV, HS)
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, NKV, HS)
        q, k = rope_interleaved(q, pos, theta), rope_interleaved(k, pos, theta)
        rep = NH // NKV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # (T, NH, HS)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(HS)
        att = np.where(causal[None], att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, NH * HS)
        x = x + o @ W[p + "attn_output.weight"].T
        h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        g = h @ W[p + "ffn_gate.weight"].T
        u = h @ W[p + "ffn_up.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "ffn_down.weight"].T
    h = rms_norm(x, W["output_norm.weight"], eps)
    head = W.get("output.weight", W["token_embd.weight"])
    return h @ head.T
