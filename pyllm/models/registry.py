"""The architecture registry: which module reads which GGUF
``general.architecture`` and which Hugging Face ``model_type``. Each
architecture module registers itself when imported; the registry imports
them by name on first use, so nothing here imports a model module and no
model module imports another.

>>> names()                                      # doctest: +SKIP
['gemma2', 'gemma3', 'gpt2', 'llama', 'mistral', 'phi3', 'qwen2', 'qwen3']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple

if TYPE_CHECKING:
    from .decoder import DecoderForCausalLM, Loaded
    from .gguf import GGUFFile
    from .hfdir import HFCheckpoint

# the modules that register architectures (pyllm.models.<name>)
MODULES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2_arch")


@dataclass(frozen=True)
class Architecture:
    name: str
    gguf_names: Tuple[str, ...]  # general.architecture values it reads
    model_types: Tuple[str, ...]  # config.json model_type values it reads
    from_gguf: "Callable[[GGUFFile], Loaded]"
    from_hf: "Callable[[HFCheckpoint], Loaded]"
    model_class: Any = None  # the class it builds (a DecoderForCausalLM subclass; None: DecoderForCausalLM)

    def build(self, loaded: "Loaded", n_ctx: Any) -> "DecoderForCausalLM":
        from .decoder import DecoderForCausalLM

        cls = self.model_class or DecoderForCausalLM
        return cls(loaded, n_ctx=n_ctx)


_BY_NAME: Dict[str, Architecture] = {}
_BY_GGUF: Dict[str, Architecture] = {}
_BY_MODEL_TYPE: Dict[str, Architecture] = {}
_loaded = False


def register(arch: Architecture) -> Architecture:
    for table, keys in ((_BY_NAME, (arch.name,)), (_BY_GGUF, arch.gguf_names), (_BY_MODEL_TYPE, arch.model_types)):
        for k in keys:
            if k in table and table[k] is not arch:
                raise ValueError(f"{k!r} is registered twice ({table[k].name} and {arch.name})")
            table[k] = arch
    return arch


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for m in MODULES:
            importlib.import_module(f"{__package__}.{m}")
        _loaded = True


def names() -> List[str]:
    _load_all()
    return sorted(_BY_NAME)


def gguf_names() -> List[str]:
    _load_all()
    return sorted(_BY_GGUF)


def model_types() -> List[str]:
    _load_all()
    return sorted(_BY_MODEL_TYPE)


def for_gguf(name: object, where: str) -> Architecture:
    _load_all()
    if not isinstance(name, str) or name not in _BY_GGUF:
        raise ValueError(f"unsupported architecture {name!r} in {where}; supported: {', '.join(sorted(_BY_GGUF))}")
    return _BY_GGUF[name]


def for_model_type(name: object, where: str) -> Architecture:
    _load_all()
    if not isinstance(name, str) or name not in _BY_MODEL_TYPE:
        raise ValueError(f"unsupported model_type {name!r} in {where}; supported: "
                         f"{', '.join(sorted(_BY_MODEL_TYPE))}")
    return _BY_MODEL_TYPE[name]
