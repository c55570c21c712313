"""AdamW with torch.optim.AdamW's semantics and gradient clipping by global norm,
over a model's flat parameter/gradient buffers (kernels in C++). Not LR schedules."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import numpy as np

from . import _C


def _flat(model: Any) -> Tuple[np.ndarray, np.ndarray, List[Tuple[str, int, Tuple[int, ...]]]]:
    if not hasattr(model, "flat_buffers"):
        raise ValueError(f"{type(model).__name__} has no flat parameter buffers (flat_buffers()); "
                         "pyllm's optimizer works on pyllm models such as GPT2LMHeadModel")
    params, grads, spans = model.flat_buffers()
    return params, grads, spans


class AdamW:
    """``torch.optim.AdamW`` (bias-corrected moments, decoupled weight decay)
    over a pyllm model's parameters, in two groups as GPT training does:
    matrices and embeddings (ndim >= 2) decay, biases and norm weights
    (ndim < 2) do not.

    The moments are two flat float32 buffers aligned with the model's
    parameter buffer; ``state_dict()`` / ``load_state_dict()`` round-trip
    them with the step count, so a resumed run is bit-identical. ``step()``
    holds the model's lock.

    >>> from pyllm import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=65, n_positions=16, n_embd=32, n_layer=1, n_head=2))
    >>> opt = AdamW(model, lr=1e-3, weight_decay=0.1)
    >>> ids = np.zeros((1, 8), dtype=np.int64)
    >>> loss = model.forward_backward(ids, ids); opt.step(); opt.zero_grad()
    """

    def __init__(self, model: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        for name, v in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"AdamW: {name} must be a finite number >= 0, got {v!r}")
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW: betas must be two numbers in [0, 1), got {betas!r}")
        self.model = model
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        params, grads, spans = _flat(model)
        self._params, self._grads = params, grads
        self.m = np.zeros_like(params)  # first moment, aligned with the flat parameter buffer
        self.v = np.zeros_like(params)  # second moment
        self.step_count = 0
        # runs of adjacent parameters with the same decay: (begin, end, decays)
        self._runs: List[Tuple[int, int, bool]] = []
        for _, off, shape in sorted(spans, key=lambda s: s[1]):
            decays = len(shape) >= 2
            end = off + math.prod(shape)
            if self._runs and self._runs[-1][1] == off and self._runs[-1][2] == decays:
                self._runs[-1] = (self._runs[-1][0], end, decays)
            else:
                self._runs.append((off, end, decays))

    def step(self) -> None:
        """One update from the accumulated gradients (call zero_grad after)."""
        lock = getattr(self.model, "_lock", None)
        if lock is None:
            self._step()
        else:
            with lock:
                self._step()

    def _step(self) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        for begin, end, decays in self._runs:
            _C.adamw_step(self._params[begin:end], self._grads[begin:end], self.m[begin:end],
                               self.v[begin:end], self.lr, b1, b2, self.eps,
                               self.weight_decay if decays else 0.0, self.step_count)

    def zero_grad(self) -> None:
        """The model's zero_grad."""
        self.model.zero_grad()

    def state_dict(self) -> Dict[str, Any]:
        """Copies of the moments, the step count and the hyperparameters."""
        return {"step": self.step_count, "m": self.m.copy(), "v": self.v.copy(), "lr": self.lr,
                "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what state_dict returned (the moments must fit this model)."""
        for key in ("step", "m", "v"):
            if key not in state:
                raise ValueError(f"AdamW state lacks {key!r}")
        m, v = np.asarray(state["m"]), np.asarray(state["v"])
        if m.shape != self.m.shape or v.shape != self.v.shape:
            raise ValueError(f"AdamW state holds moments of shape {m.shape}/{v.shape}; this model needs {self.m.shape}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"AdamW state step must be an integer >= 0, got {step!r}")
        self.m[...] = m
        self.v[...] = v
        self.step_count = int(step)
        self.lr = float(state.get("lr", self.lr))
        betas = state.get("betas", self.betas)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(state.get("eps", self.eps))
        self.weight_decay = float(state.get("weight_decay", self.weight_decay))


def clip_grad_norm_(model: Any, max_norm: float) -> float:
    """Scale the model's gradients so their global L2 norm is at most
    ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``: the factor is
    ``max_norm / (norm + 1e-6)``, applied when below 1. Returns the norm
    before clipping.

    >>> from pyllm import GPT2Config, GPT2LMHeadModel
    >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=65, n_positions=16, n_embd=32, n_layer=1, n_head=2))
    >>> clip_grad_norm_(model, 1.0)
    0.0
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    _, grads, _ = _flat(model)
    mlock = getattr(model, "_lock", None)
    if mlock is not None:
        with mlock:
            return _clip(grads, float(max_norm))
    return _clip(grads, float(max_norm))


def _clip(grads: np.ndarray, max_norm: float) -> float:
    norm = math.sqrt(_C.sumsq(grads))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        _C.scale_(grads, coef)
    return norm
