"""pyllm: run and train transformer language models on the CPU from Python.

>>> import pyllm
>>> pyllm.cpu_info()["isa"] in pyllm.cpu_info()["available_isas"]
True
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import _C, ops, serve  # serve: callable, pyllm.serve(...) runs the server; light until used
from .generation import GenerationConfig, TextIteratorStreamer, TextStreamer
from .gguf_write import quantize
from .models import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GGUFFile,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)
from .optim import AdamW, clip_grad_norm_
from .pipelines import pipeline
from .tokenizers.wordpiece import BertTokenizerFast as BertTokenizerFast
from .training import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PredictionOutput,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

__version__ = "0.1.0"

__all__ = [
    "AdamW",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BertConfig",
    "BertForSequenceClassification",
    "BertModel",
    "BertTokenizerFast",
    "DataCollatorWithPadding",
    "EarlyStoppingCallback",
    "EvalPrediction",
    "PredictionOutput",
    "Trainer",
    "TrainerCallback",
    "TrainingArguments",
    "GGUFFile",
    "GPT2Config",
    "GPT2LMHeadModel",
    "GenerationConfig",
    "TextIteratorStreamer",
    "TextStreamer",
    "pipeline",
    "quantize",
    "serve",
    "LlamaConfig",
    "LlamaForCausalLM",
    "clip_grad_norm_",
    "cpu_info",
    "get_num_threads",
    "set_num_threads",
    "set_isa",
    "ops",
    "__version__",
]

# Choosing the kernel table now makes a bad PYLLM_ISA fail at import, with a
# message that lists what this build and CPU support.
_C.get_isa()


def cpu_info() -> Dict[str, Any]:
    """What pyllm detected and chose.

    Returns a dict with ``isa`` (the kernel set in use: ``"avx512"``,
    ``"avx2"``, ``"neon"`` or ``"scalar"``), ``available_isas``, ``features`` (CPU
    features seen), ``num_threads`` and ``openmp`` (whether this build has
    OpenMP threads).
    """
    return dict(_C.cpu_info())


_threads_chosen = False  # set_num_threads was called (a data-parallel rank then keeps the count)


def set_num_threads(n: int, adaptive: Optional[bool] = None) -> None:
    """Set the number of threads every kernel uses (default: ``OMP_NUM_THREADS``,
    else the physical cores this process may run on).

    ``adaptive`` (on unless ``PYLLM_ADAPTIVE_THREADS=0``; ``None`` leaves it as
    it is): a model may run a prefill chunk or a decode step on one thread
    when that has lately been faster than ``n``, as on a machine whose other
    cores are busy; it keeps measuring both. The tokens and logits are the
    same on any number of threads.

    >>> pyllm.set_num_threads(1); pyllm.get_num_threads()
    1
    """
    _check_num_threads(n, "set_num_threads: n")
    _C.set_num_threads(int(n))
    global _threads_chosen
    _threads_chosen = True
    if adaptive is not None:
        _C.set_adaptive_threads(bool(adaptive))


def _check_num_threads(n: Any, name: str) -> None:
    """Raise TypeError unless ``n`` is an int (numpy integers too; not a bool or float), ValueError
    unless it is in [1, MAX_THREADS] (1024); ``name`` is the argument in the message."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int (a thread count), got {type(n).__name__} {n!r}")
    if not 1 <= int(n) <= _C.MAX_THREADS:
        raise ValueError(f"{name} must be in [1, {_C.MAX_THREADS}] (a thread count), got {int(n)}")


def get_num_threads() -> int:
    """The number of threads kernels use."""
    return int(_C.get_num_threads())


def set_isa(isa: str) -> None:
    """Switch the kernel set for this process: ``"auto"``, ``"scalar"``,
    ``"avx2"``, ``"avx512"`` or ``"neon"`` (those the CPU and build support; see
    :func:`cpu_info`). The environment variable ``PYLLM_ISA`` sets the
    choice at import."""
    _C.set_isa(isa)
