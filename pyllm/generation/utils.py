"""The decoding loop behind model.generate / model.stream, and text scoring
(per-token log-probabilities, perplexity with a sliding window). Policy lives
here; per-vocabulary work is in the Cython sampler. Not model code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Dict, Iterator, List, Optional, Protocol, Sequence, Union

import numpy as np

from .. import ops
from .configuration import GenerationConfig
from .logits_process import LogitsProcessorList, ProcessorLike, build_logits_processors


@dataclass
class ScoreResult:
    token_ids: np.ndarray  # (T,) the scored sequence
    logprobs: np.ndarray  # (T-1,) log p(token t+1 | tokens <= t)
    perplexity: float  # exp(-mean(logprobs))

    @property
    def nll(self) -> float:
        return float(-self.logprobs.mean())


def _rows(input_ids: Any, attention_mask: Any, vocab_size: int) -> List[List[int]]:
    """Prompts as lists of ids: a list of ints, a list of lists (any lengths),
    or a 1-D / 2-D array with an optional attention mask (0 = padding)."""
    if isinstance(input_ids, (list, tuple)) and input_ids and isinstance(input_ids[0], (list, tuple, np.ndarray)):
        rows = [list(np.asarray(r).reshape(-1)) for r in input_ids]
        if attention_mask is not None:
            raise ValueError("attention_mask goes with a 2-D array of ids, not a list of lists")
    else:
        arr = np.asarray(input_ids)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"input_ids must be 1-D or 2-D, got shape {arr.shape}")
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            if mask.shape != arr.shape:
                raise ValueError(f"attention_mask has shape {mask.shape}, input_ids {arr.shape}")
            rows = [list(arr[b][mask[b] != 0]) for b in range(arr.shape[0])]
        else:
            rows = [list(r) for r in arr]
    for b, r in enumerate(rows):
        if not r:
            raise ValueError(f"prompt {b} is empty: generation needs at least one token")
        for t, tok in enumerate(r):
            if isinstance(tok, (float, np.floating)) or not (0 <= int(tok) < vocab_size):
                raise ValueError(f"token id {tok!r} at position {t} of prompt {b} is not in [0, {vocab_size})")
    return [[int(t) for t in r] for r in rows]


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


class GenerationMixin:
    """generate / stream / score over a model with `_prefill`, `step`,
    `config`, `n_ctx`, `tokenizer`, `_lock` (see LlamaForCausalLM)."""

    generation_config: GenerationConfig
    # what the model class provides; declarations only, so a subclass may define them as properties
    config: _ModelConfig
    n_ctx: int  # the longest sequence the KV cache holds
    tokenizer: Any  # duck-typed: pyllm's BPETokenizer or a transformers tokenizer
    _lock: ContextManager[bool]  # held while the KV cache is in use (a threading.RLock)

    if TYPE_CHECKING:
        def _prefill(self, ids: List[int]) -> np.ndarray:
            """Logits after ``ids`` (V,), reusing the cached prefix."""

        def step(self, input_ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
            """Append tokens to the cached sequence: logits of the last one (V,), or of all (T, V)."""

        def reset(self) -> None:
            """Empty the KV cache."""

    def _config(self, generation_config: Optional[GenerationConfig], kwargs: Dict[str, Any]) -> GenerationConfig:
        base = generation_config or getattr(self, "generation_config", None) or GenerationConfig()
        cfg = base.update(**kwargs)
        cfg.validate()
        return cfg

    def _check_length(self, prompt: List[int], cfg: GenerationConfig) -> None:
        if len(prompt) + cfg.max_new_tokens > self.n_ctx:
            raise ValueError(
                f"prompt of {len(prompt)} tokens + max_new_tokens={cfg.max_new_tokens} exceeds the context "
                f"n_ctx={self.n_ctx}; shorten the prompt, lower max_new_tokens or load with a larger n_ctx"
            )

    def _tokens(self, prompt: List[int], cfg: GenerationConfig, procs: LogitsProcessorList,
                rng: np.random.Generator, stops: _StopStrings) -> Iterator[int]:
        """Yields the new tokens of one sequence; the caller holds the lock."""
        self._check_length(prompt, cfg)
        eos = set(cfg.eos_ids())
        ids = np.empty((1, len(prompt) + cfg.max_new_tokens), dtype=np.int64)  # (1, T) history buffer
        ids[0, : len(prompt)] = prompt
        n = len(prompt)
        logits = self._prefill(prompt)
        out: List[int] = []
        for i in range(cfg.max_new_tokens):
            tok = int(procs.sample(ids[:, :n], logits[None, :], rng, do_sample=not cfg.greedy)[0])
            ids[0, n] = tok
            n += 1
            out.append(tok)
            yield tok
            if tok in eos or stops.hit(out) or i == cfg.max_new_tokens - 1:
                return
            logits = self._step_token(tok)

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

    def _tokens_batch(self, prompts: List[List[int]], cfg: GenerationConfig, procs: List[LogitsProcessorList],
                      rngs: List[np.random.Generator], stops: _StopStrings) -> List[List[int]]:
        """The new tokens of several sequences, decoded in steps that run every
        unfinished one at once; each sequence samples as it would alone."""
        for p in prompts:
            self._check_length(p, cfg)
        eos = set(cfg.eos_ids())
        hist = [np.empty((1, len(p) + cfg.max_new_tokens), dtype=np.int64) for p in prompts]  # (1, T) each
        n = [len(p) for p in prompts]
        outs: List[List[int]] = [[] for _ in prompts]
        self._batch_begin(len(prompts))
        try:
            logits: List[np.ndarray] = []
            for s, p in enumerate(prompts):
                hist[s][0, :n[s]] = p
                logits.append(self._batch_prefill(p, s))
            active = list(range(len(prompts)))
            for i in range(cfg.max_new_tokens):
                feed: List[int] = []
                for s in active:
                    tok = int(procs[s].sample(hist[s][:, :n[s]], logits[s][None, :], rngs[s],
                                              do_sample=not cfg.greedy)[0])
                    hist[s][0, n[s]] = tok
                    n[s] += 1
                    outs[s].append(tok)
                    if not (tok in eos or stops.hit(outs[s]) or i == cfg.max_new_tokens - 1):
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

    def generate(self, input_ids: Any, attention_mask: Any = None, generation_config: Optional[GenerationConfig] = None,
                 logits_processor: Optional[Sequence[ProcessorLike]] = None, streamer: Any = None,
                 tokenizer: Any = None, **kwargs: Any) -> np.ndarray:
        """Generate continuations, as transformers' ``generate``.

        ``input_ids``: a list of ids, a list of prompts of any lengths, or a
        (B, T) array (with ``attention_mask`` marking left padding). Returns
        an int64 array (B * num_return_sequences, prompt + new): each row is
        its prompt left-padded to the longest one, then the new tokens,
        right-padded with ``pad_token_id`` after an early stop. Any
        :class:`GenerationConfig` field may be passed as a keyword. Sampling
        with a ``seed`` is reproducible: with several sequences (prompts x
        ``num_return_sequences``), sequence r draws from its own generator,
        ``np.random.default_rng([seed, r])``. Each sequence has its own KV
        cache; models that can (llama over block-quantized weights) decode
        up to 32 of them together, one step running every unfinished one
        (the same tokens as one at a time, faster), others one after
        another. The model's lock is held throughout, so threads sharing a
        model take turns.

        >>> model.generate(tok.encode("Once upon a time"), max_new_tokens=8)   # doctest: +SKIP
        """
        cfg = self._config(generation_config, kwargs)
        rows = _rows(input_ids, attention_mask, self.config.vocab_size)
        tokenizer = tokenizer if tokenizer is not None else (self.tokenizer if cfg.stop_list() else None)
        if streamer is not None and (len(rows) > 1 or cfg.num_return_sequences > 1):
            raise ValueError("a streamer follows one sequence: pass one prompt and num_return_sequences=1")
        stops = _StopStrings(tokenizer, cfg.stop_list())
        prompts = [prompt for prompt in rows for _ in range(cfg.num_return_sequences)]
        # one generator per sequence: a sequence samples the same tokens whether
        # it runs alone, after others or batched with them
        if len(prompts) == 1:
            rngs = [np.random.default_rng(cfg.seed)]
        else:
            rngs = [np.random.default_rng(None if cfg.seed is None else [cfg.seed, r]) for r in range(len(prompts))]
        procs = [self._processors(cfg, len(p), logits_processor) for p in prompts]
        outs: List[List[int]] = []
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
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else (cfg.eos_ids() or [0])[0]
        width_p = max(len(p) for p in prompts)
        width_n = max(len(o) for o in outs)
        result = np.full((len(outs), width_p + width_n), pad, dtype=np.int64)
        for r, (p, o) in enumerate(zip(prompts, outs)):
            result[r, width_p - len(p): width_p] = p
            result[r, width_p: width_p + len(o)] = o
        return result

    def stream(self, prompt: Union[str, List[Dict[str, str]], Sequence[int]], tokenizer: Any = None,
               generation_config: Optional[GenerationConfig] = None,
               logits_processor: Optional[Sequence[ProcessorLike]] = None, **kwargs: Any) -> Iterator[str]:
        """Yield the generated text piece by piece (whole characters and words).

        ``prompt``: a string, chat messages (the chat template is applied with
        a generation prompt) or token ids. The model stays locked until the
        iterator is exhausted or closed.

        >>> for piece in model.stream("The capital of France is", max_new_tokens=10):  # doctest: +SKIP
        ...     print(piece, end="")
        """
        from .streamers import TextDecodeBuffer

        tok = tokenizer if tokenizer is not None else self.tokenizer
        ids = self.encode_prompt(prompt, tok)
        cfg = self._config(generation_config, kwargs)
        if cfg.num_return_sequences != 1:
            raise ValueError("stream() produces one sequence: num_return_sequences must be 1")
        rows = _rows(ids, None, self.config.vocab_size)
        buf = TextDecodeBuffer(tok, skip_special_tokens=True)
        with self._lock:
            procs = self._processors(cfg, len(rows[0]), logits_processor)
            stops = _StopStrings(tok, cfg.stop_list())
            for t in self._tokens(rows[0], cfg, procs, np.random.default_rng(cfg.seed), stops):
                piece = buf.push([t])
                if piece:
                    yield piece
            rest = buf.flush()
            if rest:
                yield rest

    def encode_prompt(self, prompt: Any, tokenizer: Any = None) -> List[int]:
        """Token ids for a string (the tokenizer's special tokens added), chat
        messages (chat template with a generation prompt) or ids (as given)."""
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            ids = tok.encode(prompt)
        elif isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[0], dict):
            ids = tok.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
        else:
            ids = [int(t) for t in np.asarray(prompt).reshape(-1)]
        if not ids:
            raise ValueError("the prompt is empty")
        return list(ids)

    def score(self, text: Union[str, Sequence[int]], tokenizer: Any = None, stride: Optional[int] = None,
              add_special_tokens: bool = False) -> ScoreResult:
        """Log-probability of every token of ``text`` given the ones before it,
        and the perplexity. Text longer than the context is scored with a
        sliding window: windows of ``n_ctx`` tokens advancing by ``stride``
        (default n_ctx // 2), each token scored once with as much context as
        the window gives it.

        >>> model.score("The quick brown fox").perplexity   # doctest: +SKIP
        """
        if isinstance(text, str):
            tok = tokenizer if tokenizer is not None else self.tokenizer
            ids = tok.encode(text, add_special_tokens=add_special_tokens)
        else:
            ids = [int(t) for t in np.asarray(text).reshape(-1)]
        if len(ids) < 2:
            raise ValueError("scoring needs at least two tokens")
        _rows([ids], None, self.config.vocab_size)
        n_ctx = self.n_ctx
        stride = stride or max(1, n_ctx // 2)
        if not 0 < stride <= n_ctx:
            raise ValueError(f"stride must be in [1, n_ctx={n_ctx}], got {stride}")
        logprobs = np.empty(len(ids) - 1, dtype=np.float64)
        scored = 0  # targets 1..scored are done
        begin = 0
        with self._lock:
            while scored < len(ids) - 1:
                end = min(begin + n_ctx, len(ids))
                self.reset()
                for c0 in range(begin, end, 256):  # chunks bound the (chunk, V) logits
                    c1 = min(c0 + 256, end)
                    logits = self.step(ids[c0:c1], all_logits=True)  # (c1-c0, V)
                    lp = ops.log_softmax(logits)
                    for t in range(c0, c1):
                        target = t + 1
                        if scored < target < end and target == scored + 1:
                            logprobs[scored] = lp[t - c0, ids[target]]
                            scored += 1
                if end == len(ids):
                    break
                begin += stride
        return ScoreResult(token_ids=np.asarray(ids), logprobs=logprobs,
                           perplexity=float(np.exp(-logprobs.mean())))
