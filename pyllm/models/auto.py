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
