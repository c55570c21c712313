"""Phi-3 / Phi-3.5-mini / Phi-4-mini on the decoder runtime: the llama
block with the query, key and value projections fused into one matrix and
the gate and up projections into another (split by rows at load),
rotate-half RoPE (partial rotary where configured), a sliding window when
the config sets one. GGUF files (``general.architecture = phi3``) and
Hugging Face ``phi3`` directories. LongRoPE (the 128k variants) is refused."""

from __future__ import annotations

from typing import Any, Dict

from .decoder import DecoderConfig, Loaded, rope_tables
from .gguf import GGUFFile
from .hfdir import HFCheckpoint
from .llama import hf_rope_factors
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
    split_rows,
    tie_output,
)
from .registry import Architecture, register

PHI3_LAYER = {**LLAMA_LAYER, "self_attn.qkv_proj.weight": "attn_qkv", "mlp.gate_up_proj.weight": "ffn_gate_up"}


def unfuse(tensors: Dict[str, Any], sizes: Dict[str, Any], qkv: str, gate_up: str) -> None:
    """blk.N.<qkv> -> attn_q/k/v and blk.N.<gate_up> (gate rows first) -> ffn_gate/ffn_up."""
    QD, KVD, FF = sizes["n_head"] * sizes["head_dim"], sizes["n_kv_head"] * sizes["head_dim"], sizes["ffn_size"]
    for layer in range(sizes["n_layer"]):
        p = f"blk.{layer}."
        if p + qkv in tensors:
            tensors[p + "attn_q"], tensors[p + "attn_k"], tensors[p + "attn_v"] = split_rows(
                tensors.pop(p + qkv), (QD, KVD, KVD), p + qkv)
        if p + gate_up in tensors:
            tensors[p + "ffn_gate"], tensors[p + "ffn_up"] = split_rows(tensors.pop(p + gate_up), (FF, FF), p + gate_up)


def from_gguf(f: GGUFFile) -> Loaded:
    src = GGUFSource(f, "phi3")
    sizes = src.common()
    eps = float(src.key("attention.layer_norm_rms_epsilon"))
    theta = float(src.key("rope.freq_base", 10000.0))
    rot = int(src.key("rope.dimension_count", sizes["head_dim"]))
    window = int(src.key("attention.sliding_window", 0) or 0)
    if src.has("rope_factors_long.weight") or src.has("rope_factors_short.weight"):
        raise ValueError(f"{f.path} uses LongRoPE (rope_factors_long/short), which pyllm does not run")
    src.key("rope.scaling.original_context_length", None)
    src.key("rope.scaling.attn_factor", None)
    tensors = src.finish({})
    for layer in range(sizes["n_layer"]):  # llama.cpp's converter keeps gate|up fused as ffn_up (2 FF rows)
        up = tensors.get(f"blk.{layer}.ffn_up")
        if up is not None and f"blk.{layer}.ffn_gate" not in tensors and up[2] == 2 * sizes["ffn_size"]:
            tensors[f"blk.{layer}.ffn_gate_up"] = tensors.pop(f"blk.{layer}.ffn_up")
    unfuse(tensors, sizes, "attn_qkv", "ffn_gate_up")
    tied = "output" not in tensors
    tie_output(tensors, tied)
    cfg = DecoderConfig(**config_fields(sizes, "phi3", eps, theta, tied, src.special_ids(),
                                        sliding_window=window or None))
    return Loaded(cfg, spec(sizes, eps=eps, rope="neox", rope_dim=rot, window=window), tensors,
                  lambda n: [rope_tables(n, rot, theta)], f.path, src.types(), True, f)


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    src = HFSource(ckpt)
    sizes = hf_sizes(src)
    hf_activation(src, ("silu",))
    eps = float(src.get("rms_norm_eps", 1e-5))
    rot = int(sizes["head_dim"] * float(src.get("partial_rotary_factor", 1.0)))
    theta, factors, scale = hf_rope_factors(src, rot)
    window = int(src.get("sliding_window", 0) or 0)
    tensors = src.map(LLAMA_GLOBAL, PHI3_LAYER, LLAMA_IGNORED)
    unfuse(tensors, sizes, "attn_qkv", "ffn_gate_up")
    tied = bool(src.get("tie_word_embeddings", False))
    tie_output(tensors, tied)
    cfg = DecoderConfig(**config_fields(sizes, "phi3", eps, theta, tied, hf_ids(src), sliding_window=window or None))
    return Loaded(cfg, spec(sizes, eps=eps, rope="neox", rope_dim=rot, window=window), tensors,
                  lambda n: [rope_tables(n, rot, theta, factors, scale)], ckpt.path, src.types(), False, ckpt)


register(Architecture("phi3", ("phi3",), ("phi3",), from_gguf, from_hf))
