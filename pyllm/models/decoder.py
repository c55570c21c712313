"""The decoder-only causal LM every architecture runs as: its config
(Hugging Face field names), the loaded weights an architecture module
hands over (runtime spec, tensors by slot, RoPE tables) and the model
object whose forward pass runs in C++ (``pyllm._C.DecoderModel``, one call
per step, GIL released). Not file formats or architecture names (see the
registry and the architecture modules), not generation (pyllm.generation).

The runtime's slots are GGUF's tensor names without ``.weight``:
``token_embd``, ``position_embd``, ``output_norm[.bias]``, ``output`` and,
per layer ``blk.N.``, ``attn_norm[.bias]``, ``attn_q/k/v/output[.bias]``,
``attn_q_norm``, ``attn_k_norm``, ``post_attention_norm``,
``ffn_norm[.bias]``, ``ffn_gate/up/down[.bias]``, ``post_ffw_norm``.
A matrix is ``(array, ggml type id, rows, cols)``, a vector a float32 array.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import _C
from ..generation.configuration import GenerationConfig
from .base import CausalLMOutput, PreTrainedCausalLM, lm_output, mask_columns, no_extra_args

__all__ = ["DecoderConfig", "DecoderForCausalLM", "Loaded", "rope_tables"]

RopeTables = List[Tuple[np.ndarray, np.ndarray]]


@dataclass
class DecoderConfig:
    """The model's hyper-parameters under transformers' names (what
    ``model.config`` shows); ``model_type`` names the architecture."""

    vocab_size: int = 32000  # V
    hidden_size: int = 4096  # C
    intermediate_size: int = 11008  # FF, the MLP width
    num_hidden_layers: int = 32  # L
    num_attention_heads: int = 32  # NH
    num_key_value_heads: int = 32  # NKV (< NH: grouped-query attention)
    head_dim: int = 128  # HS
    max_position_embeddings: int = 2048  # the context the model was trained for
    rms_norm_eps: float = 1e-6  # (the LayerNorm epsilon for LayerNorm models)
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False  # output head shares the token embedding
    bos_token_id: Optional[int] = None
    eos_token_id: Any = None  # an id, or a list of ids any of which ends generation
    pad_token_id: Optional[int] = None
    model_type: str = "llama"
    sliding_window: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # architecture-specific settings, as read

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


@dataclass
class Loaded:
    """What an architecture module reads from a file or directory."""

    config: DecoderConfig
    spec: Dict[str, Any]  # the runtime spec (decoder.h's DecoderSpec) but n_ctx
    tensors: Dict[str, Any]  # slot -> (array, type, rows, cols) or float32 vector
    rope: Callable[[int], RopeTables]  # n_ctx -> the RoPE tables the layers use
    source: str  # the file or directory (its tokenizer too)
    types: Sequence[str]  # the weight types it stores, by name
    release_source: bool = False  # matrices are a file mapping whose pages may be dropped after repacking
    keep: Any = None  # the object owning the mapping


def rope_tables(n_ctx: int, dim: int, theta: float, divide: Optional[np.ndarray] = None,
                scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """cos, sin (n_ctx, dim/2) float32 of angle pos * inv_freq_i, with inv_freq_i =
    1 / theta^(2i/dim) [/ divide_i] [/ scale] in float32 as transformers computes it
    (``divide``: Llama 3's frequency factors; ``scale``: linear position scaling)."""
    expo = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    inv = (np.float32(1.0) / np.power(np.float32(theta), expo)).astype(np.float32)
    if divide is not None:
        inv = (inv / np.asarray(divide, dtype=np.float32)).astype(np.float32)
    if scale != 1.0:
        inv = (inv / np.float32(scale)).astype(np.float32)
    angle = np.arange(n_ctx, dtype=np.float32)[:, None] * inv[None, :]
    return (np.cos(angle.astype(np.float64)).astype(np.float32), np.sin(angle.astype(np.float64)).astype(np.float32))


def llama3_factors(dim: int, theta: float, scaling: Dict[str, Any]) -> np.ndarray:
    """Llama 3's ``rope_scaling`` (``rope_type: llama3``) as per-frequency divisors of inv_freq."""
    factor = float(scaling["factor"])
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling["original_max_position_embeddings"])
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * theta ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


