"""Qwen2 / Qwen2.5 on the decoder runtime: the llama block with biases on
the query, key and value projections, rotate-half RoPE. GGUF files
(``general.architecture = qwen2``) and Hugging Face ``qwen2`` directories."""

from __future__ import annotations

from .decoder import DecoderConfig, Loaded, rope_tables
from .gguf import GGUFFile
from .hfdir import HFCheckpoint
from .llama import gguf_rope_scale, hf_rope_factors
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


def from_gguf(f: GGUFFile, arch: str = "qwen2") -> Loaded:
    src = GGUFSource(f, arch)
    sizes = src.common()
    eps = float(src.key("attention.layer_norm_rms_epsilon"))
    theta = float(src.key("rope.freq_base", 10000.0))
    rot = int(src.key("rope.dimension_count", sizes["head_dim"]))
    scale = gguf_rope_scale(src)
    tensors = src.finish({})
    tied = "output" not in tensors
    tie_output(tensors, tied)
    cfg = DecoderConfig(**config_fields(sizes, arch, eps, theta, tied, src.special_ids()))
    return Loaded(cfg, spec(sizes, eps=eps, rope="neox", rope_dim=rot), tensors,
                  lambda n: [rope_tables(n, rot, theta, None, scale)], f.path, src.types(), True, f)


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    src = HFSource(ckpt)
    sizes = hf_sizes(src)
    hf_activation(src, ("silu",))
    if src.get("use_sliding_window", False):
        raise ValueError(f"{ckpt.path}: use_sliding_window=true (windows on the upper layers only) is not supported")
    eps = float(src.get("rms_norm_eps", 1e-6))
    theta, factors, scale = hf_rope_factors(src, sizes["head_dim"])
    tensors = src.map(LLAMA_GLOBAL, LLAMA_LAYER, LLAMA_IGNORED)
    tied = bool(src.get("tie_word_embeddings", False))
    tie_output(tensors, tied)
    cfg = DecoderConfig(**config_fields(sizes, str(src.get("model_type")), eps, theta, tied, hf_ids(src)))
    hs = sizes["head_dim"]
    return Loaded(cfg, spec(sizes, eps=eps, rope="neox"), tensors,
                  lambda n: [rope_tables(n, hs, theta, factors, scale)], ckpt.path, src.types(), False, ckpt)


register(Architecture("qwen2", ("qwen2",), ("qwen2",), from_gguf, from_hf))
