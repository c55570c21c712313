"""Qwen3 (dense) on the decoder runtime: the Qwen2 block without biases and
with RMSNorm on each query and key head before RoPE; the head size is its
own setting. GGUF files (``general.architecture = qwen3``) and Hugging Face
``qwen3`` directories (the same readers as Qwen2: the q/k norms are slots)."""

from __future__ import annotations

from .decoder import Loaded
from .gguf import GGUFFile
from .qwen2 import from_gguf as qwen2_gguf
from .qwen2 import from_hf
from .registry import Architecture, register


def from_gguf(f: GGUFFile) -> Loaded:
    return qwen2_gguf(f, "qwen3")


register(Architecture("qwen3", ("qwen3",), ("qwen3",), from_gguf, from_hf))
