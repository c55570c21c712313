"""Gemma 3 (text) on the decoder runtime: Gemma 2's block without
soft-capping, with (1 + w) RMSNorm on each query and key head, five
sliding-window layers to one global, and two RoPE tables (local layers
at their own base, global layers at rope_theta with linear scaling).
GGUF files (``general.architecture = gemma3``) and Hugging Face
``gemma3_text`` directories (Gemma3ForCausalLM)."""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

from .decoder import DecoderConfig, Loaded, rope_tables
from .gemma2 import GEMMA_LAYER, embed_scale, gemma_gguf, hf_layer_types, norm_offset
from .gguf import GGUFFile
from .hfdir import HFCheckpoint
from .llama import gguf_rope_scale
from .mapping import (
    LLAMA_GLOBAL,
    LLAMA_IGNORED,
    HFSource,
    config_fields,
    hf_activation,
    hf_ids,
    hf_sizes,
    spec,
    tie_output,
)
from .registry import Architecture, register


def from_gguf(f: GGUFFile) -> Loaded:
    src, sizes, eps, windows = gemma_gguf(f, "gemma3", 6)
    theta = float(src.key("rope.freq_base", 1000000.0))
    local = float(src.key("rope.freq_base_swa", 10000.0))
    scale = gguf_rope_scale(src)
    tensors = src.finish({})
    tied = "output" not in tensors
    tie_output(tensors, True)
    hs = sizes["head_dim"]
    cfg = DecoderConfig(**config_fields(sizes, "gemma3_text", eps, theta, tied,
                                        src.special_ids(), sliding_window=max(windows), rope_local_base_freq=local))
    s = spec(sizes, eps=eps, act="gelu_glu", attn_scale=1.0 / math.sqrt(hs),
             embed_scale=embed_scale(sizes["hidden_size"]), window=windows,
             rope_table=[1 if w else 0 for w in windows])
    return Loaded(cfg, s, tensors, lambda n: [rope_tables(n, hs, theta, None, scale), rope_tables(n, hs, local)],
                  f.path, src.types(), True, f)


def hf_rope_by_type(src: HFSource) -> Dict[str, Tuple[float, float]]:
    """(theta, linear scale) of full and sliding layers: transformers 5's per-type
    ``rope_parameters`` or the older ``rope_theta`` + ``rope_scaling`` + ``rope_local_base_freq``."""
    params: Any = src.get("rope_parameters", None)
    out: Dict[str, Tuple[float, float]] = {}
    if isinstance(params, dict) and "full_attention" in params:
        items = params.items()
    else:
        scaling = dict(src.get("rope_scaling", None) or {})
        items = {"full_attention": {**scaling, "rope_theta": src.get("rope_theta", 1000000.0)},
                 "sliding_attention": {"rope_theta": src.get("rope_local_base_freq", 10000.0)}}.items()
    for kind, p in items:
        rt = p.get("rope_type", p.get("type", "default"))
        if rt not in ("default", "linear"):
            raise ValueError(f"{src.ckpt.path}: rope_type {rt!r} is not supported here; supported: default, linear")
        out[kind] = (float(p["rope_theta"]), float(p.get("factor", 1.0)) if rt == "linear" else 1.0)
    return out


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    src = HFSource(ckpt)
    sizes = hf_sizes(src)
    hf_activation(src, ("gelu_pytorch_tanh", "gelu_tanh"))
    eps = float(src.get("rms_norm_eps", 1e-6))
    types = hf_layer_types(src, sizes["n_layer"], int(src.get("sliding_window_pattern", 6)))
    window = int(src.get("sliding_window"))
    windows = [window if t == "sliding_attention" else 0 for t in types]
    for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
        if src.get(cap, None):
            raise ValueError(f"{ckpt.path}: {cap} is not part of Gemma 3 as pyllm runs it")
    rope = hf_rope_by_type(src)
    tensors = src.map(LLAMA_GLOBAL, GEMMA_LAYER, LLAMA_IGNORED, norm_offset)
    tied = "output" not in tensors
    tie_output(tensors, bool(src.get("tie_word_embeddings", True)))
    hs = sizes["head_dim"]
    (g_theta, g_scale), (l_theta, l_scale) = rope["full_attention"], rope["sliding_attention"]
    cfg = DecoderConfig(**config_fields(sizes, "gemma3_text", eps, g_theta, tied, hf_ids(src),
                                        sliding_window=window, rope_local_base_freq=l_theta))
    s = spec(sizes, eps=eps, act="gelu_glu", attn_scale=float(src.get("query_pre_attn_scalar", hs)) ** -0.5,
             embed_scale=embed_scale(sizes["hidden_size"]), window=windows,
             rope_table=[1 if w else 0 for w in windows])
    return Loaded(cfg, s, tensors,
                  lambda n: [rope_tables(n, hs, g_theta, None, g_scale), rope_tables(n, hs, l_theta, None, l_scale)],
                  ckpt.path, src.types(), False, ckpt)


register(Architecture("gemma3", ("gemma3",), ("gemma3_text",), from_gguf, from_hf))
