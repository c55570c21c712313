# Beam search as transformers (5.x) runs it: accumulated log-probabilities, length penalty, early stopping,
# the best num_return_sequences hypotheses. Not sampling and not the model: caches come in through BeamCaches.
"""Beam search over per-beam KV caches.

Each step scores every continuation of every running beam,
``log_softmax(logits)`` (after the logits processors) plus the beam's
score, keeps the best ``2 * num_beams`` candidates (more with several eos
ids), moves those among the first ``num_beams`` that end (eos, the length
limit or a stop string) into the finished hypotheses with the score
``sum log p / new_tokens ** length_penalty``, and continues the best
``num_beams`` unfinished ones. It stops when every candidate ends, when
``num_beams`` hypotheses are finished and ``early_stopping=True``, or when
no running beam can beat the worst finished one (transformers' heuristic:
the best running score at the current length, or at the longest length
with ``early_stopping="never"`` and a positive length penalty).
Arithmetic is float32 as in transformers; candidates tied in score are
ranked lower flat index (beam, then token) first.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .configuration import GenerationConfig

NEG = np.float32(-1.0e9)  # transformers' score for "not a candidate"


class BeamCaches(Protocol):
    """The KV caches of the running beams."""

    def start(self, prompt: List[int]) -> np.ndarray:
        """Prefill the prompt for every beam; logits after it (V,)."""

    def advance(self, parents: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Beam j becomes old beam ``parents[j]`` plus ``tokens[j]``; logits of each (K, V)."""


def log_softmax(x: np.ndarray) -> np.ndarray:
    # x (K, V) float32 -> (K, V) float32, max subtracted
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, np.float32(0))
    z = x - m
    out: np.ndarray = (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)
    return out


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties: lower index first, also at the k-th)."""
    k = min(k, scores.size)
    kth = np.partition(scores, scores.size - k)[scores.size - k]  # the k-th largest value
    above = np.flatnonzero(scores > kth)
    idx = np.concatenate([above, np.flatnonzero(scores == kth)[: k - above.size]])
    return idx[np.lexsort((idx, -scores[idx]))]


Processors = Callable[[np.ndarray, np.ndarray], np.ndarray]


def beam_search(prompt: List[int], cfg: GenerationConfig, processors: Processors, caches: BeamCaches,
                stop: Optional[Callable[[List[int]], bool]] = None) -> List[Tuple[float, List[int]]]:
    """The finished hypotheses of one prompt, best first: (score, new tokens), at most ``num_beams``.

    ``cfg.max_new_tokens`` must be resolved (an int); ``processors(ids (K, T), scores (K, V))`` are
    applied to the log-probabilities, as transformers does for beam search.
    """
    K, P, n_new = cfg.num_beams, len(prompt), int(cfg.max_new_tokens or 0)
    eos = set(cfg.eos_ids())
    n_keep = max(2, 1 + len(eos)) * K
    lp = float(cfg.length_penalty)

    hist = np.empty((K, P + n_new), dtype=np.int64)  # (K, T) prompt + each running beam's tokens
    hist[:, :P] = prompt
    scores = np.full(K, NEG, dtype=np.float32)  # running beams' summed log-probabilities
    scores[0] = 0.0  # the beams start equal: only the first one's continuations count
    finished: List[Tuple[float, List[int]]] = []  # best first, at most K
    logits = np.repeat(caches.start(prompt)[None, :], K, axis=0)  # (K, V)
    V = logits.shape[1]

    from .utils import check_finite_logits  # here: utils imports this module

    for step in range(n_new):
        cur = P + step
        check_finite_logits(logits, f"beam search step {step}")
        logp = processors(hist[:, :cur], log_softmax(logits))  # (K, V)
        total = (logp.astype(np.float32) + scores[:, None]).reshape(-1)  # (K*V,)
        top = _top(total, n_keep)
        top_scores = total[top]
        parent, token = top // V, top % V
        cands = [hist[p, P:cur].tolist() + [int(t)] for p, t in zip(parent, token)]
        ends = np.array([int(t) in eos or step + 1 >= n_new or (stop is not None and stop(c))
                         for t, c in zip(token, cands)])

        # the first K candidates that end become hypotheses; the best K hypotheses are kept
        norm = np.float32(float(step + 1) ** lp)
        for i in np.flatnonzero(ends[:K]):
            finished.append((float(top_scores[i] / norm), cands[i]))
        finished.sort(key=lambda h: -h[0])  # stable: earlier hypotheses first among equals
        del finished[K:]

        # the best K that go on
        alive = (top_scores + ends.astype(np.float32) * NEG).astype(np.float32)
        keep = _top(alive, K)
        scores = alive[keep]
        parents, tokens = parent[keep], token[keep]
        hist[:, :cur] = hist[parents, :cur]
        hist[:, cur] = tokens

        if ends.all():
            break
        if len(finished) == K:
            if cfg.early_stopping is True:
                break
            best_len = n_new if (cfg.early_stopping == "never" and lp > 0) else step + 1
            best_possible = scores[0] / np.float32(float(best_len) ** lp)
            if not best_possible > np.float32(finished[-1][0]):
                break
        logits = caches.advance([int(p) for p in parents], [int(t) for t in tokens])

    if not finished:  # nothing ended (cannot happen when the length limit ends every candidate)
        finished = [(float(s), hist[k, P:].tolist()) for k, s in enumerate(scores)]
    return finished


class SequenceCaches:
    """Beams in sequences 1..K of a model with several KV caches (sequence 0 keeps the prompt, so
    the model's next call reuses it). Reordering claims a parent's sequence for its first child
    and copies it for the others, so a step copies as few caches as beams were dropped."""

    def __init__(self, model: Any, num_beams: int):
        self.model = model
        self.K = num_beams
        self.seq = [0] * num_beams  # the sequence holding each running beam

    def start(self, prompt: List[int]) -> np.ndarray:
        self.model._batch_begin(self.K + 1)
        return np.asarray(self.model._batch_prefill(prompt, 0))

    def advance(self, parents: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        old = self.seq
        new: List[Optional[int]] = [None] * self.K
        claimed = set()
        for j, p in enumerate(parents):
            if old[p] != 0 and old[p] not in claimed:
                new[j] = old[p]
                claimed.add(old[p])
        free = [s for s in range(1, self.K + 1) if s not in claimed]
        for j, p in enumerate(parents):
            if new[j] is None:
                s = free.pop()
                self.model._batch_copy(old[p], s)
                new[j] = s
        self.seq = [int(s) for s in new if s is not None]
        return np.asarray(self.model._batch_step(list(tokens), self.seq))

    def end(self) -> None:
        self.model._batch_end()


class ReplayCaches:
    """Beams over a model with one KV cache: each beam's sequence runs through ``_prefill``, which
    keeps the prefix the cache shares with it (for models without per-sequence caches)."""

    def __init__(self, model: Any, num_beams: int):
        self.model = model
        self.seqs: List[List[int]] = []
        self.K = num_beams

    def start(self, prompt: List[int]) -> np.ndarray:
        self.seqs = [list(prompt)] * self.K
        return np.asarray(self.model._prefill(list(prompt)))

    def advance(self, parents: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        self.seqs = [self.seqs[p] + [t] for p, t in zip(parents, tokens)]
        return np.stack([np.asarray(self.model._prefill(s)) for s in self.seqs])

    def end(self) -> None:
        pass
