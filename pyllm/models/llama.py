"""The llama architecture (llama 2/3, SmolLM2, ...) from GGUF files: its
config with Hugging Face field names and the causal-LM model object whose
forward pass runs in C++ (one call per step, GIL released).
Not generation (pyllm.generation) and not tokenization."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from .. import _C
from .._inputs import id_batch, to_numpy
from ..generation.configuration import GenerationConfig
from ..generation.utils import GenerationMixin, reusable_prefix
from .base import CausalLMOutput, lm_output
from .gguf import GGUFFile

__all__ = ["CausalLMOutput", "LlamaConfig", "LlamaForCausalLM"]


@dataclass
class LlamaConfig:
    vocab_size: int = 32000  # V
    hidden_size: int = 4096  # C
    intermediate_size: int = 11008  # FF, the SwiGLU width
    num_hidden_layers: int = 32  # L
    num_attention_heads: int = 32  # NH
    num_key_value_heads: int = 32  # NKV (< NH: grouped-query attention)
    head_dim: int = 128  # HS = hidden_size / num_attention_heads
    max_position_embeddings: int = 2048  # the context the model was trained for
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False  # output head shares the token embedding
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    model_type: str = "llama"

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> "LlamaConfig":
        md = f.metadata
        arch = md.get("general.architecture")
        if arch != "llama":
            raise ValueError(f"not a llama model: general.architecture is {arch!r}")

        def need(key: str) -> Any:
            if f"llama.{key}" not in md:
                raise ValueError(f"GGUF metadata lacks llama.{key}")
            return md[f"llama.{key}"]

        C = int(need("embedding_length"))
        NH = int(need("attention.head_count"))
        NKV = int(md.get("llama.attention.head_count_kv", NH))
        if NH <= 0 or C % NH:
            raise ValueError(f"embedding length {C} is not a multiple of {NH} heads")
        HS = C // NH
        rot = int(md.get("llama.rope.dimension_count", HS))
        if rot != HS:
            raise ValueError(f"partial rotary embeddings (rope.dimension_count={rot}, head size {HS}) "
                             "are not supported")
        scaling = md.get("llama.rope.scaling.type", "none")
        if scaling not in ("none", None):
            raise ValueError(f"RoPE scaling {scaling!r} is not supported")
        emb = f.tensors.get("token_embd.weight")
        if emb is None:
            raise ValueError("the GGUF file has no tensor 'token_embd.weight'")
        return cls(
            vocab_size=int(md.get("llama.vocab_size", emb.shape[0])),
            hidden_size=C,
            intermediate_size=int(need("feed_forward_length")),
            num_hidden_layers=int(need("block_count")),
            num_attention_heads=NH,
            num_key_value_heads=NKV,
            head_dim=HS,
            max_position_embeddings=int(need("context_length")),
            rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
            rope_theta=float(md.get("llama.rope.freq_base", 10000.0)),
            tie_word_embeddings="output.weight" not in f.tensors,
            bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
            eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
            pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
        )

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def as_batch(input_ids: Any, vocab_size: int) -> np.ndarray:
    """list / 1-D / 2-D integer ids (numpy or torch) -> (B, T) int32, with type and range checks."""
    return id_batch(input_ids, "input_ids", vocab_size).astype(np.int32)


def no_extra_args(kwargs: Dict[str, Any]) -> None:
    """transformers' forward takes cache and output switches pyllm has no use for: accept the
    harmless ones, refuse the rest by name."""
    harmless = {"use_cache", "return_dict"}
    unknown = sorted(k for k in kwargs if k not in harmless)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(unknown)}")


class LlamaForCausalLM(GenerationMixin):
    """A llama model over a memory-mapped GGUF file (weights used in place,
    quantized blocks stay quantized).

    Thread safety: a model object serializes its calls with a lock, so
    several Python threads may share it (they take turns); for parallel
    work, load one model per thread (the file mapping is shared by the OS).

    The KV cache remembers the tokens it holds: a generate/stream/step whose
    prompt shares a prefix with them only runs the new tokens (multi-turn
    chat does not re-read its history).
    """

    config: LlamaConfig

    def __init__(self, file: GGUFFile, config: LlamaConfig, n_ctx: Optional[int] = None):
        self.file = file
        self.config = config
        if n_ctx is None:
            n_ctx = min(config.max_position_embeddings, 4096)
        if n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self.n_ctx = int(n_ctx)
        self._lock = threading.RLock()
        self._model: Optional[_C.LlamaModel] = _C.LlamaModel(file._file, {**config.to_dict(), "n_ctx": self.n_ctx})
        self._cached: List[int] = []  # the token ids whose keys/values are in the cache
        self._tokenizer: Any = None
        self.generation_config = GenerationConfig.from_model_config(config)

    @classmethod
    def from_pretrained(cls, name_or_path: Any, n_threads: Optional[int] = None,
                        n_ctx: Optional[int] = None, **kwargs: Any) -> "LlamaForCausalLM":
        """As :meth:`AutoModelForCausalLM.from_pretrained` (``torch_dtype``, ``dtype`` and
        ``device_map`` accepted likewise), for llama files only."""
        from .auto import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name_or_path, n_threads=n_threads, n_ctx=n_ctx, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{name_or_path} is not a llama model")
        return model

    def __call__(self, input_ids: Any, attention_mask: Optional[Any] = None, labels: Optional[Any] = None,
                 **kwargs: Any) -> CausalLMOutput:
        """Logits for every position, as HF's ``model(input_ids).logits``:
        (B, T, V) float32 (a torch tensor for torch input). Each row is run
        from an empty cache; with an ``attention_mask`` (1 = token, 0 =
        padding, padding on one side) only the real tokens run and padded
        positions get zero logits. With ``labels`` (same shape; -100 is
        ignored) ``.loss`` is transformers' mean next-token cross-entropy
        (logits at t against labels at t + 1).

        >>> out = model(ids, labels=ids); out.loss, out.logits.shape   # doctest: +SKIP
        """
        no_extra_args(kwargs)
        ids = as_batch(input_ids, self.config.vocab_size)
        B, T = ids.shape
        if attention_mask is not None:
            mask = np.asarray(to_numpy(attention_mask))
            if mask.ndim == 1 and B == 1:
                mask = mask[None, :]
            if mask.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {mask.shape}, input_ids {ids.shape}")
        if T > self.n_ctx:
            raise ValueError(f"input of {T} tokens is longer than the context n_ctx={self.n_ctx}")
        out = np.zeros((B, T, self.config.vocab_size), dtype=np.float32)
        with self._lock:
            for b in range(B):
                cols = np.arange(T) if attention_mask is None else np.flatnonzero(mask[b])
                if cols.size == 0:
                    continue
                if cols[-1] - cols[0] + 1 != cols.size:
                    raise ValueError(f"attention_mask row {b} has gaps; padding must be on one side")
                self._live().truncate(0)
                self._cached = []
                out[b, cols] = self._live().forward(np.ascontiguousarray(ids[b, cols]), True)
                self._cached = ids[b, cols].tolist()
        return lm_output(input_ids, out, labels, self.config.vocab_size)

    forward = __call__

    # ---- the incremental interface generation builds on

    @property
    def n_past(self) -> int:
        """Positions currently in the KV cache."""
        return int(self._live().n_past)

    def reset(self) -> None:
        """Empty the KV cache."""
        with self._lock:
            self._live().truncate(0)
            self._cached = []

    def step(self, input_ids: Any, all_logits: bool = False) -> np.ndarray:
        """Append tokens (1-D) to the cached sequence and return the logits of
        the last one (V,), or of all of them (T, V)."""
        ids = as_batch(input_ids, self.config.vocab_size)
        if ids.shape[0] != 1:
            raise ValueError("step takes one sequence (1-D ids)")
        with self._lock:
            logits = self._live().forward(np.ascontiguousarray(ids[0]), all_logits)
            self._cached.extend(ids[0].tolist())
            return logits

    def _step_token(self, token: int) -> np.ndarray:
        """step([token]) for the decoding loop, without the generic input
        checks (the compiled forward still checks the id's range)."""
        with self._lock:
            logits = self._live().forward(np.array((token,), dtype=np.int32), False)
            self._cached.append(token)
            return logits

    # ---- several sequences at once (generate with several prompts or
    # num_return_sequences > 1): sequence 0 is the model's own cache (its
    # prefix is reused as usual), the others get caches for the call only

    _MAX_BATCH = 32  # sequences per batched decode step

    def _batch_size(self) -> int:
        return self._MAX_BATCH if self._live().decode_batch_supported else 1

    def _batch_begin(self, n: int) -> None:
        self._live().set_n_seq(n)

    def _batch_prefill(self, ids: List[int], seq: int) -> np.ndarray:
        if seq == 0:
            return self._prefill(ids)
        live = self._live()
        live.truncate(0, seq)
        return live.forward(np.asarray(ids, dtype=np.int32), False, seq)

    def _batch_step(self, tokens: List[int], seqs: List[int]) -> np.ndarray:
        live = self._live()
        if live.decode_batch_supported:
            logits = live.decode_batch(np.asarray(tokens, dtype=np.int32), np.asarray(seqs, dtype=np.int64))
        else:  # one sequence at a time (beam search over weights the batched path does not take)
            logits = np.stack([live.forward(np.array((t,), dtype=np.int32), False, s) for t, s in zip(tokens, seqs)])
        if seqs and seqs[0] == 0:
            self._cached.append(tokens[0])
        return logits

    def _batch_copy(self, src: int, dst: int) -> None:
        if dst == 0:
            raise ValueError("sequence 0 is the model's own cache; copy into sequences 1..n-1")
        self._live().copy_seq(src, dst)

    def _max_sequences(self) -> int:
        return self._MAX_BATCH

    def _batch_end(self) -> None:
        if self._model is not None:
            self._model.set_n_seq(1)  # frees the other sequences' caches

    def _prefill(self, ids: List[int]) -> np.ndarray:
        """Logits after ``ids`` (V,), running only what the cache lacks."""
        with self._lock:
            common = reusable_prefix(ids, self._cached)
            self._live().truncate(common)
            self._cached = self._cached[:common]
            return self.step(ids[common:])

    @property
    def tokenizer(self) -> Any:
        """The tokenizer stored in the model file (loaded on first use)."""
        if self._tokenizer is None:
            from .auto import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.file.path)
        return self._tokenizer

    def _live(self) -> _C.LlamaModel:
        if self._model is None:
            raise ValueError("this model was closed")
        return self._model

    def close(self) -> None:
        """Free the KV cache and the model's hold on the file mapping; the
        object is unusable after (ValueError)."""
        with self._lock:
            self._model = None
            self._cached = []

    def __enter__(self) -> "LlamaForCausalLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def tensor_types(self) -> Iterator[str]:
        return iter(sorted({t.type_name for t in self.file.tensors.values()}))

    def __repr__(self) -> str:
        c = self.config
        return (f"LlamaForCausalLM(layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}/{c.num_key_value_heads}, vocab={c.vocab_size}, n_ctx={self.n_ctx})")
