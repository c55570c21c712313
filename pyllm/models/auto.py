"""AutoModelForCausalLM: open a model file, a model directory or a registered
name and build the class its architecture needs. Not a registry of remote
models (see hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from .. import hub
from .gguf import GGUFFile

SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_MODEL_TYPES = ("gpt2",)  # directories with config.json + model.safetensors


def _hf_dir(name_or_path: Any) -> Optional[Path]:
    """``name_or_path`` as a Hugging Face style model directory (config.json
    next to the weights), or None."""
    try:
        p = Path(os.fspath(name_or_path)).expanduser()
    except TypeError:
        return None
    return p if p.is_dir() and (p / "config.json").is_file() else None


def _load_hf_dir(d: Path, n_ctx: Optional[int]) -> Any:
    try:
        model_type = json.loads((d / "config.json").read_text(encoding="utf-8")).get("model_type")
    except ValueError as e:
        raise ValueError(f"{d / 'config.json'} is not valid JSON: {e}") from None
    if model_type != "gpt2":
        raise ValueError(f"unsupported model_type {model_type!r} in {d / 'config.json'}; supported: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)} "
                         f"(and GGUF files for {', '.join(SUPPORTED_ARCHITECTURES)})")
    from ..tokenizers.files import find_tokenizer, load_tokenizer
    from .gpt2 import GPT2LMHeadModel

    tok = load_tokenizer(d) if find_tokenizer(d) is not None else None
    model = GPT2LMHeadModel.from_pretrained(d, tokenizer=tok)
    if n_ctx is not None:
        if not 0 < n_ctx <= model.config.n_positions:
            raise ValueError(f"n_ctx={n_ctx} is outside [1, {model.config.n_positions}] (the model's n_positions)")
        model.n_ctx = int(n_ctx)
    return model


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(name_or_path)`` as in transformers:
    a ``.gguf`` path, a directory holding one, a GPT-2 directory (config.json
    + model.safetensors, plus the tokenizer files ``pyllm train`` or
    transformers write), or a registered name such as
    ``"SmolLM2-135M-Instruct"`` (fetched on first use)."""

    def __init__(self) -> None:
        raise TypeError("use AutoModelForCausalLM.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                        **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        if n_threads is not None:
            from .. import set_num_threads

            set_num_threads(n_threads)
        d = _hf_dir(name_or_path)
        if d is not None:
            return _load_hf_dir(d, n_ctx)
        path = hub.resolve_model_file(name_or_path)
        f = GGUFFile(path)
        arch = f.metadata.get("general.architecture")
        if arch == "llama":
            from .llama import LlamaConfig, LlamaForCausalLM

            return LlamaForCausalLM(f, LlamaConfig.from_gguf(f), n_ctx=n_ctx)
        raise ValueError(
            f"unsupported architecture {arch!r} in {path}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)``: the tokenizer stored in a
    GGUF file's metadata (byte-level BPE, ``tokenizer.ggml.model == "gpt2"``),
    or the tokenizer files of a model directory (tokenizer.json, vocab.json +
    merges.txt, or pyllm's char_tokenizer.json)."""

    def __init__(self) -> None:
        raise TypeError("use AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        from ..tokenizers import BPETokenizer
        from ..tokenizers.files import find_tokenizer, load_tokenizer

        if isinstance(name_or_path, (str, os.PathLike)) and Path(name_or_path).is_dir():
            if find_tokenizer(name_or_path) is not None:
                return load_tokenizer(name_or_path)
            if _hf_dir(name_or_path) is not None:
                raise FileNotFoundError(f"no tokenizer files in {name_or_path} (tokenizer.json, vocab.json + "
                                        "merges.txt or char_tokenizer.json)")
        path = hub.resolve_model_file(name_or_path)
        md = GGUFFile(path).metadata
        kind = md.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"unsupported tokenizer model {kind!r} in {path}; supported: gpt2 (byte-level BPE)")
        return BPETokenizer.from_gguf_metadata(md)