class DecoderForCausalLM(PreTrainedCausalLM):
    """A decoder-only model over weights used in place (a memory-mapped
    GGUF file, whose quantized blocks stay quantized, or a Hugging Face
    directory's safetensors).

    Thread safety: a model object serializes its calls with a lock, so
    several Python threads may share it (they take turns); for parallel
    work, load one model per thread (the file mapping is shared by the OS).

    The KV cache remembers the tokens it holds: a generate/stream/step whose
    prompt shares a prefix with them only runs the new tokens (multi-turn
    chat does not re-read its history).
    """

    config: DecoderConfig

    def __init__(self, loaded: Loaded, n_ctx: Optional[int] = None):
        config = loaded.config
        self.config = config
        if n_ctx is None:
            n_ctx = min(config.max_position_embeddings, 4096)
        if n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self.n_ctx = int(n_ctx)
        self.source = loaded.source
        self._source_types = list(loaded.types)
        self._keep = loaded.keep
        self._lock = threading.RLock()
        spec = {**loaded.spec, "n_ctx": self.n_ctx}
        self._model: Optional[_C.DecoderModel] = _C.DecoderModel(spec, loaded.tensors, loaded.rope(self.n_ctx),
                                                                 loaded.release_source)
        self._cached: List[int] = []  # the token ids whose keys/values are in the cache
        self._tokenizer: Any = None
        self.generation_config = GenerationConfig.from_model_config(config)

    @classmethod
    def from_pretrained(cls, name_or_path: Any, n_threads: Optional[int] = None,
                        n_ctx: Optional[int] = None, **kwargs: Any) -> "DecoderForCausalLM":
        """As :meth:`AutoModelForCausalLM.from_pretrained`, refusing a model of another class."""
        from .auto import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name_or_path, n_threads=n_threads, n_ctx=n_ctx, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{name_or_path} holds a {model.config.model_type} model, not a {cls.__name__}")
        return model

    def __call__(self, input_ids: Any, attention_mask: Optional[Any] = None, labels: Optional[Any] = None,
                 output_hidden_states: Optional[bool] = None, **kwargs: Any) -> CausalLMOutput:
        """Logits for every position, as HF's ``model(input_ids).logits``:
        (B, T, V) float32 (a torch tensor for torch input). Each row is run
        from an empty cache; with an ``attention_mask`` (1 = token, 0 =
        padding, padding on one side) only the real tokens run and padded
        positions get zero logits. With ``labels`` (same shape; -100 is
        ignored) ``.loss`` is transformers' mean next-token cross-entropy
        (logits at t against labels at t + 1). With ``output_hidden_states=True``,
        ``.hidden_states`` holds L + 1 arrays (B, T, C) as transformers': the residual
        stream entering each layer, then the final norm's output (zero at padded positions).

        >>> out = model(ids, labels=ids); out.loss, out.logits.shape   # doctest: +SKIP
        """
        no_extra_args(kwargs)
        ids = self._check_ids(input_ids)
        B, T = ids.shape
        rows = mask_columns(attention_mask, ids.shape)
        c = self.config
        out = np.zeros((B, T, c.vocab_size), dtype=np.float32)
        hidden = np.zeros((c.num_hidden_layers + 1, B, T, c.hidden_size), np.float32) if output_hidden_states else None
        with self._lock:
            for b in range(B):
                cols = np.arange(T) if rows is None else rows[b]
                if cols.size == 0:
                    continue
                live = self._live()
                live.truncate(0)
                self._cached = []
                row = ids[b, cols].astype(np.int32)
                if hidden is None:
                    out[b, cols] = live.forward(row, True)
                else:
                    out[b, cols], hidden[:, b, cols] = live.forward_hidden(row, True)
                self._cached = ids[b, cols].tolist()
        return lm_output(input_ids, out, labels, c.vocab_size, hidden)

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

    @property
    def tokenizer(self) -> Any:
        """The tokenizer stored in the model file (loaded on first use)."""
        if self._tokenizer is None:
            from .auto import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.source)
        return self._tokenizer

    def _live(self) -> _C.DecoderModel:
        if self._model is None:
            raise ValueError("this model was closed")
        check = getattr(self._keep, "check_unchanged", None)
        if check is not None:  # a mapped GGUF file truncated under the model would raise SIGBUS in the step
            check()
        return self._model

    def close(self) -> None:
        """Free the KV cache and the model's hold on the file mapping; the
        object is unusable after (ValueError)."""
        with self._lock:
            self._model = None
            self._cached = []

    def __enter__(self) -> "DecoderForCausalLM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def tensor_types(self) -> Iterator[str]:
        """The names of the weight types the model file stores."""
        return iter(sorted(self._source_types))

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(model_type={c.model_type!r}, layers={c.num_hidden_layers}, "
                f"hidden={c.hidden_size}, heads={c.num_attention_heads}/{c.num_key_value_heads}, "
                f"vocab={c.vocab_size}, n_ctx={self.n_ctx})")
