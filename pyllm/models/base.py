# What every causal LM shares: the output of model(input_ids, labels=...), transformers' loss, and the checks
# of what users pass beside the ids (device, dtype, loading switches). Not a model: no weights, no forward pass.
"""``CausalLMOutput``, :func:`causal_lm_loss` and the argument checks of ``from_pretrained``.

>>> logits = np.zeros((1, 3, 4), np.float32)
>>> round(causal_lm_loss(logits, np.array([[0, 1, 2]])), 4) == round(float(np.log(4)), 4)
True
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from .._inputs import is_torch_tensor, like_input, to_numpy


@dataclass
class CausalLMOutput:
    """As transformers' ``CausalLMOutputWithPast``: ``.logits`` (B, T, V) float32 and ``.loss``
    (None without labels); also ``out["logits"]``, ``out[0]`` (the first field that is set, loss
    first) and ``out.to_tuple()``."""

    logits: Any  # (B, T, V) float32: a numpy array, or a torch tensor for torch input
    loss: Any = None  # 0-d float32 (numpy or torch), or None

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(v for v in (self.loss, self.logits) if v is not None)

    def keys(self) -> Iterator[str]:
        return iter(k for k in ("loss", "logits") if getattr(self, k) is not None)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in ("loss", "logits") or getattr(self, key) is None:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]


def causal_lm_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """transformers' causal-LM loss: position t predicts ``labels[:, t + 1]`` (the shift is done
    here), mean cross-entropy over the labels that are not -100 (in float64)."""
    V = logits.shape[-1]
    pred = logits[:, :-1].reshape(-1, V).astype(np.float64)  # (B*(T-1), V)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    if not keep.any():
        return float("nan")  # transformers: a mean over no tokens
    pred, target = pred[keep], target[keep]
    m = pred.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(pred - m).sum(axis=-1)) + m[:, 0]
    return float(np.mean(logz - pred[np.arange(len(target)), target]))


def check_labels(labels: Any, shape: Tuple[int, ...], vocab_size: int) -> np.ndarray:
    """``labels`` as an int64 array of ``shape`` (-100 or ids in range)."""
    lab = np.asarray(to_numpy(labels))
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer token ids (or -100), got {lab.dtype} values")
    if lab.ndim == 1 and len(shape) == 2 and shape[0] == 1:
        lab = lab[None, :]
    if lab.shape != shape:
        raise ValueError(f"labels have shape {lab.shape}, input_ids {shape}")
    bad = (lab != -100) & ((lab < 0) | (lab >= vocab_size))
    if bad.any():
        b, t = np.argwhere(bad)[0]
        raise ValueError(f"labels: {int(lab[b, t])} at row {int(b)}, position {int(t)} is neither -100 "
                         f"nor in [0, {vocab_size})")
    return lab.astype(np.int64, copy=False)


def lm_output(input_ids: Any, logits: np.ndarray, labels: Any, vocab_size: int) -> CausalLMOutput:
    """The output of ``model(input_ids, labels=labels)``, in torch when the input was torch."""
    loss: Optional[Any] = None
    if labels is not None:
        lab = check_labels(labels, logits.shape[:2], vocab_size)
        value = np.float32(causal_lm_loss(logits, lab))
        loss = like_input(input_ids, np.asarray(value)).reshape(()) if is_torch_tensor(input_ids) else value
    return CausalLMOutput(logits=like_input(input_ids, logits), loss=loss)


# ---- what users pass to from_pretrained, to() and forward beside the ids

def check_name_or_path(value: Any, name: str = "pretrained_model_name_or_path") -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path or a registered model name (str or os.PathLike), "
                        f"got {type(value).__name__}")


def check_device(value: Any, name: str) -> None:
    """transformers' device arguments (``device=-1`` / ``"cpu"``, ``device_map="cpu"`` / ``"auto"``):
    the CPU is accepted, anything else raises ValueError naming the argument."""
    if value is None:
        return
    if isinstance(value, dict):
        for v in value.values():
            check_device(v, name)
        return
    text = str(value)
    if text in ("cpu", "-1", "auto") or (isinstance(value, int) and not isinstance(value, bool) and value < 0):
        return
    raise ValueError(f"{name}={value!r}: pyllm runs on the CPU only; pass {name}='cpu' (or leave it out)")


def check_dtype(value: Any, name: str) -> None:
    """transformers' ``torch_dtype`` / ``dtype``: float32 and "auto" are what pyllm computes in;
    any other dtype is accepted with a warning (weights stay as the file stores them)."""
    if value is None:
        return
    text = str(value).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    if text in ("float32", "auto", "float"):
        return
    warnings.warn(f"{name}={value!r} is ignored: pyllm computes in float32 on the CPU (quantized weights stay "
                  "quantized, as the file stores them)", UserWarning, stacklevel=3)


# from_pretrained arguments transformers users pass that have one meaning on pyllm's CPU path
_DEVICE_ARGS = ("device_map", "device")
_DTYPE_ARGS = ("torch_dtype", "dtype")
_HARMLESS = ("low_cpu_mem_usage", "trust_remote_code", "use_safetensors", "local_files_only")


def hf_loading_kwargs(kwargs: Dict[str, Any]) -> None:
    """Check and drop from ``kwargs`` the device, dtype and loading switches transformers users
    pass; what remains is unknown and raises TypeError."""
    for key in _DEVICE_ARGS:
        if key in kwargs:
            check_device(kwargs.pop(key), key)
    for key in _DTYPE_ARGS:
        if key in kwargs:
            check_dtype(kwargs.pop(key), key)
    for key in _HARMLESS:
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")


def no_extra_args(kwargs: Dict[str, Any]) -> None:
    """transformers' forward takes cache and output switches pyllm has no use for: accept the
    harmless ones, refuse the rest by name."""
    harmless = {"use_cache", "return_dict"}
    unknown = sorted(k for k in kwargs if k not in harmless)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(unknown)}")
