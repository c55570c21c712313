# The continuous-batching scheduler behind `pyllm serve`: one thread per model admits requests into the
# running decode batch at every step, interleaves prompt prefill in chunks and retires finished sequences.
"""Continuous batching over a model's per-sequence KV caches.

An :class:`Engine` owns a model while it has work: its thread holds the
model's lock from the first admitted request until the queue and the batch
are empty again. Each step it

1. drops the sequences of cancelled requests (their slots are free at once),
2. admits waiting requests into free slots (FIFO; a request with ``n``
   choices takes ``n`` slots), reusing the longest cached prefix any slot
   holds (a common system prompt prefills once),
3. prefills at most ``prefill_chunk`` prompt tokens (more when nothing is
   decoding), so running streams keep getting a token every step,
4. runs one decode step over every sequence that has a token to feed
   (``decode_batch``: each weight read once for all of them),
5. runs at most one queued :meth:`Engine.call` (a decoder's embedding of one
   input, on the model's own cache, slot 0, which no request uses).

Tokens are sampled per sequence with the same processors, generator and
stopping rules as :meth:`pyllm.generation.utils.GenerationMixin.generate`,
and the runtime gives a position the same logits whether it was prefilled,
decoded alone or beside others, so a request's tokens do not depend on what
else runs. Not HTTP: events go to a ``sink`` (anything with ``put``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .. import ops
from ..generation.logits_process import (
    FrequencyPresencePenaltyLogitsProcessor,
    LogitsProcessorList,
    ProcessorLike,
    build_logits_processors,
)
from ..generation.utils import _StopStrings, reusable_prefix

__all__ = ["Engine", "EngineStopped", "QueueFull", "Request", "SamplingParams", "TokenEvent", "DoneEvent"]


class QueueFull(RuntimeError):
    """The engine's waiting queue holds ``max_queue`` requests already."""


class EngineStopped(RuntimeError):
    """The engine is shutting down (or its thread died) and takes no requests."""


class LogitBias:
    """Adds ``bias[token]`` to the scores (OpenAI's ``logit_bias``, -100..100 per token id)."""

    def __init__(self, bias: Dict[int, float]):
        self.ids = np.array(sorted(bias), dtype=np.int64)
        self.values = np.array([bias[i] for i in sorted(bias)], dtype=np.float32)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        out = np.array(scores, dtype=np.float32)
        out[:, self.ids] += self.values
        return out


@dataclass
class SamplingParams:
    """What one request asks of the decoder, in generate()'s terms (checked by :meth:`check`)."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # OpenAI has no top-k: off unless asked for
    min_p: Optional[float] = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0  # OpenAI's: counts generated tokens only
    presence_penalty: float = 0.0
    logit_bias: Dict[int, float] = field(default_factory=dict)
    seed: Optional[int] = None
    stop: List[str] = field(default_factory=list)
    n: int = 1  # choices, each its own sequence
    logprobs: Optional[int] = None  # None: none; k >= 0: the chosen token's and the top k
    prompt_logprobs: bool = False  # the prompt's tokens' logprobs too (completions' echo)
    constraint: Optional[Callable[[int], ProcessorLike]] = None  # prompt length -> a fresh token mask

    def processors(self, prompt_length: int, vocab_size: int) -> LogitsProcessorList:
        """The processors generate() builds for ``do_sample, temperature, top_k, top_p, min_p,
        repetition_penalty`` and ``logits_processor=self.extra_processors(prompt_length)``."""
        return build_logits_processors(
            do_sample=self.do_sample, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            min_p=self.min_p, repetition_penalty=self.repetition_penalty,
            logits_processor=self.extra_processors(prompt_length, vocab_size))

    def extra_processors(self, prompt_length: int, vocab_size: int) -> List[ProcessorLike]:
        """OpenAI's penalties (over the generated tokens) and logit bias, as processors."""
        extra: List[ProcessorLike] = []
        if self.frequency_penalty or self.presence_penalty:
            extra.append(FrequencyPresencePenaltyLogitsProcessor(self.frequency_penalty, self.presence_penalty,
                                                                 prompt_ignore_length=prompt_length))
        if self.logit_bias:
            bad = [t for t in self.logit_bias if not 0 <= t < vocab_size]
            if bad:
                raise ValueError(f"logit_bias: token id {bad[0]} is out of range [0, {vocab_size})")
            extra.append(LogitBias(self.logit_bias))
        if self.constraint is not None:  # last: the mask has the final say on what may come next
            extra.append(self.constraint(prompt_length))
        return extra

    def rngs(self) -> List[np.random.Generator]:
        """One generator per choice, as generate() seeds them for ``num_return_sequences=n``."""
        if self.n == 1:
            return [np.random.default_rng(self.seed)]
        return [np.random.default_rng(None if self.seed is None else [self.seed, r]) for r in range(self.n)]


