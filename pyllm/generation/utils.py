"""The decoding loop behind model.generate / model.stream, and text scoring
(per-token log-probabilities, perplexity with a sliding window). Policy lives
here; per-vocabulary work is in the Cython sampler. Not model code."""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ContextManager, Dict, Iterator, List, Optional, Protocol, Sequence, Union

import numpy as np

from .. import ops
from .._inputs import as_int, like_input, to_numpy, token_id_rows, token_ids
from .beam_search import ReplayCaches, SequenceCaches, beam_search
from .configuration import GenerationConfig
from .logits_process import LogitsProcessorList, ProcessorLike, build_logits_processors


@dataclass
class ScoreResult:
    token_ids: np.ndarray  # (T,) the scored sequence
    logprobs: np.ndarray  # (T-1,) log p(token t+1 | tokens <= t); NaN where no window scores it (below)
    perplexity: float  # exp(-mean of the scored logprobs)

    @property
    def scored(self) -> np.ndarray:
        """(T-1,) bool: which targets have a log-probability (all unless stride == n_ctx)."""
        done: np.ndarray = ~np.isnan(self.logprobs)
        return done

    @property
    def nll(self) -> float:
        return float(-self.logprobs[self.scored].mean())


def check_finite_logits(logits: np.ndarray, where: str) -> None:
    """Raise FloatingPointError when the model's logits (before any processor) hold NaN or
    +-inf: weights or metadata that are not finite. Sampling from them would answer wrongly
    (greedy picks token 0 from all-NaN scores) or fail with a misleading message. Two passes
    over V floats, nothing allocated."""
    hi, lo = float(np.max(logits)), float(np.min(logits))
    if np.isfinite(hi) and np.isfinite(lo):
        return
    bad = logits[~np.isfinite(logits)]
    kind = "NaN" if np.isnan(bad).any() else "infinite values"
    raise FloatingPointError(f"the model's logits at {where} hold {kind} ({bad.size} of {logits.size} entries): "
                             "its weights or metadata are not finite numbers (a corrupt or badly converted "
                             "model file)")


class _StopStrings:
    """Watches the decoded tail of the output for any stop string."""

    def __init__(self, tokenizer: Any, stops: List[str]):
        if stops and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer (pass tokenizer=...)")
        self.tokenizer = tokenizer
        self.stops = stops
        self.window = 4 * max((len(s) for s in stops), default=0) + 8

    def hit(self, out: List[int]) -> bool:
        if not self.stops:
            return False
        tail = self.tokenizer.decode(out[-self.window:])
        return any(s in tail for s in self.stops)


class _SharedIterator(Iterator[str]):
    """A generator several threads may read: ``next`` calls take turns (a bare
    generator raises "already executing" when two threads resume it at once)."""

    def __init__(self, gen: Iterator[str]):
        self._gen = gen
        self._lock = threading.Lock()

    def __iter__(self) -> "_SharedIterator":
        return self

    def __next__(self) -> str:
        with self._lock:
            return next(self._gen)

    def close(self) -> None:
        """Stop the stream (what ``generator.close()`` does)."""
        close = getattr(self._gen, "close", None)
        with self._lock:
            if close is not None:
                close()


class _ModelConfig(Protocol):
    @property
    def vocab_size(self) -> int: ...


def reusable_prefix(ids: Sequence[int], cached: Sequence[int]) -> int:
    """How many leading tokens of ``ids`` a KV cache holding ``cached`` can keep:
    the common prefix, less one when it covers all of ``ids`` (the last token
    runs again for its logits)."""
    common, limit = 0, min(len(ids), len(cached))
    while common < limit and ids[common] == cached[common]:
        common += 1
    return min(common, len(ids) - 1)


