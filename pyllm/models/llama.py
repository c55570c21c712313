"""The llama architecture (Llama 2/3/3.2, SmolLM, TinyLlama, Mistral) on the
decoder runtime: RMSNorm, grouped-query attention, RoPE (Llama 3's
frequency factors and linear scaling), SwiGLU, tied or separate head.
GGUF files (``general.architecture = llama``; llama.cpp's converter stores
Q/K rows permuted for interleaved-pair RoPE and Llama 3's factors as the
``rope_freqs`` tensor) and Hugging Face ``llama`` / ``mistral`` directories."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .decoder import DecoderConfig, DecoderForCausalLM, Loaded, llama3_factors, rope_tables
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
    hf_rope,
    hf_sizes,
    spec,
    tie_output,
)
from .registry import Architecture, register

__all__ = ["LlamaConfig", "LlamaForCausalLM"]


class LlamaConfig(DecoderConfig):
    @classmethod
    def from_gguf(cls, f: GGUFFile) -> "LlamaConfig":
        cfg = from_gguf(f).config
        assert isinstance(cfg, LlamaConfig)
        return cfg


class LlamaForCausalLM(DecoderForCausalLM):
    """A llama model (see :class:`pyllm.models.decoder.DecoderForCausalLM`)."""


def gguf_rope_scale(src: GGUFSource) -> float:
    """Linear position scaling from ``rope.scaling.*`` (1: none); other kinds raise."""
    kind = src.key("rope.scaling.type", "none")
    factor = float(src.key("rope.scaling.factor", 1.0))
    src.key("rope.scaling.original_context_length", None)
    if kind in ("none", None) or factor == 1.0:
        return 1.0
    if kind != "linear":
        raise ValueError(f"RoPE scaling {kind!r} ({src.f.path}) is not supported; supported: none, linear")
    return factor


def from_gguf(f: GGUFFile) -> Loaded:
    src = GGUFSource(f, "llama")
    sizes = src.common()
    eps = float(src.key("attention.layer_norm_rms_epsilon"))
    theta = float(src.key("rope.freq_base", 10000.0))
    rot = int(src.key("rope.dimension_count", sizes["head_dim"]))
    scale = gguf_rope_scale(src)
    factors = np.array(src.take("rope_freqs.weight")) if src.has("rope_freqs.weight") else None
    if factors is not None and factors.shape != (rot // 2,):
        raise ValueError(f"rope_freqs has {factors.shape[0]} factors, expected {rot // 2}")
    window = int(src.key("attention.sliding_window", 0) or 0)
    tensors = src.finish({})
    tied = "output" not in tensors
    tie_output(tensors, tied)
    cfg = LlamaConfig(**config_fields(sizes, "llama", eps, theta, tied, src.special_ids(),
                                      sliding_window=window or None))
    return Loaded(cfg, spec(sizes, eps=eps, rope="interleaved", rope_dim=rot, window=window), tensors,
                  lambda n: [rope_tables(n, rot, theta, factors, scale)], f.path, src.types(), True, f)


def hf_rope_factors(src: HFSource, dim: int) -> "tuple[float, Optional[np.ndarray], float]":
    """(theta, per-frequency divisors or None, linear scale) of a llama-family config."""
    theta, params = hf_rope(src)
    kind = params["rope_type"]
    if kind == "default":
        return theta, None, 1.0
    if kind == "linear":
        return theta, None, float(params["factor"])
    if kind == "llama3":
        return theta, llama3_factors(dim, theta, params), 1.0
    raise ValueError(f"rope_type {kind!r} in {src.ckpt.path}/config.json is not supported; "
                     "supported: default, linear, llama3")


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    src = HFSource(ckpt)
    sizes = hf_sizes(src)
    hf_activation(src, ("silu",))
    eps = float(src.get("rms_norm_eps", 1e-6))
    theta, factors, scale = hf_rope_factors(src, sizes["head_dim"])
    window = int(src.get("sliding_window", 0) or 0)
    tensors = src.map(LLAMA_GLOBAL, LLAMA_LAYER, LLAMA_IGNORED)
    tied = bool(src.get("tie_word_embeddings", False))
    tie_output(tensors, tied)
    extra: Dict[str, Any] = {"sliding_window": window or None}
    cfg = LlamaConfig(**config_fields(sizes, str(src.get("model_type")), eps, theta, tied, hf_ids(src), **extra))
    hs = sizes["head_dim"]
    return Loaded(cfg, spec(sizes, eps=eps, rope="neox", window=window), tensors,
                  lambda n: [rope_tables(n, hs, theta, factors, scale)], ckpt.path, src.types(), False, ckpt)


register(Architecture("llama", ("llama",), ("llama", "mistral"), from_gguf, from_hf, LlamaForCausalLM))
