# Logits processors and the next-token sampler, with Hugging Face transformers' names and semantics
# on numpy arrays. Not a generate() loop, beam search or stopping criteria; the loops are in _sampler.pyx.
"""Turn a model's next-token scores into a token: penalties, warpers, sampling.

Each processor is called like its ``transformers`` namesake,
``processor(input_ids, scores) -> scores``, with numpy arrays: ``input_ids``
``(B,T)`` integers (prompt + generated so far) and ``scores`` ``(B,V)``
float32. Processors return a new array and leave ``scores`` untouched;
filtered tokens get ``-inf``. :func:`build_logits_processors` builds the list
``generate()`` would, in transformers' order, and :func:`sample` picks the
next token with an explicit :class:`numpy.random.Generator`, so a seed pins
the output. :meth:`LogitsProcessorList.sample` does both in one pass over the
vocabulary when the list allows it, and returns the same tokens.

>>> import numpy as np
>>> procs = build_logits_processors(do_sample=True, temperature=0.7, top_k=50, top_p=0.9,
...                                 repetition_penalty=1.1)
>>> [type(p).__name__ for p in procs]  # doctest: +NORMALIZE_WHITESPACE
['RepetitionPenaltyLogitsProcessor', 'TemperatureLogitsWarper', 'TopKLogitsWarper',
 'TopPLogitsWarper']
>>> scores = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
>>> ids = np.array([[1, 2, 3], [4, 5, 6]])
>>> a = procs.sample(ids, scores, np.random.default_rng(42))
>>> b = sample(procs(ids, scores), np.random.default_rng(42))
>>> a.tolist() == b.tolist(), a.dtype
(True, dtype('int64'))

Differences from transformers: ``top_k=0``, ``no_repeat_ngram_size=0``,
``top_p=1``, ``typical_p=1`` and ``min_p=0`` are accepted and do nothing
(transformers' ``generate`` skips them the same way); ``filter_value`` is
always ``-inf``; ``prompt_ignore_length`` is one int for the batch.
Tokens tied at the top-p or min-tokens boundary are ranked lower id first.
Scores must be finite or ``-inf`` (``+inf`` and NaN are not supported).
"""

from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import _sampler

__all__ = [
    "LogitsProcessor",
    "LogitsProcessorList",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "RepetitionPenaltyLogitsProcessor",
    "FrequencyPresencePenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "build_logits_processors",
    "sample",
]


# ---------------------------------------------------------------- argument checks

def _as_scores(scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
    arr = np.ascontiguousarray(scores, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"scores must have shape (batch, vocab), got shape {arr.shape}")
    return arr


def _as_ids(input_ids: npt.ArrayLike, batch: int) -> npt.NDArray[np.int64]:
    arr = np.ascontiguousarray(input_ids, dtype=np.int64)
    if arr.ndim == 1 and batch == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != batch:
        raise ValueError(f"input_ids must have shape (batch, seq_len) with batch {batch} like scores, "
                         f"got shape {arr.shape}")
    return arr


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(np.asarray(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _token_ids(name: str, value: Union[int, Iterable[int]]) -> List[int]:
    ids: List[object] = [value] if isinstance(value, (int, numbers.Integral)) else list(value)
    if not ids or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0 for i in ids):
        raise ValueError(f"{name} must be a token id or a non-empty list of token ids >= 0, got {value!r}")
    return [int(i) for i in ids if isinstance(i, numbers.Integral)]  # all are, checked above


# ---------------------------------------------------------------- base classes

class LogitsProcessor:
    """Base class: ``processor(input_ids, scores) -> scores``.

    ``input_ids`` is ``(B,T)`` int (prompt + generated tokens), ``scores``
    ``(B,V)`` float32 next-token logits; the result is a new ``(B,V)``
    float32 array. Subclass it and define ``__call__``, or put any callable
    with that signature in a :class:`LogitsProcessorList`.

    >>> class BanToken(LogitsProcessor):
    ...     def __init__(self, token): self.token = token
    ...     def __call__(self, input_ids, scores):
    ...         out = np.array(scores, dtype=np.float32)
    ...         out[:, self.token] = -np.inf
    ...         return out
    >>> BanToken(1)(np.zeros((1, 0), np.int64), np.zeros((1, 3), np.float32)).tolist()
    [[0.0, -inf, 0.0]]
    """

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(input_ids, scores)")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


ProcessorLike = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Frozen(LogitsProcessor):
    # this module's processors are immutable once built, so a list can cache its fused plan
    def __setattr__(self, name: str, value: object) -> None:
        if "_frozen" in self.__dict__:
            raise AttributeError(f"{type(self).__name__} is immutable: build a new one with {name}={value!r}")
        object.__setattr__(self, name, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "_frozen")
        return f"{type(self).__name__}({args})"


# the fused kernel's arguments after (scores, ids): op kinds, op a, op b, op starts, ban list, ban offsets,
# temperature, top_k, top_p, top_p_keep, min_p, min_p_keep, warp
_FusedArgs = Tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64],
                   npt.NDArray[np.int64], npt.NDArray[np.int64], np.float32, int, float, int, float, int, bool]
