"""AutoModelForCausalLM: open a model file or registered name and build the
class its architecture needs. Not a registry of remote models (see hub)."""

from __future__ import annotations

from typing import Any, Optional

from .. import hub
from .gguf import GGUFFile

SUPPORTED_ARCHITECTURES = ("llama",)


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(name_or_path)`` as in transformers:
    a ``.gguf`` path, a directory holding one, or a registered name such as
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
    GGUF file's metadata (byte-level BPE, ``tokenizer.ggml.model == "gpt2"``)."""

    def __init__(self) -> None:
        raise TypeError("use AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        from ..tokenizers import BPETokenizer

        path = hub.resolve_model_file(name_or_path)
        md = GGUFFile(path).metadata
        kind = md.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"unsupported tokenizer model {kind!r} in {path}; supported: gpt2 (byte-level BPE)")
        return BPETokenizer.from_gguf_metadata(md)
