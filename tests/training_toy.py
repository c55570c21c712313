# A bigram language model in numpy with analytic gradients, implementing the training protocol the
# Trainer relies on; a test fixture, not a model anyone should train.
"""``BigramLM``: logits[b, t] = W[ids[b, t]] + bias. Small and exact, so the
Trainer's loop, checkpoints and resume are tested without any GPT-2 code."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np


@dataclass
class BigramConfig:
    vocab_size: int = 32
    n_positions: int = 1024


class BigramLM:
    def __init__(self, config: BigramConfig, seed: int = 0):
        self.config = config
        V = config.vocab_size
        self._shapes: List[Tuple[str, Tuple[int, ...]]] = [("lm_head.weight", (V, V)), ("lm_head.bias", (V,))]
        self._params = np.zeros(V * V + V, dtype=np.float32)
        self._grads = np.zeros_like(self._params)
        self._params[: V * V] = np.random.default_rng(seed).standard_normal(V * V).astype(np.float32) * 0.02
        self.calls = 0  # forward_backward calls, for tests that inject failures

    def _view(self, buf: np.ndarray) -> Dict[str, np.ndarray]:
        V = self.config.vocab_size
        return {"lm_head.weight": buf[: V * V].reshape(V, V), "lm_head.bias": buf[V * V:]}

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        return iter(self._view(self._params).items())

    def named_gradients(self) -> Iterator[Tuple[str, np.ndarray]]:
        return iter(self._view(self._grads).items())

    def flat_buffers(self) -> Tuple[np.ndarray, np.ndarray, List[Tuple[str, int, Tuple[int, ...]]]]:
        spans, off = [], 0
        for name, shape in self._shapes:
            spans.append((name, off, shape))
            off += math.prod(shape)
        return self._params, self._grads, spans

    def zero_grad(self) -> None:
        self._grads.fill(0.0)

    def _logp(self, ids: np.ndarray) -> np.ndarray:
        p = self._view(self._params)
        logits = (p["lm_head.weight"][ids] + p["lm_head.bias"]).astype(np.float64)  # (B, T, V)
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def loss(self, input_ids: Any, labels: Any) -> float:
        ids, lab = np.asarray(input_ids), np.asarray(labels)
        logp = self._logp(ids)
        valid = lab != -100
        picked = np.take_along_axis(logp, np.where(valid, lab, 0)[..., None], axis=-1)[..., 0]
        return float(-(picked * valid).sum() / valid.sum())

    def forward_backward(self, input_ids: Any, labels: Any) -> float:
        self.calls += 1
        ids, lab = np.asarray(input_ids), np.asarray(labels)
        logp = self._logp(ids)
        valid = lab != -100
        n = int(valid.sum())
        picked = np.take_along_axis(logp, np.where(valid, lab, 0)[..., None], axis=-1)[..., 0]
        d = np.exp(logp)  # softmax (B, T, V)
        np.put_along_axis(d, np.where(valid, lab, 0)[..., None],
                          np.take_along_axis(d, np.where(valid, lab, 0)[..., None], axis=-1) - 1.0, axis=-1)
        d *= valid[..., None] / n
        g = self._view(self._grads)
        np.add.at(g["lm_head.weight"], ids.reshape(-1), d.reshape(-1, d.shape[-1]).astype(np.float32))
        g["lm_head.bias"] += d.sum(axis=(0, 1)).astype(np.float32)
        return float(-(picked * valid).sum() / n)

    def save_pretrained(self, directory: str) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({**asdict(self.config), "model_type": "bigram"}))
        with open(d / "weights.npy", "wb") as f:
            np.save(f, self._params)

    @classmethod
    def from_pretrained(cls, directory: str) -> "BigramLM":
        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        model = cls(BigramConfig(vocab_size=cfg["vocab_size"], n_positions=cfg["n_positions"]))
        model._params[...] = np.load(d / "weights.npy")
        return model
