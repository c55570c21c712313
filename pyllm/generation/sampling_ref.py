# Readable numpy reference of every logits processor and of the sampler, the oracle for the tests.
# Not fast and not the public API: use pyllm.generation.logits_process.
"""Reference semantics, one short function per processor, on ``(B,V)`` arrays.

Conventions shared with the fast path (``_sampler.pyx``):

* scores stay float32; filtered tokens become ``-inf``;
* probabilities are ``exp(score - max)`` in float64, summed in token-id order;
* a ranking is by score descending, then token id ascending;
* sampling draws one uniform ``u`` per row and returns the first token whose
  running probability sum exceeds ``u * total``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

NEG_INF = np.float32(-np.inf)


def softmax64(row: np.ndarray) -> Tuple[np.ndarray, float]:
    """float64 weights exp(row - max) of one row and their sum, in id order."""
    row = row.astype(np.float64)
    e = np.exp(row - row.max()) if np.isfinite(row).any() else np.zeros_like(row)
    return e, float(np.cumsum(e)[-1]) if e.size else 0.0


def ranking(row: np.ndarray) -> np.ndarray:
    """Token ids by score descending, ties by lower id first."""
    return np.lexsort((np.arange(row.size), -row.astype(np.float64)))


def temperature(scores: np.ndarray, t: float) -> np.ndarray:
    return scores / np.float32(t)


def top_k(scores: np.ndarray, k: int, min_tokens_to_keep: int = 1) -> np.ndarray:
    k = min(max(k, min_tokens_to_keep), scores.shape[1])
    kth = -np.sort(-scores, axis=1)[:, k - 1:k]   # the k-th largest of each row
    return np.where(scores < kth, NEG_INF, scores)


def top_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    out = scores.copy()
    for b, row in enumerate(scores):
        if not np.isfinite(row).any():
            continue
        e, Z = softmax64(row)
        order = ranking(row)
        mass_before = np.concatenate([[0.0], np.cumsum(e[order] / Z)[:-1]])
        drop = (mass_before >= p) & (np.arange(row.size) >= min_tokens_to_keep)
        out[b, order[drop]] = NEG_INF
    return out


def min_p(scores: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    out = scores.copy()
    for b, row in enumerate(scores):
        if not np.isfinite(row).any():
            continue
        e, Z = softmax64(row)
        drop = e / Z < p * (1.0 / Z)   # the top token's weight is exp(0) = 1
        drop[ranking(row)[:min_tokens_to_keep]] = False
        out[b, drop] = NEG_INF
    return out


def typical(scores: np.ndarray, mass: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    out = scores.copy()
    for b, row in enumerate(scores):
        finite = np.isfinite(row)
        if not finite.any():
            continue
        e, Z = softmax64(row)
        logp = row.astype(np.float64) - (row[finite].max() + np.log(Z))
        used = finite & (e > 0)
        entropy = -np.sum(e[used] / Z * logp[used])
        shift = np.where(finite, np.abs(-logp - entropy), np.inf)
        order = np.lexsort((np.arange(row.size), shift))
        cum = np.cumsum(e[order] / Z)
        last = min(int(np.sum(cum < mass)), int(finite.sum()) - 1)
        drop = (shift[order] > shift[order[last]]) & (np.arange(row.size) >= min_tokens_to_keep)
        out[b, order[drop]] = NEG_INF
    return out


def repetition_penalty(scores: np.ndarray, input_ids: np.ndarray, penalty: float,
                       prompt_ignore_length: int = 0) -> np.ndarray:
    out = scores.copy()
    p = np.float32(penalty)
    for b in range(scores.shape[0]):
        seen = np.unique(input_ids[b, prompt_ignore_length:])
        seen = seen[(seen >= 0) & (seen < scores.shape[1])]
        v = out[b, seen]
        out[b, seen] = np.where(v < 0, v * p, v / p)
    return out


def frequency_presence_penalty(scores: np.ndarray, input_ids: np.ndarray, frequency: float, presence: float,
                               prompt_ignore_length: int = 0) -> np.ndarray:
    out = scores.copy()
    for b in range(scores.shape[0]):
        ids, counts = np.unique(input_ids[b, prompt_ignore_length:], return_counts=True)
        keep = (ids >= 0) & (ids < scores.shape[1])
        ids, counts = ids[keep], counts[keep]
        out[b, ids] = (out[b, ids].astype(np.float64) - (frequency * counts + presence)).astype(np.float32)
    return out


def no_repeat_ngram(scores: np.ndarray, input_ids: np.ndarray, n: int) -> np.ndarray:
    out = scores.copy()
    T = input_ids.shape[1]
    if n <= 0 or T < n:
        return out
    for b in range(scores.shape[0]):
        seq = input_ids[b].tolist()
        prefix = seq[T - n + 1:]
        for i in range(T - n + 1):  # every complete n-gram seq[i:i+n]
            if seq[i:i + n - 1] == prefix and seq[i + n - 1] < scores.shape[1]:
                out[b, seq[i + n - 1]] = NEG_INF
    return out


def min_new_tokens(scores: np.ndarray, input_ids: np.ndarray, prompt_length: int, min_new: int,
                   eos_ids: Sequence[int]) -> np.ndarray:
    out = scores.copy()
    if input_ids.shape[1] - prompt_length < min_new:
        out[:, [i for i in eos_ids if i < scores.shape[1]]] = NEG_INF
    return out


def sample(scores: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse CDF in id order with one uniform per row; greedy is np.argmax."""
    out = []
    for row, ub in zip(scores, u):
        e, Z = softmax64(row)
        if Z == 0:
            raise ValueError("nothing to sample")
        cum = np.cumsum(e)
        hit = np.flatnonzero((cum > ub * Z) & (e > 0))
        out.append(hit[0] if hit.size else np.flatnonzero(e > 0)[-1])
    return np.array(out, dtype=np.int64)