# one penalty op of the fused kernel: kind, a, b, start, banned ids
_FusedOp = Tuple[int, float, float, int, Sequence[int]]


def _processed(processor: Any, out: Any, shape: Tuple[int, ...]) -> Any:
    """A processor's output, checked: floating scores of the shape it was given (a
    processor that drops or adds columns would make the sampler pick a wrong id)."""
    name = getattr(processor, "__name__", type(processor).__name__)
    arr = np.asarray(out)  # a view of numpy or CPU torch output
    if arr.shape != tuple(shape):
        raise ValueError(f"logits processor {name} returned scores of shape {arr.shape}, expected {tuple(shape)} "
                         "(batch, vocab): a processor must return one score per token id")
    if arr.dtype.kind != "f":
        raise TypeError(f"logits processor {name} returned scores of dtype {arr.dtype}; scores must be floating point")
    return out


class LogitsProcessorList(list[ProcessorLike]):
    """A list of processors applied in order; :meth:`sample` also picks the token.

    >>> procs = LogitsProcessorList([TemperatureLogitsWarper(0.5), TopKLogitsWarper(1)])
    >>> procs(np.zeros((1, 0), np.int64), np.array([[1.0, 2.0, 0.5]], np.float32)).tolist()
    [[-inf, 4.0, -inf]]
    """

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        shape = np.shape(scores)
        for processor in self:
            scores = _processed(processor, processor(input_ids, scores), shape)
        return scores

    def sample(self, input_ids: np.ndarray, scores: np.ndarray,
               generator: Optional[np.random.Generator] = None, do_sample: bool = True) -> np.ndarray:
        """Process ``scores`` and pick one token per row: ``(B,)`` int64.

        Returns exactly ``sample(self(input_ids, scores), generator, do_sample)``
        and draws the same uniforms from ``generator``. When the list holds
        only this module's processors, with any penalties first and then
        temperature, top-k, top-p and min-p in that order (as
        :func:`build_logits_processors` builds it), the work runs as one
        fused pass per row that sorts only the candidates it needs.

        >>> procs = build_logits_processors(do_sample=True, top_k=2)
        >>> scores = np.array([[0.0, 5.0, 4.9, -3.0]], np.float32)
        >>> int(procs.sample(np.zeros((1, 0), np.int64), scores, np.random.default_rng(0))[0]) in (1, 2)
        True
        """
        fused = self._fused_args()
        if fused is None:
            return sample(self(input_ids, scores), generator, do_sample)
        scores = _as_scores(scores)
        B = scores.shape[0]
        ids = _as_ids(input_ids, B)
        if do_sample:
            u = _check_generator(generator).random(int(B))
        else:
            u = np.zeros(B)
        out = np.empty(B, dtype=np.int64)
        scratch = _thread_scratch(_sampler.fused_scratch_bytes(scores.shape[1], ids.shape[1]))
        bad = _sampler.fused_sample(scores, ids, *fused, u, bool(do_sample), out, scratch)
        if bad >= 0:
            raise _nothing_to_sample(bad)
        return out

    # (processor ids, fused arguments, the processors): set by _fused_args
    _fused_cache: Optional[Tuple[Tuple[int, ...], Optional[_FusedArgs], List[ProcessorLike]]] = None

    def _fused_args(self) -> Optional[_FusedArgs]:
        # the fused kernel's arguments for this list (None: cannot fuse), cached while the list
        # holds the same processor objects (ours are immutable)
        key = tuple(map(id, self))
        cache = self._fused_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        plan = self._fused_plan()
        args: Optional[_FusedArgs] = None
        if plan is not None:
            kinds: List[int] = []
            a: List[float] = []
            b: List[float] = []
            starts: List[int] = []
            bans: List[int] = []
            ban_off = [0]
            for proc in plan.ops:
                kind, pa, pb, start, ban = proc._fused_op()
                kinds.append(kind)
                a.append(pa)
                b.append(pb)
                starts.append(start)
                bans.extend(ban)
                ban_off.append(len(bans))
            top_k = 0
            if plan.top_k is not None and plan.top_k.top_k > 0:
                top_k = max(plan.top_k.top_k, plan.top_k.min_tokens_to_keep)  # >= V: off in the kernel
            top_p, top_p_keep = (plan.top_p.top_p, plan.top_p.min_tokens_to_keep) if plan.top_p else (1.0, 1)
            min_p, min_p_keep = (plan.min_p.min_p, plan.min_p.min_tokens_to_keep) if plan.min_p else (0.0, 1)
            temperature = plan.temperature.temperature if plan.temperature else 1.0
            warp = temperature != 1.0 or top_k > 0 or top_p < 1.0 or min_p > 0.0
            args = (np.array(kinds, np.int32), np.array(a, np.float64), np.array(b, np.float64),
                    np.array(starts, np.int64), np.array(bans, np.int64), np.array(ban_off, np.int64),
                    np.float32(temperature), top_k, top_p, top_p_keep, min_p, min_p_keep, warp)
        self._fused_cache = (key, args, list(self))  # holding the objects keeps their ids unique
        return args

    def _fused_plan(self) -> Optional[_FusedPlan]:
        # penalties (any order) then at most one each of temperature, top-k, top-p, min-p, in that order;
        # exact types only (a subclass may change what __call__ does)
        plan = _FusedPlan()
        next_stage = 0
        for proc in self:
            if isinstance(proc, _FUSABLE_OPS) and type(proc) in _FUSABLE_OPS and next_stage == 0:
                plan.ops.append(proc)
            elif type(proc) is TemperatureLogitsWarper and next_stage <= 0:
                plan.temperature, next_stage = proc, 1
            elif type(proc) is TopKLogitsWarper and next_stage <= 1:
                plan.top_k, next_stage = proc, 2
            elif type(proc) is TopPLogitsWarper and next_stage <= 2:
                plan.top_p, next_stage = proc, 3
            elif type(proc) is MinPLogitsWarper and next_stage <= 3:
                plan.min_p, next_stage = proc, 4
            else:
                return None
        return plan