@dataclass
class TokenEvent:
    """One sampled token of choice ``index``; ``finish`` ("stop", "length", "cancelled") on its last."""

    index: int
    token: int
    logprob: Optional[float] = None
    top: Optional[List[Tuple[int, float]]] = None  # (token id, logprob), most likely first
    finish: Optional[str] = None


@dataclass
class PromptLogprobsEvent:
    """The prompt's tokens' logprobs (None for the first) and top alternatives."""

    logprobs: List[Optional[float]]
    top: List[Optional[List[Tuple[int, float]]]]


@dataclass
class DoneEvent:
    """Every choice finished (or the request failed: ``error``)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: Optional[BaseException] = None


class Sink(Protocol):
    def put(self, item: Any) -> None: ...


class Metrics(Protocol):
    def request_admitted(self, model: str, queued_s: float) -> None: ...
    def first_token(self, model: str, seconds: float) -> None: ...
    def tokens(self, model: str, prompt: int, cached: int, generated: int) -> None: ...
    def request_done(self, model: str, reason: str) -> None: ...


class Request:
    """A submitted request: its sequences' state lives in the engine thread; ``cancel`` is thread-safe."""

    def __init__(self, prompt: List[int], params: SamplingParams, sink: Sink):
        self.prompt = prompt
        self.params = params
        self.sink = sink
        self.submitted = time.perf_counter()
        self.cancelled = False
        self.first_token_at: Optional[float] = None
        self.cached_tokens = 0
        self.seqs: List[_Seq] = []
        self.finished = 0

    def cancel(self) -> None:
        """Stop generating: the engine frees the request's slots at its next step."""
        self.cancelled = True


@dataclass
class _Seq:
    req: Request
    index: int  # the choice
    procs: LogitsProcessorList
    rng: np.random.Generator
    stops: _StopStrings
    hist: np.ndarray  # (1, prompt + max_new) int64: what the processors see
    n: int  # filled positions of hist
    slot: int = -1
    done: int = 0  # prompt tokens in the slot's cache (choice 0 prefills; the others copy it)
    out: List[int] = dataclasses.field(default_factory=list)
    feed: Optional[int] = None  # the last sampled token, to run next step
    prompt_lp: List[Optional[float]] = dataclasses.field(default_factory=list)
    prompt_top: List[Optional[List[Tuple[int, float]]]] = dataclasses.field(default_factory=list)


def _logprobs(logits: np.ndarray, token: int, k: int) -> Tuple[float, Optional[List[Tuple[int, float]]]]:
    """log p(token) under softmax(logits) and the k most likely (id, logprob), ties lower id first."""
    lp = ops.log_softmax(logits[None, :])[0]
    top: Optional[List[Tuple[int, float]]] = None
    if k > 0:
        k = min(k, lp.shape[0])
        cand = np.argpartition(-lp, k - 1)[:k]
        cand = cand[np.lexsort((cand, -lp[cand]))]
        top = [(int(i), float(lp[i])) for i in cand]
    return float(lp[token]), top


