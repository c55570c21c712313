"""Gemma 2 on the decoder runtime: GeGLU (tanh GELU) MLP, RMSNorm with a
(1 + w) weight, norms before and after each block (sandwich), embeddings
scaled by sqrt(hidden), soft-capped attention scores and logits, sliding
windows on every other layer (the first included). GGUF files
(``general.architecture = gemma2``; llama.cpp's converter stores the norm
weights with the 1 added) and Hugging Face ``gemma2`` directories."""

from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np

from .decoder import DecoderConfig, Loaded, rope_tables
from .gguf import GGUFFile
from .hfdir import HFCheckpoint
from .mapping import (
    LLAMA_GLOBAL,
    LLAMA_IGNORED,
    LLAMA_LAYER,
    GGUFSource,
    HFSource,
    config_fields,
    hf_activation,
    hf_ids,
    hf_sizes,
    spec,
    tie_output,
)
from .registry import Architecture, register

# transformers' Gemma layer names, by runtime slot
GEMMA_LAYER = {**LLAMA_LAYER, "post_attention_layernorm.weight": "post_attention_norm",
               "pre_feedforward_layernorm.weight": "ffn_norm",
               "post_feedforward_layernorm.weight": "post_ffw_norm"}


def norm_offset(slot: str) -> float:
    """Gemma's RMSNorm scales by (1 + w): the 1 is added at load."""
    return 1.0 if slot.endswith("norm") else 0.0


def embed_scale(hidden: int) -> float:
    return float(np.float32(math.sqrt(hidden)))  # transformers rounds sqrt(hidden) to the dtype


def hf_layer_types(src: HFSource, n_layer: int, pattern: int) -> List[str]:
    """``layer_types`` from config.json, else every ``pattern``-th layer full, the others sliding."""
    types = src.get("layer_types", None)
    if types is None:
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layer)]
    if len(types) != n_layer or any(t not in ("sliding_attention", "full_attention") for t in types):
        raise ValueError(f"{src.ckpt.path}: layer_types must name sliding_attention or full_attention per layer")
    return list(types)


def gemma_gguf(f: GGUFFile, arch: str, pattern: int) -> "tuple[GGUFSource, Dict[str, Any], float, List[int]]":
    src = GGUFSource(f, arch)
    sizes = src.common()
    eps = float(src.key("attention.layer_norm_rms_epsilon"))
    window = int(src.key("attention.sliding_window"))
    pattern = int(src.key("attention.sliding_window_pattern", pattern))
    windows = [window if (i + 1) % pattern else 0 for i in range(sizes["n_layer"])]
    return src, sizes, eps, windows


def from_gguf(f: GGUFFile) -> Loaded:
    src, sizes, eps, windows = gemma_gguf(f, "gemma2", 2)
    theta = float(src.key("rope.freq_base", 10000.0))
    caps = float(src.key("attn_logit_softcapping", 0.0) or 0.0), float(src.key("final_logit_softcapping", 0.0) or 0.0)
    tensors = src.finish({})
    tied = "output" not in tensors
    tie_output(tensors, True)
    hs = sizes["head_dim"]
    cfg = DecoderConfig(**config_fields(sizes, "gemma2", eps, theta, tied, src.special_ids(),
                                        sliding_window=max(windows), attn_logit_softcapping=caps[0],
                                        final_logit_softcapping=caps[1]))
    s = spec(sizes, eps=eps, act="gelu_glu", attn_scale=1.0 / math.sqrt(hs), attn_softcap=caps[0],
             final_softcap=caps[1], embed_scale=embed_scale(sizes["hidden_size"]), window=windows)
    return Loaded(cfg, s, tensors, lambda n: [rope_tables(n, hs, theta)], f.path, src.types(), True, f)


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    src = HFSource(ckpt)
    sizes = hf_sizes(src)
    hf_activation(src, ("gelu_pytorch_tanh", "gelu_tanh"))
    eps = float(src.get("rms_norm_eps", 1e-6))
    theta = float(src.get("rope_theta", 10000.0))
    types = hf_layer_types(src, sizes["n_layer"], 2)
    window = int(src.get("sliding_window"))
    windows = [window if t == "sliding_attention" else 0 for t in types]
    caps = float(src.get("attn_logit_softcapping", 0.0)), float(src.get("final_logit_softcapping", 0.0))
    tensors = src.map(LLAMA_GLOBAL, GEMMA_LAYER, LLAMA_IGNORED, norm_offset)
    tied = "output" not in tensors
    tie_output(tensors, bool(src.get("tie_word_embeddings", True)))
    hs = sizes["head_dim"]
    cfg = DecoderConfig(**config_fields(sizes, "gemma2", eps, theta, tied, hf_ids(src),
                                        sliding_window=window, attn_logit_softcapping=caps[0],
                                        final_logit_softcapping=caps[1]))
    s = spec(sizes, eps=eps, act="gelu_glu", attn_scale=float(src.get("query_pre_attn_scalar", hs)) ** -0.5,
             attn_softcap=caps[0], final_softcap=caps[1], embed_scale=embed_scale(sizes["hidden_size"]),
             window=windows)
    return Loaded(cfg, s, tensors, lambda n: [rope_tables(n, hs, theta)], ckpt.path, src.types(), False, ckpt)


register(Architecture("gemma2", ("gemma2",), ("gemma2",), from_gguf, from_hf))
