"""GPT-2 GGUF files (``general.architecture = gpt2``) on the decoder
runtime: LayerNorm with biases, learned absolute positions, the fused
query/key/value projection split by rows, a tanh-GELU MLP, biases on
every projection, the head tied to the token embedding unless stored.
Hugging Face GPT-2 directories load as the trainable
:class:`pyllm.GPT2LMHeadModel`, whose inference runs on the same runtime."""

from __future__ import annotations

from .decoder import DecoderConfig, Loaded
from .gguf import GGUFFile
from .hfdir import HFCheckpoint
from .mapping import GGUFSource, config_fields, spec, split_rows, split_vector, tie_output
from .registry import Architecture, register


def from_gguf(f: GGUFFile) -> Loaded:
    src = GGUFSource(f, "gpt2")
    sizes = src.common()
    eps = float(src.key("attention.layer_norm_epsilon"))
    tensors = src.finish({})
    C = sizes["hidden_size"]
    for layer in range(sizes["n_layer"]):
        p = f"blk.{layer}."
        if p + "attn_qkv" in tensors:
            tensors[p + "attn_q"], tensors[p + "attn_k"], tensors[p + "attn_v"] = split_rows(
                tensors.pop(p + "attn_qkv"), (C, C, C), p + "attn_qkv")
        if p + "attn_qkv.bias" in tensors:
            tensors[p + "attn_q.bias"], tensors[p + "attn_k.bias"], tensors[p + "attn_v.bias"] = split_vector(
                tensors.pop(p + "attn_qkv.bias"), (C, C, C), p + "attn_qkv.bias")
    tied = "output" not in tensors
    tie_output(tensors, True)
    cfg = DecoderConfig(**config_fields(sizes, "gpt2", eps, 0.0, tied, src.special_ids()))
    return Loaded(cfg, spec(sizes, eps=eps, norm="layer", act="gelu", rope="none"), tensors, lambda n: [], f.path,
                  src.types(), True, f)


def from_hf(ckpt: HFCheckpoint) -> Loaded:
    raise ValueError(f"{ckpt.path}: GPT-2 directories load as pyllm.GPT2LMHeadModel (AutoModelForCausalLM does this)")


register(Architecture("gpt2", ("gpt2",), (), from_gguf, from_hf))