class GenerationMixin(ABC):
    """generate / stream / score over a model with a KV cache. The model provides the
    generation protocol: ``_prefill``, ``step`` and ``reset`` below, ``config``, ``n_ctx``,
    ``tokenizer``, ``_lock``, ``_cached``, and optionally the ``_batch_*`` methods for several sequences
    (:class:`pyllm.models.base.PreTrainedCausalLM` implements it on the decoder runtime)."""

    generation_config: GenerationConfig
    # what the model class provides; declarations only, so a subclass may define them as properties
    config: _ModelConfig
    n_ctx: int  # the longest sequence the KV cache holds
    tokenizer: Any  # duck-typed: pyllm's BPETokenizer or a transformers tokenizer
    _lock: ContextManager[bool]  # held while the KV cache is in use (a threading.RLock)
    _cached: List[int]  # the token ids whose keys and values are in the cache

    @abstractmethod
    def _prefill(self, ids: List[int]) -> np.ndarray:
        """Logits after ``ids`` (V,), reusing the cached prefix."""

    @abstractmethod
    def step(self, input_ids: Any, all_logits: bool = False) -> np.ndarray:
        """Append tokens to the cached sequence: logits of the last one (V,), or of all (T, V)."""

    @abstractmethod
    def reset(self) -> None:
        """Empty the KV cache."""

    def _config(self, generation_config: Optional[GenerationConfig], kwargs: Dict[str, Any]) -> GenerationConfig:
        base = generation_config or getattr(self, "generation_config", None) or GenerationConfig()
        cfg = base.update(**kwargs)
        cfg.validate()
        return cfg

    def _resolve_length(self, cfg: GenerationConfig, width: int) -> GenerationConfig:
        """``cfg`` with ``max_new_tokens`` set for prompts ``width`` tokens wide (see
        GenerationConfig.new_tokens); the default 20 is clamped to what fits the context."""
        if width >= self.n_ctx:
            raise ValueError(f"the prompt is {width} tokens long and the context holds n_ctx={self.n_ctx}: no room "
                             "for new tokens; shorten the prompt or load the model with a larger n_ctx")
        n = cfg.new_tokens(width)
        if cfg.max_new_tokens is None and cfg.max_length is None:
            n = min(n, self.n_ctx - width)
        return dataclasses.replace(cfg, max_new_tokens=n, max_length=None)

    def _check_length(self, prompt: List[int], cfg: GenerationConfig) -> None:
        n_new = int(cfg.max_new_tokens or 0)
        if len(prompt) >= self.n_ctx:
            raise ValueError(f"the prompt is {len(prompt)} tokens long and the context holds n_ctx={self.n_ctx}: "
                             "no room for new tokens; shorten the prompt or load the model with a larger n_ctx")
        if len(prompt) + n_new > self.n_ctx:
            raise ValueError(
                f"prompt of {len(prompt)} tokens + max_new_tokens={n_new} exceeds the context "
                f"n_ctx={self.n_ctx}; shorten the prompt, lower max_new_tokens (at most {self.n_ctx - len(prompt)} "
                "fit) or load with a larger n_ctx"
            )

    def _tokens(self, prompt: List[int], cfg: GenerationConfig, procs: LogitsProcessorList,
                rng: np.random.Generator, stops: _StopStrings, shared: bool = False) -> Iterator[int]:
        """Yields the new tokens of one sequence. The caller holds the lock; or,
        ``shared``, nobody does between tokens (a stream): each step then takes the
        lock itself and, when another user of the model changed the KV cache
        meanwhile, runs this sequence again from what the cache still shares with it."""
        self._check_length(prompt, cfg)
        eos = set(cfg.eos_ids())
        n_new = int(cfg.max_new_tokens or 0)
        ids = np.empty((1, len(prompt) + n_new), dtype=np.int64)  # (1, T) history buffer
        ids[0, : len(prompt)] = prompt
        n = len(prompt)
        with self._lock:
            logits = self._prefill(prompt)
        out: List[int] = []
        for i in range(n_new):
            check_finite_logits(logits, f"generation step {i} (after {len(prompt) + i} tokens)")
            tok = int(procs.sample(ids[:, :n], logits[None, :], rng, do_sample=not cfg.greedy)[0])
            ids[0, n] = tok
            n += 1
            out.append(tok)
            yield tok
            if tok in eos or stops.hit(out) or i == n_new - 1:
                return
            if not shared:
                logits = self._step_token(tok)
                continue
            with self._lock:
                cached = self._cached
                if len(cached) == n - 1 and cached[len(prompt):] == out[:-1] and cached[: len(prompt)] == prompt:
                    logits = self._step_token(tok)
                else:  # another stream, generate() or step() used the cache since this sequence's last token
                    logits = self._prefill(prompt + out)

    def _step_token(self, token: int) -> np.ndarray:
        """Logits after appending one sampled token (models may take a shorter path)."""
        return self.step([token])

    # ---- several sequences decoded together (models that can: _batch_size() > 1)

    def _batch_size(self) -> int:
        """How many sequences one batched decode step may hold (1: no batched path)."""
        return 1

    def _batch_begin(self, n: int) -> None:
        raise NotImplementedError

    def _batch_prefill(self, ids: List[int], seq: int) -> np.ndarray:
        raise NotImplementedError

    def _batch_step(self, tokens: List[int], seqs: List[int]) -> np.ndarray:
        raise NotImplementedError

    def _batch_end(self) -> None:
        raise NotImplementedError

    def _batch_copy(self, src: int, dst: int) -> None:
        """Make sequence ``dst``'s cache a copy of sequence ``src``'s (beam search)."""
        raise NotImplementedError

    def _max_sequences(self) -> int:
        """How many KV caches the model can hold at once (1: one cache, no _batch_* methods)."""
        return 1

    def _beams(self, prompt: List[int], cfg: GenerationConfig, procs: LogitsProcessorList,
               stops: _StopStrings) -> List[List[int]]:
        """The new tokens of the best ``num_return_sequences`` beams for one prompt."""
        self._check_length(prompt, cfg)
        K = cfg.num_beams
        caches: Union[SequenceCaches, ReplayCaches]
        caches = SequenceCaches(self, K) if self._max_sequences() > K else ReplayCaches(self, K)
        try:
            hyps = beam_search(prompt, cfg, procs, caches, stops.hit if stops.stops else None)
        finally:
            caches.end()
        return [tokens for _, tokens in hyps[: cfg.num_return_sequences]]

    def _tokens_batch(self, prompts: List[List[int]], cfg: GenerationConfig, procs: List[LogitsProcessorList],
                      rngs: List[np.random.Generator], stops: _StopStrings) -> List[List[int]]:
        """The new tokens of several sequences, decoded in steps that run every
        unfinished one at once; each sequence samples as it would alone."""
        for p in prompts:
            self._check_length(p, cfg)
        eos = set(cfg.eos_ids())
        n_new = int(cfg.max_new_tokens or 0)
        hist = [np.empty((1, len(p) + n_new), dtype=np.int64) for p in prompts]  # (1, T) each
        n = [len(p) for p in prompts]
        outs: List[List[int]] = [[] for _ in prompts]
        self._batch_begin(len(prompts))
        try:
            logits: List[np.ndarray] = []
            for s, p in enumerate(prompts):
                hist[s][0, :n[s]] = p
                logits.append(self._batch_prefill(p, s))
            active = list(range(len(prompts)))
            for i in range(n_new):
                feed: List[int] = []
                for s in active:
                    check_finite_logits(logits[s], f"generation step {i} of sequence {s}")
                    tok = int(procs[s].sample(hist[s][:, :n[s]], logits[s][None, :], rngs[s],
                                              do_sample=not cfg.greedy)[0])
                    hist[s][0, n[s]] = tok
                    n[s] += 1
                    outs[s].append(tok)
                    if not (tok in eos or stops.hit(outs[s]) or i == n_new - 1):
                        feed.append(s)
                active = feed
                if not active:
                    break
                step = self._batch_step([outs[s][-1] for s in active], active)  # (B, V)
                for j, s in enumerate(active):
                    logits[s] = step[j]
        finally:
            self._batch_end()
        return outs

    def _processors(self, cfg: GenerationConfig, prompt_len: int,
                    logits_processor: Optional[Sequence[ProcessorLike]]) -> LogitsProcessorList:
        return build_logits_processors(
            do_sample=not cfg.greedy, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
            min_p=cfg.min_p, typical_p=cfg.typical_p, repetition_penalty=cfg.repetition_penalty,
            frequency_penalty=cfg.frequency_penalty, presence_penalty=cfg.presence_penalty,
            no_repeat_ngram_size=cfg.no_repeat_ngram_size, min_new_tokens=cfg.min_new_tokens,
            eos_token_id=cfg.eos_ids() or None, prompt_length=prompt_len,
            logits_processor=logits_processor or (),
        )

    def generate(self, input_ids: Any = None, attention_mask: Any = None,
                 generation_config: Optional[GenerationConfig] = None,
                 logits_processor: Optional[Sequence[ProcessorLike]] = None, streamer: Any = None,
                 tokenizer: Any = None, **kwargs: Any) -> Any:
        """Generate continuations, as transformers' ``generate``.

        ``input_ids``: a list of ids, a list of prompts of any lengths, or a
        (B, T) array or torch tensor, with ``attention_mask`` marking padding
        (on either side: each row's unmasked tokens are its prompt), so
        ``model.generate(**tokenizer(texts, padding=True))`` works. Returns an
        int64 array (a torch tensor for torch input) of shape
        (B * num_return_sequences, width + new): each row is its prompt
        left-padded to the input's width, then the new tokens, right-padded
        with ``pad_token_id`` after an early stop. Any
        :class:`GenerationConfig` field may be passed as a keyword:
        ``max_new_tokens``, or ``max_length`` counting the prompt (when both
        are given ``max_new_tokens`` wins, with a warning, as in transformers);
        ``num_beams > 1`` runs beam search (``length_penalty``,
        ``early_stopping``, ``num_return_sequences <= num_beams``). Sampling
        with a ``seed`` is reproducible: with several sequences (prompts x
        ``num_return_sequences``), sequence r draws from its own generator,
        ``np.random.default_rng([seed, r])``. Each sequence (and each beam)
        has its own KV cache; models that can (matrices the runtime
        packs: widths multiples of 16 and 32) decode up to 32 of them together, one step running every
        unfinished one (the same tokens as one at a time, faster), others one
        after another. The model's lock is held throughout, so threads sharing
        a model take turns.

        >>> model.generate(tok.encode("Once upon a time"), max_new_tokens=8)   # doctest: +SKIP
        >>> inputs = tok(["Hi", "Hello there"], padding=True, return_tensors="np")   # doctest: +SKIP
        >>> model.generate(**inputs, num_beams=4, max_new_tokens=8)                # doctest: +SKIP
        """
        if input_ids is None:
            raise TypeError("generate() needs input_ids (token ids: a list, numpy array or torch tensor)")
        cfg = self._config(generation_config, kwargs)
        rows, width = token_id_rows(input_ids, self.config.vocab_size, attention_mask)
        cfg = self._resolve_length(cfg, width)
        tokenizer = tokenizer if tokenizer is not None else (self.tokenizer if cfg.stop_list() else None)
        if streamer is not None and (len(rows) > 1 or cfg.num_return_sequences > 1):
            raise ValueError("a streamer follows one sequence: pass one prompt and num_return_sequences=1")
        if streamer is not None and cfg.num_beams > 1:
            raise ValueError("a streamer cannot follow beam search (num_beams > 1): the best beam is known at the end")
        stops = _StopStrings(tokenizer, cfg.stop_list())
        prompts = [prompt for prompt in rows for _ in range(cfg.num_return_sequences)]
        outs: List[List[int]] = []
        if cfg.num_beams > 1:
            with self._lock:
                for prompt in rows:
                    outs += self._beams(prompt, cfg, self._processors(cfg, len(prompt), logits_processor), stops)
            return like_input(input_ids, self._assemble(prompts, outs, width, cfg))
        # one generator per sequence: a sequence samples the same tokens whether
        # it runs alone, after others or batched with them
        if len(prompts) == 1:
            rngs = [np.random.default_rng(cfg.seed)]
        else:
            rngs = [np.random.default_rng(None if cfg.seed is None else [cfg.seed, r]) for r in range(len(prompts))]
        procs = [self._processors(cfg, len(p), logits_processor) for p in prompts]
        with self._lock:
            batch = self._batch_size() if streamer is None else 1
            if batch > 1 and len(prompts) > 1:
                for b0 in range(0, len(prompts), batch):
                    b1 = min(b0 + batch, len(prompts))
                    outs += self._tokens_batch(prompts[b0:b1], cfg, procs[b0:b1], rngs[b0:b1], stops)
            else:
                for prompt, proc, rng in zip(prompts, procs, rngs):
                    if streamer is not None:
                        streamer.put(np.asarray(prompt))
                    new: List[int] = []
                    for tok in self._tokens(prompt, cfg, proc, rng, stops):
                        new.append(tok)
                        if streamer is not None:
                            streamer.put(np.asarray([tok]))
                    if streamer is not None:
                        streamer.end()
                    outs.append(new)
        return like_input(input_ids, self._assemble(prompts, outs, width, cfg))

    @staticmethod
    def _assemble(prompts: List[List[int]], outs: List[List[int]], width: int, cfg: GenerationConfig) -> np.ndarray:
        """(rows, width + longest output) int64: prompts left-padded to ``width``, outputs right-padded."""
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else (cfg.eos_ids() or [0])[0]
        width_n = max(len(o) for o in outs)
        result = np.full((len(outs), width + width_n), pad, dtype=np.int64)
        for r, (p, o) in enumerate(zip(prompts, outs)):
            result[r, width - len(p): width] = p
            result[r, width: width + len(o)] = o
        return result

    def stream(self, prompt: Union[str, List[Dict[str, str]], Sequence[int]], tokenizer: Any = None,
               generation_config: Optional[GenerationConfig] = None,
               logits_processor: Optional[Sequence[ProcessorLike]] = None, **kwargs: Any) -> Iterator[str]:
        """Yield the generated text piece by piece (whole characters and words).

        ``prompt``: a string, chat messages (the chat template is applied with
        a generation prompt) or a sequence of token ids. Arguments are
        checked when ``stream`` is called, before the first piece. The model
        is locked while a piece is computed, not between pieces: streams may
        be read interleaved (each keeps its own sequence; one whose cache
        another used runs its tokens again), an iterator may be read from
        several threads (they take turns) and one dropped unfinished holds
        nothing.

        >>> for piece in model.stream("The capital of France is", max_new_tokens=10):  # doctest: +SKIP
        ...     print(piece, end="")
        """
        tok = tokenizer if tokenizer is not None else self.tokenizer
        ids = self.encode_prompt(prompt, tok)
        cfg = self._config(generation_config, kwargs)
        if cfg.num_return_sequences != 1:
            raise ValueError("stream() produces one sequence: num_return_sequences must be 1")
        if cfg.num_beams != 1:
            raise ValueError("stream() cannot follow beam search: num_beams must be 1 (use generate)")
        cfg = self._resolve_length(cfg, len(ids))
        self._check_length(ids, cfg)
        return _SharedIterator(self._stream(ids, tok, cfg, logits_processor))

    def _stream(self, ids: List[int], tok: Any, cfg: GenerationConfig,
                logits_processor: Optional[Sequence[ProcessorLike]]) -> Iterator[str]:
        from .streamers import TextDecodeBuffer

        buf = TextDecodeBuffer(tok, skip_special_tokens=True)
        procs = self._processors(cfg, len(ids), logits_processor)
        stops = _StopStrings(tok, cfg.stop_list())
        for t in self._tokens(ids, cfg, procs, np.random.default_rng(cfg.seed), stops, shared=True):
            piece = buf.push([t])
            if piece:
                yield piece
        rest = buf.flush()
        if rest:
            yield rest

    def encode_prompt(self, prompt: Any, tokenizer: Any = None) -> List[int]:
        """Token ids for a string (the tokenizer's special tokens added), chat
        messages (chat template with a generation prompt) or a sequence of
        token ids (checked, as given)."""
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            tok = tokenizer if tokenizer is not None else self.tokenizer
            ids = list(tok.encode(prompt))
        elif isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[0], dict):
            tok = tokenizer if tokenizer is not None else self.tokenizer
            ids = list(tok.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True))
        elif isinstance(to_numpy(prompt), (list, tuple, np.ndarray)):
            ids = token_ids(prompt, "prompt", self.config.vocab_size)
        else:
            raise TypeError(f"prompt must be a string, chat messages (a list of dicts) or a sequence of token ids, "
                            f"got {type(prompt).__name__}")
        if not ids:
            raise ValueError("the prompt is empty")
        return ids

    def score(self, text: Union[str, Sequence[int]], tokenizer: Any = None, stride: Optional[int] = None,
              add_special_tokens: bool = False) -> ScoreResult:
        """Log-probability of every token of ``text`` given the ones before it,
        and the perplexity. Text longer than the context is scored with
        transformers' sliding window ("Perplexity of fixed-length models"):
        windows of ``n_ctx`` tokens starting every ``stride`` tokens (default
        n_ctx // 2), each scoring the tokens no earlier window reached, with
        the rest of the window as their context. With ``stride == n_ctx`` the
        windows are disjoint and, as there, the first token of each window
        after the first has no context and is not scored: its entry in
        ``logprobs`` is NaN and the perplexity averages the others.
        (transformers' example weights each later window's mean loss by
        ``trg_len - 1`` targets where the window has ``trg_len`` when
        ``stride < n_ctx``; here every scored token counts once.)

        >>> model.score("The quick brown fox").perplexity   # doctest: +SKIP
        """
        if isinstance(text, str):
            tok = tokenizer if tokenizer is not None else self.tokenizer
            ids = list(tok.encode(text, add_special_tokens=add_special_tokens))
        else:
            ids = token_ids(text, "text", self.config.vocab_size)
        if len(ids) < 2:
            raise ValueError("scoring needs at least two tokens")
        n_ctx = self.n_ctx
        stride = max(1, n_ctx // 2) if stride is None else as_int(stride, "stride")
        if not 0 < stride <= n_ctx:
            raise ValueError(f"stride must be in [1, n_ctx={n_ctx}], got {stride}")
        arr = np.asarray(ids, dtype=np.int64)
        logprobs = np.full(len(ids) - 1, np.nan, dtype=np.float64)  # [t]: log p(ids[t+1] | window before it)
        prev_end = 0  # tokens before it were scored by earlier windows
        with self._lock:
            for begin in range(0, len(ids), stride):
                end = min(begin + n_ctx, len(ids))
                first = max(prev_end, begin + 1)  # this window scores targets first .. end-1
                self.reset()
                for c0 in range(begin, end - 1, 256):  # chunks bound the (chunk, V) logits
                    c1 = min(c0 + 256, end - 1)  # position end-1 predicts nothing in this window
                    logits = self.step(ids[c0:c1], all_logits=True)  # (c1-c0, V)
                    check_finite_logits(logits, f"positions {c0} to {c1 - 1} of the scored text")
                    lp = ops.log_softmax(logits)
                    t = np.arange(max(c0, first - 1), c1)  # positions whose next token is a target
                    logprobs[t] = lp[t - c0, arr[t + 1]]
                prev_end = end
                if end == len(ids):
                    break
        done = ~np.isnan(logprobs)
        return ScoreResult(token_ids=arr, logprobs=logprobs,
                           perplexity=float(np.exp(-logprobs[done].mean())))
