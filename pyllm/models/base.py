# What every causal LM returns from model(input_ids, labels=...): the output type and transformers' loss.
# Not a model: no weights, no forward pass.
"""``CausalLMOutput`` and :func:`causal_lm_loss`.

>>> logits = np.zeros((1, 3, 4), np.float32)
>>> round(causal_lm_loss(logits, np.array([[0, 1, 2]])), 4) == round(float(np.log(4)), 4)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

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