class Engine:
    """Serves one model: ``submit`` from any thread, events to each request's sink.

    ``max_parallel`` sequences decode together (KV cache slots; pages are
    touched only as far as sequences grow), ``max_queue`` requests may wait
    for a slot (past it :class:`QueueFull`), ``prefill_chunk`` prompt tokens
    run per step while others decode.
    """

    def __init__(self, model: Any, name: str, max_parallel: int = 32, max_queue: Optional[int] = None,
                 prefill_chunk: int = 128, metrics: Optional[Metrics] = None):
        if not 1 <= max_parallel <= 256:
            raise ValueError(f"max_parallel must be in [1, 256], got {max_parallel}")
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be positive, got {prefill_chunk}")
        self.model = model
        self.name = name
        self.max_parallel = int(max_parallel)
        self.max_queue = int(max_queue if max_queue is not None else 4 * max_parallel)
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        self.prefill_chunk = int(prefill_chunk)
        self.metrics = metrics
        self.eos = set(model.generation_config.eos_ids())
        self._cond = threading.Condition()
        self._waiting: Deque[Request] = deque()
        self._active: List[_Seq] = []  # admitted, in admission order
        self._calls: Deque[Tuple[Callable[[], Any], "Future[Any]"]] = deque()  # work run between steps
        self._free: List[int] = list(range(1, self.max_parallel + 1))  # slot 0 is the model's own cache
        self._slot_tokens: Dict[int, List[int]] = {s: [] for s in self._free}  # what each slot's cache holds
        self._live: Any = None  # the runtime the slot records describe
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None  # what stopped the thread, if it died
        self.steps = 0
        self._recent: Deque[Tuple[float, int]] = deque()  # (time, tokens generated) of recent steps

    # ---- the caller's side (any thread)

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"pyllm-serve-{self.name}", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Finish nothing more: waiting and running requests end with EngineStopped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def submit(self, prompt: Sequence[int], params: SamplingParams, sink: Sink) -> Request:
        """Queue a request; raises ValueError for arguments the model cannot take, QueueFull, EngineStopped."""
        prompt = [int(t) for t in prompt]
        n_ctx, vocab = int(self.model.n_ctx), int(self.model.config.vocab_size)
        if not prompt:
            raise ValueError("the prompt is empty")
        if any(not 0 <= t < vocab for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        if params.max_new_tokens < 0 or (params.max_new_tokens == 0 and not params.prompt_logprobs):
            raise ValueError("max_tokens must be positive (0 only to score an echoed prompt), "
                             f"got {params.max_new_tokens}")
        if len(prompt) + params.max_new_tokens > n_ctx:
            raise ValueError(f"the prompt is {len(prompt)} tokens and {params.max_new_tokens} new tokens were asked "
                             f"for; the context holds n_ctx={n_ctx}")
        if params.n > self.max_parallel:
            raise ValueError(f"n={params.n} is more than the {self.max_parallel} sequences this server decodes at once")
        req = Request(prompt, params, sink)
        stops = _StopStrings(self.model.tokenizer if params.stop else None, params.stop)
        for r, rng in enumerate(params.rngs()):
            hist = np.empty((1, len(prompt) + params.max_new_tokens), dtype=np.int64)
            hist[0, : len(prompt)] = prompt
            req.seqs.append(_Seq(req, r, params.processors(len(prompt), vocab), rng, stops, hist, len(prompt)))
        with self._cond:
            if self._stopping or self.error is not None:
                raise EngineStopped(f"the engine of {self.name} is stopping")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting for {self.name}; try again later")
            self._waiting.append(req)
            self._cond.notify_all()
        self.start()
        return req

    def call(self, fn: Callable[[], Any]) -> "Future[Any]":
        """Run ``fn()`` on the engine thread between two steps (holding the model, so it may use the
        model's own cache, slot 0); its result or exception in the returned future. One call runs
        per step, so running streams keep flowing. Raises EngineStopped once the engine stops."""
        future: "Future[Any]" = Future()
        with self._cond:
            if self._stopping or self.error is not None:
                raise EngineStopped(f"the engine of {self.name} is stopping")
            self._calls.append((fn, future))
            self._cond.notify_all()
        self.start()
        return future

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Sequences holding a slot."""
        return self.max_parallel - len(self._free)

    def tokens_per_second(self, window: float = 10.0) -> float:
        """Generated tokens per second over the last ``window`` seconds."""
        now = time.perf_counter()
        recent = [(t, n) for t, n in list(self._recent) if now - t <= window]
        return sum(n for _, n in recent) / window

    # ---- the engine thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and not self._waiting and not self._active and not self._calls:
                        self._cond.wait()
                    if self._stopping:
                        break
                with self.model._lock:  # held while there is work: nothing else touches the slots
                    self._sync_slots()
                    while not self._stopping:
                        try:
                            self._step()
                        except Exception as e:  # the runtime refused something: fail what runs, go on
                            self._fail_active(e)
                        with self._cond:
                            if not self._waiting and not self._active and not self._calls:
                                break
        except BaseException as e:  # a bug: fail everything, refuse new work (health reports it)
            self.error = e
            raise
        finally:
            with self._cond:
                self._stopping = True
                pending = list(self._waiting)
                self._waiting.clear()
                calls = list(self._calls)
                self._calls.clear()
            for _, future in calls:
                future.set_exception(EngineStopped(f"the engine of {self.name} stopped"))
            reqs = {id(s.req): s.req for s in self._active}
            reqs.update({id(r): r for r in pending})
            for req in reqs.values():
                req.sink.put(DoneEvent(len(req.prompt), 0, 0, EngineStopped(f"the engine of {self.name} stopped")))
            self._active = []

    def _fail_active(self, error: Exception) -> None:
        reqs = {id(s.req): s.req for s in self._active}
        self._active = []
        self._free = list(range(1, self.max_parallel + 1))
        self._slot_tokens = {s: [] for s in self._free}
        for req in reqs.values():
            req.sink.put(DoneEvent(len(req.prompt), 0, 0, error))

    def _sync_slots(self) -> None:
        """Make the runtime hold the slots; forget what they cached if someone else resized them."""
        live = self.model._live()
        if live is not self._live or live.n_seq < self.max_parallel + 1:
            self._slot_tokens = {s: [] for s in self._slot_tokens}
            live.set_n_seq(max(live.n_seq, self.max_parallel + 1))
            self._live = live

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        generated = self._prefill()
        generated += self._decode()
        self._run_call()
        self.steps += 1
        if generated:
            now = time.perf_counter()
            self._recent.append((now, generated))
            while self._recent and now - self._recent[0][0] > 60:
                self._recent.popleft()

    def _run_call(self) -> None:
        with self._cond:
            if not self._calls:
                return
            fn, future = self._calls.popleft()
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except Exception as e:  # the caller's error, not the engine's
            future.set_exception(e)

    def _drop_cancelled(self) -> None:
        with self._cond:
            for req in [r for r in self._waiting if r.cancelled]:
                self._waiting.remove(req)
                self._finish_request(req)
        for seq in [s for s in self._active if s.req.cancelled]:
            self._retire(seq)

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._waiting or len(self._free) < self._waiting[0].params.n:
                    return
                req = self._waiting.popleft()
            if self.metrics is not None:
                self.metrics.request_admitted(self.name, time.perf_counter() - req.submitted)
            first = req.seqs[0]
            first.slot, common = self._best_slot(req)
            for seq in req.seqs[1:]:
                seq.slot = self._free.pop()
            first.done = common
            req.cached_tokens = common
            self._active.extend(req.seqs)

    def _best_slot(self, req: Request) -> Tuple[int, int]:
        """A free slot for the request's prompt and how many of its tokens the slot's cache keeps: the free
        slot sharing the longest prefix, or a copy of a busy slot's cache when that shares more."""
        prompt = req.prompt
        if req.params.prompt_logprobs:  # every prompt position needs its logits
            slot = self._free.pop()
            self._live.truncate(0, slot)
            self._slot_tokens[slot] = []
            return slot, 0
        own = {s: reusable_prefix(prompt, self._slot_tokens[s]) for s in self._free}
        slot = max(self._free, key=lambda s: (own[s], -s))
        keep = own[slot]
        busy = [s for s in self._slot_tokens if s not in own]
        if busy:
            src = max(busy, key=lambda s: reusable_prefix(prompt, self._slot_tokens[s]))
            shared = reusable_prefix(prompt, self._slot_tokens[src])
            if shared > keep:
                self._live.copy_seq(src, slot)
                self._slot_tokens[slot] = list(self._slot_tokens[src])
                keep = shared
        self._free.remove(slot)
        self._live.truncate(keep, slot)
        del self._slot_tokens[slot][keep:]
        return slot, keep

    def _prefill(self) -> int:
        """Runs up to the step's budget of prompt tokens; samples the first token of prompts that finish."""
        decoding = any(s.feed is not None for s in self._active)
        budget = self.prefill_chunk if decoding else max(self.prefill_chunk, 512)
        generated = 0
        for seq in [s for s in self._active if s.index == 0 and s.done < len(s.req.prompt)]:
            if budget <= 0:
                break
            req = seq.req
            chunk = req.prompt[seq.done: seq.done + budget]
            want_all = req.params.prompt_logprobs
            logits = self._live.forward(np.asarray(chunk, dtype=np.int32), want_all, seq.slot)
            self._slot_tokens[seq.slot].extend(chunk)
            if want_all:
                self._prompt_logprobs(seq, logits, seq.done)
                logits = logits[-1]
            seq.done += len(chunk)
            budget -= len(chunk)
            if seq.done < len(req.prompt):
                continue
            if want_all:
                req.sink.put(PromptLogprobsEvent(seq.prompt_lp, seq.prompt_top))
            for sib in req.seqs[1:]:
                self._live.copy_seq(seq.slot, sib.slot)
                self._slot_tokens[sib.slot] = list(self._slot_tokens[seq.slot])
                sib.done = seq.done
            for s in list(req.seqs):
                if req.params.max_new_tokens == 0:  # scoring the prompt (echo with logprobs)
                    self._retire(s)
                    continue
                self._sample(s, logits)
                generated += 1
        return generated

    def _prompt_logprobs(self, seq: _Seq, logits: np.ndarray, start: int) -> None:
        """Logprobs of prompt tokens start+1 .. start+len(logits) given what precedes them."""
        prompt, k = seq.req.prompt, seq.req.params.logprobs or 0
        if start == 0:
            seq.prompt_lp, seq.prompt_top = [None], [None]
        for t in range(logits.shape[0]):
            pos = start + t + 1
            if pos >= len(prompt):
                break
            lp, top = _logprobs(logits[t], prompt[pos], k)
            seq.prompt_lp.append(lp)
            seq.prompt_top.append(top)

    def _decode(self) -> int:
        batch = [s for s in self._active if s.feed is not None]
        if not batch:
            return 0
        live = self._live
        for b0 in range(0, len(batch), 256):
            part = batch[b0: b0 + 256]
            tokens = [int(s.feed) for s in part if s.feed is not None]
            if live.decode_batch_supported:
                logits = live.decode_batch(np.asarray(tokens, dtype=np.int32),
                                           np.asarray([s.slot for s in part], dtype=np.int64))
            else:  # weights the batched step does not take: one sequence after another
                logits = np.stack([live.forward(np.array((t,), dtype=np.int32), False, s.slot)
                                   for t, s in zip(tokens, part)])
            for j, s in enumerate(part):
                self._slot_tokens[s.slot].append(tokens[j])
                s.feed = None
                self._sample(s, logits[j])
        return len(batch)

    def _sample(self, seq: _Seq, logits: np.ndarray) -> None:
        """generate()'s per-token step: process, sample, stop on eos / a stop string / the length."""
        req = seq.req
        tok = int(seq.procs.sample(seq.hist[:, :seq.n], logits[None, :], seq.rng, do_sample=req.params.do_sample)[0])
        seq.hist[0, seq.n] = tok
        seq.n += 1
        seq.out.append(tok)
        event = TokenEvent(seq.index, tok)
        if req.params.logprobs is not None:
            event.logprob, event.top = _logprobs(logits, tok, req.params.logprobs)
        if tok in self.eos or seq.stops.hit(seq.out):
            event.finish = "stop"
        elif len(seq.out) == req.params.max_new_tokens:
            event.finish = "length"
        if req.first_token_at is None:
            req.first_token_at = time.perf_counter()
            if self.metrics is not None:
                self.metrics.first_token(self.name, req.first_token_at - req.submitted)
        req.sink.put(event)
        if event.finish is not None:
            self._retire(seq)
        else:
            seq.feed = tok

    def _retire(self, seq: _Seq) -> None:
        """Free the sequence's slot (its cache stays as a prefix for later requests)."""
        self._active.remove(seq)
        if seq.slot >= 0:
            self._free.append(seq.slot)
            seq.slot = -1
        req = seq.req
        req.finished += 1
        if req.finished == len(req.seqs):
            self._finish_request(req)

    def _finish_request(self, req: Request) -> None:
        generated = sum(len(s.out) for s in req.seqs)
        if self.metrics is not None:
            self.metrics.tokens(self.name, len(req.prompt), req.cached_tokens, generated)
            self.metrics.request_done(self.name, "cancelled" if req.cancelled else "completed")
        req.sink.put(DoneEvent(len(req.prompt), generated, req.cached_tokens))