_local = threading.local()


def _thread_scratch(nbytes: int) -> npt.NDArray[np.uint64]:
    """The fused sampler's work buffer of the calling thread, grown to ``nbytes``
    (kept between tokens: a fresh megabyte per token costs page faults)."""
    buf: Optional[npt.NDArray[np.uint64]] = getattr(_local, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty((max(nbytes, 0 if buf is None else 2 * buf.nbytes) + 7) // 8, dtype=np.uint64)
        _local.scratch = buf
    return buf


def _check_generator(generator: object) -> np.random.Generator:
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(generator).__name__}")
    return generator


def _nothing_to_sample(row: int) -> ValueError:
    return ValueError(f"cannot sample row {row}: every score is -inf after processing "
                      f"(check the bans and filters, or use do_sample=False)")


# ---------------------------------------------------------------- warpers

class TemperatureLogitsWarper(_Frozen):
    """Divide the scores by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    Temperature 0 means greedy decoding: call :func:`sample` with
    ``do_sample=False`` instead.

    >>> TemperatureLogitsWarper(0.5)(None, np.array([[1.0, -2.0]], np.float32)).tolist()
    [[2.0, -4.0]]
    """

    def __init__(self, temperature: float):
        t = _real("temperature", temperature)
        if not t > 0:
            hint = " (temperature 0 means greedy: use do_sample=False)" if t == 0 else ""
            raise ValueError(f"temperature must be > 0, got {temperature!r}{hint}")
        self.temperature = t
        self._freeze()

    def __call__(self, input_ids: object, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        return _as_scores(scores) / np.float32(self.temperature)


class TopKLogitsWarper(_Frozen):
    """Keep the ``top_k`` highest scores (all of them on a tie with the k-th); 0 keeps all.

    ``min_tokens_to_keep`` raises ``top_k`` to at least that many.

    >>> TopKLogitsWarper(2)(None, np.array([[1.0, 3.0, 2.0, 2.0, 0.0]], np.float32)).tolist()
    [[-inf, 3.0, 2.0, 2.0, -inf]]
    """

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        self.top_k = _count("top_k", top_k, 0)
        self.min_tokens_to_keep = _count("min_tokens_to_keep", min_tokens_to_keep, 1)
        self._freeze()

    def __call__(self, input_ids: object, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        scores = _as_scores(scores)
        k = max(self.top_k, self.min_tokens_to_keep)
        if self.top_k == 0 or k >= scores.shape[1]:
            return scores.copy()
        out = scores.copy()
        _sampler.top_k_(out, k)
        return out


class TopPLogitsWarper(_Frozen):
    """Nucleus filtering: keep the smallest set of most probable tokens whose
    probability adds up to at least ``top_p`` (in (0, 1]; 1 keeps all), and at
    least ``min_tokens_to_keep`` tokens.

    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    >>> np.isfinite(TopPLogitsWarper(0.8)(None, logits)).tolist()
    [[True, True, False, False]]
    """

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        p = _real("top_p", top_p)
        if not 0 < p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        self.top_p = p
        self.min_tokens_to_keep = _count("min_tokens_to_keep", min_tokens_to_keep, 1)
        self._freeze()

    def __call__(self, input_ids: object, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        if self.top_p < 1.0:
            _sampler.top_p_(out, self.top_p, self.min_tokens_to_keep)
        return out


class MinPLogitsWarper(_Frozen):
    """Keep tokens whose probability is at least ``min_p`` (in [0, 1]) times the
    top token's probability, and at least ``min_tokens_to_keep`` tokens.

    >>> logits = np.log(np.array([[0.6, 0.3, 0.1]], np.float32))
    >>> np.isfinite(MinPLogitsWarper(0.2)(None, logits)).tolist()
    [[True, True, False]]
    """

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        p = _real("min_p", min_p)
        if not 0 <= p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p!r}")
        self.min_p = p
        self.min_tokens_to_keep = _count("min_tokens_to_keep", min_tokens_to_keep, 1)
        self._freeze()

    def __call__(self, input_ids: object, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        if self.min_p > 0.0:
            _sampler.min_p_(out, self.min_p, self.min_tokens_to_keep)
        return out


class TypicalLogitsWarper(_Frozen):
    """Locally typical sampling: rank tokens by how close ``-log p`` is to the
    entropy and keep the closest ones until their probability reaches
    ``mass`` (``typical_p`` in generate(); in (0, 1], 1 keeps all).

    >>> logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1]], np.float32))
    >>> np.isfinite(TypicalLogitsWarper(0.45)(None, logits)).tolist()
    [[False, True, True, False]]
    """

    def __init__(self, mass: float = 0.9, min_tokens_to_keep: int = 1):
        m = _real("typical_p", mass)
        if not 0 < m <= 1:
            raise ValueError(f"typical_p (mass) must be in (0, 1], got {mass!r}")
        self.mass = m
        self.min_tokens_to_keep = _count("min_tokens_to_keep", min_tokens_to_keep, 1)
        self._freeze()

    def __call__(self, input_ids: object, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        if self.mass < 1.0:
            _sampler.typical_(out, self.mass, self.min_tokens_to_keep)
        return out


# ---------------------------------------------------------------- processors that read the history

class RepetitionPenaltyLogitsProcessor(_Frozen):
    """Penalize every token that occurs in ``input_ids`` (prompt included), once:
    a negative score is multiplied by ``penalty``, any other divided by it.

    ``penalty`` > 1 discourages repeats, < 1 encourages them; ``prompt_ignore_length``
    leading tokens of every row are not counted.

    >>> p = RepetitionPenaltyLogitsProcessor(2.0)
    >>> p(np.array([[0, 1, 1]]), np.array([[4.0, -4.0, 4.0]], np.float32)).tolist()
    [[2.0, -8.0, 4.0]]
    """

    def __init__(self, penalty: float, prompt_ignore_length: Optional[int] = None):
        p = _real("repetition_penalty", penalty)
        if not p > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 means no penalty), got {penalty!r}")
        self.penalty = p
        self.prompt_ignore_length = 0 if prompt_ignore_length is None else \
            _count("prompt_ignore_length", prompt_ignore_length, 0)
        self._freeze()

    def __call__(self, input_ids: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        _sampler.repetition_penalty_(out, _as_ids(input_ids, out.shape[0]), self.prompt_ignore_length,
                                     self.penalty)
        return out

    def _fused_op(self) -> _FusedOp:
        return _sampler.OP_REPETITION, self.penalty, 0.0, self.prompt_ignore_length, ()


class FrequencyPresencePenaltyLogitsProcessor(_Frozen):
    """OpenAI-style penalties (not in transformers): for each token that occurs
    ``count`` > 0 times in ``input_ids``,
    ``score -= frequency_penalty * count + presence_penalty``.

    Counts include the prompt unless ``prompt_ignore_length`` leading tokens
    are skipped (OpenAI counts only generated tokens: pass the prompt length).
    Negative values encourage repeats.

    >>> p = FrequencyPresencePenaltyLogitsProcessor(frequency_penalty=0.5, presence_penalty=1.0)
    >>> p(np.array([[2, 2, 0]]), np.array([[1.0, 1.0, 1.0]], np.float32)).tolist()
    [[-0.5, 1.0, -1.0]]
    """

    def __init__(self, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                 prompt_ignore_length: Optional[int] = None):
        self.frequency_penalty = _real("frequency_penalty", frequency_penalty)
        self.presence_penalty = _real("presence_penalty", presence_penalty)
        self.prompt_ignore_length = 0 if prompt_ignore_length is None else \
            _count("prompt_ignore_length", prompt_ignore_length, 0)
        self._freeze()

    def __call__(self, input_ids: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        _sampler.frequency_presence_penalty_(out, _as_ids(input_ids, out.shape[0]), self.prompt_ignore_length,
                                             self.frequency_penalty, self.presence_penalty)
        return out

    def _fused_op(self) -> _FusedOp:
        return (_sampler.OP_FREQ_PRESENCE, self.frequency_penalty, self.presence_penalty,
                self.prompt_ignore_length, ())


class NoRepeatNGramLogitsProcessor(_Frozen):
    """Ban (``-inf``) every token that would repeat an n-gram of size
    ``ngram_size`` already in ``input_ids`` (prompt included); 0 bans nothing.

    >>> p = NoRepeatNGramLogitsProcessor(2)
    >>> p(np.array([[5, 1, 2, 1]]), np.zeros((1, 6), np.float32)).tolist()  # "1 2" was seen
    [[0.0, 0.0, -inf, 0.0, 0.0, 0.0]]
    """

    def __init__(self, ngram_size: int):
        self.ngram_size = _count("no_repeat_ngram_size", ngram_size, 0)
        self._freeze()

    def __call__(self, input_ids: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        if self.ngram_size > 0:
            _sampler.no_repeat_ngram_(out, _as_ids(input_ids, out.shape[0]), self.ngram_size)
        return out

    def _fused_op(self) -> _FusedOp:
        return _sampler.OP_NGRAM, float(self.ngram_size), 0.0, 0, ()


class MinNewTokensLengthLogitsProcessor(_Frozen):
    """Ban ``eos_token_id`` (one id or a list) until ``min_new_tokens`` tokens
    have been generated after the first ``prompt_length_to_skip`` of ``input_ids``.

    >>> p = MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=2, min_new_tokens=2, eos_token_id=0)
    >>> p(np.array([[7, 7, 3]]), np.zeros((1, 3), np.float32)).tolist()   # 1 new token so far
    [[-inf, 0.0, 0.0]]
    >>> p(np.array([[7, 7, 3, 4]]), np.zeros((1, 3), np.float32)).tolist()  # 2: eos allowed
    [[0.0, 0.0, 0.0]]
    """

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: Union[int, Sequence[int]]):
        self.prompt_length_to_skip = _count("prompt_length_to_skip", prompt_length_to_skip, 0)
        self.min_new_tokens = _count("min_new_tokens", min_new_tokens, 0)
        self.eos_token_id = _token_ids("eos_token_id", eos_token_id)
        self._freeze()

    def _active(self, seq_len: int) -> bool:
        return seq_len - self.prompt_length_to_skip < self.min_new_tokens

    def __call__(self, input_ids: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.float32]:
        out = _as_scores(scores).copy()
        if self._active(np.shape(input_ids)[-1]):
            eos = [i for i in self.eos_token_id if i < out.shape[1]]
            out[:, eos] = -np.inf
        return out

    def _fused_op(self) -> _FusedOp:  # banned while seq_len < prompt_length_to_skip + min_new_tokens
        return _sampler.OP_BAN, float(self.prompt_length_to_skip + self.min_new_tokens), 0.0, 0, self.eos_token_id


_FUSABLE_OPS = (RepetitionPenaltyLogitsProcessor, FrequencyPresencePenaltyLogitsProcessor,
                NoRepeatNGramLogitsProcessor, MinNewTokensLengthLogitsProcessor)
_FusableOp = Union[RepetitionPenaltyLogitsProcessor, FrequencyPresencePenaltyLogitsProcessor,
                   NoRepeatNGramLogitsProcessor, MinNewTokensLengthLogitsProcessor]


@dataclass
class _FusedPlan:
    # what LogitsProcessorList.sample can run as one fused pass: penalty ops, then the warpers
    ops: List[_FusableOp] = field(default_factory=list)
    temperature: Optional[TemperatureLogitsWarper] = None
    top_k: Optional[TopKLogitsWarper] = None
    top_p: Optional[TopPLogitsWarper] = None
    min_p: Optional[MinPLogitsWarper] = None


# ---------------------------------------------------------------- building the list and sampling

def build_logits_processors(
    *,
    do_sample: bool = False,
    temperature: Optional[float] = None,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    min_p: Optional[float] = None,
    typical_p: Optional[float] = None,
    repetition_penalty: Optional[float] = None,
    frequency_penalty: Optional[float] = None,
    presence_penalty: Optional[float] = None,
    no_repeat_ngram_size: Optional[int] = None,
    min_new_tokens: Optional[int] = None,
    eos_token_id: Union[int, Sequence[int], None] = None,
    prompt_length: Optional[int] = None,
    min_tokens_to_keep: int = 1,
    logits_processor: Iterable[ProcessorLike] = (),
) -> LogitsProcessorList:
    """The processors ``generate(**kwargs)`` applies, in transformers' order.

    Order: repetition penalty, frequency/presence penalty (not in
    transformers; placed right after the repetition penalty), no-repeat
    n-gram, min new tokens (needs ``eos_token_id`` and ``prompt_length``),
    the caller's ``logits_processor`` entries, then, only when
    ``do_sample``: temperature, top-k, top-p, min-p, typical-p. ``None``
    and neutral values (penalty 1.0, temperature 1.0, top_k 0, top_p 1.0,
    min_p 0, typical_p 1.0, sizes 0) add nothing. Defaults belong to the caller.

    >>> procs = build_logits_processors(do_sample=True, temperature=0.7, top_k=50, top_p=0.9,
    ...                                 repetition_penalty=1.1, no_repeat_ngram_size=3)
    >>> [type(p).__name__ for p in procs]  # doctest: +NORMALIZE_WHITESPACE
    ['RepetitionPenaltyLogitsProcessor', 'NoRepeatNGramLogitsProcessor', 'TemperatureLogitsWarper',
     'TopKLogitsWarper', 'TopPLogitsWarper']
    >>> len(build_logits_processors(do_sample=False, temperature=0.7, top_k=50))  # greedy: no warpers
    0
    """
    procs = LogitsProcessorList()
    if repetition_penalty is not None and repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if (frequency_penalty is not None and frequency_penalty != 0) or \
            (presence_penalty is not None and presence_penalty != 0):
        procs.append(FrequencyPresencePenaltyLogitsProcessor(frequency_penalty or 0.0, presence_penalty or 0.0))
    if no_repeat_ngram_size is not None and _count("no_repeat_ngram_size", no_repeat_ngram_size, 0) > 0:
        procs.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    # min_new_tokens holds back the end-of-sequence token; a model without one has nothing to hold back
    if min_new_tokens is not None and _count("min_new_tokens", min_new_tokens, 0) > 0 and eos_token_id is not None:
        if prompt_length is None:
            raise ValueError("min_new_tokens needs prompt_length (the prompt's token count)")
        procs.append(MinNewTokensLengthLogitsProcessor(prompt_length, min_new_tokens, eos_token_id))
    procs.extend(logits_processor)
    if do_sample:
        if temperature is not None and temperature != 1.0:
            procs.append(TemperatureLogitsWarper(temperature))
        if top_k is not None and _count("top_k", top_k, 0) > 0:
            procs.append(TopKLogitsWarper(top_k, min_tokens_to_keep))
        if top_p is not None and TopPLogitsWarper(top_p).top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p, min_tokens_to_keep))
        if min_p is not None and MinPLogitsWarper(min_p).min_p > 0.0:
            procs.append(MinPLogitsWarper(min_p, min_tokens_to_keep))
        if typical_p is not None and TypicalLogitsWarper(typical_p).mass < 1.0:
            procs.append(TypicalLogitsWarper(typical_p, min_tokens_to_keep))
    return procs


def sample(scores: np.ndarray, generator: Optional[np.random.Generator] = None,
           do_sample: bool = True) -> np.ndarray:
    """One token per row of ``scores (B,V)``: ``(B,)`` int64.

    ``do_sample=False`` is greedy: the highest score, lowest id on a tie (like
    ``torch.argmax``); it draws nothing and needs no generator. Otherwise the
    token is drawn from ``softmax(scores)`` with exactly one
    ``generator.random()`` per row, by inverse CDF over the probabilities in
    token-id order, so the result depends only on the generator's state.

    >>> scores = np.array([[0.0, 2.0, 2.0], [9.0, 0.0, -np.inf]], np.float32)
    >>> sample(scores, do_sample=False).tolist()
    [1, 0]
    >>> sample(scores, np.random.default_rng(7)).tolist() == sample(scores, np.random.default_rng(7)).tolist()
    True
    """
    scores = _as_scores(scores)
    if not do_sample:
        best: npt.NDArray[np.int64] = np.argmax(scores, axis=1).astype(np.int64)
        return best
    u = _check_generator(generator).random(int(scores.shape[0]))
    out = np.empty(scores.shape[0], dtype=np.int64)
    bad = _sampler.sample_rows(scores, u, out)
    if bad >= 0:
        raise _nothing_to_sample(bad)
    return out
