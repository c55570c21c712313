# The base every causal LM class inherits (PreTrainedCausalLM), what model(input_ids, labels=...) returns
# with transformers' loss, and the model-side checks of what users pass. Not a model: no weights, no math.
"""``PreTrainedCausalLM``, ``CausalLMOutput``, :func:`causal_lm_loss` and the argument checks.

:class:`PreTrainedCausalLM` is what ``AutoModelForCausalLM.from_pretrained``
returns, whatever the architecture: ``config``, ``vocab_size``, ``n_ctx``,
``model(input_ids)`` / ``forward`` returning :class:`CausalLMOutput`,
``step`` / ``reset`` / ``n_past`` over the KV cache, and ``generate`` /
``stream`` / ``score`` from :class:`~pyllm.generation.utils.GenerationMixin`,
whose decoding loop the shared ``step`` / ``_prefill`` here feed. Token ids
reach a model through :meth:`PreTrainedCausalLM._check_ids` (integer type,
range, shape, context length; the value checks themselves are
:mod:`pyllm._inputs`', which the tokenizers share).

>>> logits = np.zeros((1, 3, 4), np.float32)
>>> round(causal_lm_loss(logits, np.array([[0, 1, 2]])), 4) == round(float(np.log(4)), 4)
True
"""

from __future__ import annotations

import os
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, TypeVar, Union

import numpy as np

from .. import _C
from .._inputs import id_batch, is_torch_tensor, like_input, to_numpy
from ..generation.utils import GenerationMixin, reusable_prefix


class ModelOutput:
    """transformers' ModelOutput access: the set fields (not None) in ``_FIELDS`` order, by
    name (``out["logits"]``) or position (``out[0]``), and ``to_tuple()``."""

    _FIELDS: Tuple[str, ...] = ()

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.keys())

    def keys(self) -> List[str]:
        return [k for k in self._FIELDS if getattr(self, k) is not None]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]


@dataclass
class CausalLMOutput(ModelOutput):
    """As transformers' ``CausalLMOutputWithPast``: ``.logits`` (B, T, V) float32, ``.loss``
    (None without labels) and, with ``output_hidden_states=True``, ``.hidden_states``: L + 1
    arrays (B, T, C), the residual stream entering each layer (the embeddings first) and then the
    final norm's output; also ``out["logits"]``, ``out[0]`` (the first field that is set, loss
    first) and ``out.to_tuple()``."""

    logits: Any  # (B, T, V) float32: a numpy array, or a torch tensor for torch input
    loss: Any = None  # 0-d float32 (numpy or torch), or None
    hidden_states: Optional[Tuple[Any, ...]] = None

    _FIELDS = ("loss", "logits", "hidden_states")  # in to_tuple order


def causal_lm_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """transformers' causal-LM loss: position t predicts ``labels[:, t + 1]`` (the shift is done
    here), mean cross-entropy over the labels that are not -100 (in float64)."""
    V = logits.shape[-1]
    pred = logits[:, :-1].reshape(-1, V).astype(np.float64)  # (B*(T-1), V)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    if not keep.any():
        return float("nan")  # transformers: a mean over no tokens
    pred, target = pred[keep], target[keep]
    m = pred.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(pred - m).sum(axis=-1)) + m[:, 0]
    return float(np.mean(logz - pred[np.arange(len(target)), target]))


def check_labels(labels: Any, shape: Tuple[int, ...], vocab_size: int) -> np.ndarray:
    """``labels`` as an int64 array of ``shape`` (-100 or ids in range)."""
    lab = np.asarray(to_numpy(labels))
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array of token ids (or -100), got {lab.dtype} values")
    if lab.ndim == 1 and len(shape) == 2 and shape[0] == 1:
        lab = lab[None, :]
    if lab.shape != shape:
        raise ValueError(f"labels have shape {lab.shape}, input_ids {shape}")
    bad = (lab != -100) & ((lab < 0) | (lab >= vocab_size))
    if bad.any():
        b, t = np.argwhere(bad)[0]
        raise ValueError(f"labels: {int(lab[b, t])} at row {int(b)}, position {int(t)} is neither -100 "
                         f"nor in [0, {vocab_size})")
    return lab.astype(np.int64, copy=False)


def lm_output(input_ids: Any, logits: np.ndarray, labels: Any, vocab_size: int,
              hidden_states: Optional[np.ndarray] = None) -> CausalLMOutput:
    """The output of ``model(input_ids, labels=labels)``, in torch when the input was torch;
    ``hidden_states`` (L + 1, B, T, C) becomes the output's tuple of L + 1 arrays."""
    loss: Optional[Any] = None
    if labels is not None:
        lab = check_labels(labels, logits.shape[:2], vocab_size)
        value = np.float32(causal_lm_loss(logits, lab))
        loss = like_input(input_ids, np.asarray(value)).reshape(()) if is_torch_tensor(input_ids) else value
    hs = None if hidden_states is None else tuple(like_input(input_ids, h) for h in hidden_states)
    return CausalLMOutput(logits=like_input(input_ids, logits), loss=loss, hidden_states=hs)


def mask_columns(attention_mask: Any, shape: Tuple[int, ...]) -> Optional[List[np.ndarray]]:
    """The positions each row of ``input_ids`` (shape ``shape``) keeps under ``attention_mask``
    (1 = token, 0 = padding, on one side of a row), or None when there is no mask or it keeps
    every position.

    >>> mask_columns([[0, 1, 1], [1, 1, 1]], (2, 3))
    [array([1, 2]), array([0, 1, 2])]
    """
    if attention_mask is None:
        return None
    mask = np.asarray(to_numpy(attention_mask))
    if mask.ndim == 1 and len(shape) == 2 and shape[0] == 1:
        mask = mask[None, :]
    if mask.shape != shape:
        raise ValueError(f"attention_mask has shape {mask.shape}, input_ids {shape}")
    if np.all(mask != 0):
        return None
    rows = []
    for b in range(shape[0]):
        cols = np.flatnonzero(mask[b])
        if cols.size and cols[-1] - cols[0] + 1 != cols.size:
            raise ValueError(f"attention_mask row {b} has gaps; padding must be on one side")
        rows.append(cols)
    return rows


def pool_embeddings(h: np.ndarray, mask: np.ndarray, mode: str = "mean", normalize: bool = False) -> np.ndarray:
    """Token states h (B, T, C) and attention mask (B, T) -> (B, C) as sentence-transformers'
    Pooling module: ``mean`` (sum over unmasked tokens / their count), ``cls`` (the first
    token), ``last`` (the last unmasked token), ``max`` (masked tokens excluded) or
    ``mean_sqrt_len``; then L2-normalised (x / max(|x|, 1e-12)) when asked."""
    m = mask.astype(np.float32)[:, :, None]  # (B, T, 1)
    if mode == "cls":
        out = h[:, 0].copy()
    elif mode == "last":
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1] != 0, axis=1)
        out = h[np.arange(h.shape[0]), last]
    elif mode == "max":
        out = np.where(m > 0, h, np.float32(-1e9)).max(axis=1)
    else:
        total = (h * m).sum(axis=1, dtype=np.float32)
        count = np.maximum(m.sum(axis=1), np.float32(1e-9))
        out = total / (np.sqrt(count) if mode == "mean_sqrt_len" else count)
    return l2_normalized(out) if normalize else out.astype(np.float32, copy=False)


def l2_normalized(out: np.ndarray) -> np.ndarray:
    """Rows (B, C) scaled to unit L2 norm as sentence-transformers does: x / max(|x|, 1e-12)."""
    out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
    return out.astype(np.float32, copy=False)


# ---- what users pass to from_pretrained, to() and forward beside the ids

def check_name_or_path(value: Any, name: str = "pretrained_model_name_or_path") -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path or a registered model name (str or os.PathLike), "
                        f"got {type(value).__name__}")


def check_device(value: Any, name: str) -> None:
    """transformers' device arguments (``device=-1`` / ``"cpu"``, ``device_map="cpu"`` / ``"auto"``):
    the CPU is accepted, anything else raises ValueError naming the argument."""
    if value is None:
        return
    if isinstance(value, dict):
        for v in value.values():
            check_device(v, name)
        return
    text = str(value)
    if text in ("cpu", "-1", "auto") or (isinstance(value, int) and not isinstance(value, bool) and value < 0):
        return
    raise ValueError(f"{name}={value!r}: pyllm runs on the CPU only; pass {name}='cpu' (or leave it out)")


def check_dtype(value: Any, name: str) -> None:
    """transformers' ``torch_dtype`` / ``dtype``: float32 and "auto" are what pyllm computes in;
    any other dtype is accepted with a warning (weights stay as the file stores them)."""
    if value is None:
        return
    text = str(value).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    if text in ("float32", "auto", "float"):
        return
    warnings.warn(f"{name}={value!r} is ignored: pyllm computes in float32 on the CPU (quantized weights stay "
                  "quantized, as the file stores them)", UserWarning, stacklevel=3)


# from_pretrained arguments transformers users pass that have one meaning on pyllm's CPU path
_DEVICE_ARGS = ("device_map", "device")
_DTYPE_ARGS = ("torch_dtype", "dtype")
_HARMLESS = ("low_cpu_mem_usage", "trust_remote_code", "use_safetensors", "local_files_only")


def hf_loading_kwargs(kwargs: Dict[str, Any]) -> None:
    """Check and drop from ``kwargs`` the device, dtype and loading switches transformers users
    pass; what remains is unknown and raises TypeError."""
    for key in _DEVICE_ARGS:
        if key in kwargs:
            check_device(kwargs.pop(key), key)
    for key in _DTYPE_ARGS:
        if key in kwargs:
            check_dtype(kwargs.pop(key), key)
    for key in _HARMLESS:
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")


def no_extra_args(kwargs: Dict[str, Any]) -> None:
    """transformers' forward takes cache and output switches pyllm has no use for: accept the
    harmless ones, refuse the rest by name."""
    harmless = {"use_cache", "return_dict"}
    unknown = sorted(k for k in kwargs if k not in harmless)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(unknown)}")


# ---- the base class

class CausalLMConfig(Protocol):
    """What every model's ``config`` holds (:class:`~pyllm.models.decoder.DecoderConfig`,
    :class:`~pyllm.models.gpt2.GPT2Config`), under transformers' names."""

    vocab_size: int  # V
    model_type: str  # the architecture ("llama", "qwen2", "gpt2", ...)
    bos_token_id: Optional[int]
    eos_token_id: Any  # an id, a list of ids (any ends generation), or None
    pad_token_id: Optional[int]

    @property
    def hidden_size(self) -> int: ...  # C

    def to_dict(self) -> Dict[str, Any]: ...


_Model = TypeVar("_Model", bound="PreTrainedCausalLM")


class PreTrainedCausalLM(GenerationMixin):
    """A causal language model on the decoder runtime (``pyllm._C.DecoderModel``, which holds
    the weights and the KV cache): what every model class here offers.

    A subclass builds the runtime (``_live``), keeps ``_cached`` (the token ids whose keys and
    values are in the cache) and ``_lock`` (an ``RLock`` held while the cache is in use), and
    implements ``__call__`` and ``reset``; ``step``, the prefix-reusing prefill and the
    per-token decode step generation runs on are written here once, over ``_live``.
    """

    config: CausalLMConfig
    _cached: List[int]

    @abstractmethod
    def __call__(self, input_ids: Any, attention_mask: Any = None, labels: Any = None,
                 output_hidden_states: Optional[bool] = None, **kwargs: Any) -> CausalLMOutput:
        """Logits for every position, as transformers' ``model(input_ids).logits`` (B, T, V);
        ``.loss`` with ``labels``, ``.hidden_states`` with ``output_hidden_states=True``."""

    def forward(self, input_ids: Any, attention_mask: Any = None, labels: Any = None,
                output_hidden_states: Optional[bool] = None, **kwargs: Any) -> CausalLMOutput:
        """``model.forward(...)`` is ``model(...)``, as in transformers."""
        return self(input_ids, attention_mask=attention_mask, labels=labels,
                    output_hidden_states=output_hidden_states, **kwargs)

    @abstractmethod
    def _live(self) -> _C.DecoderModel:
        """The runtime over the model's weights (ValueError once the model is closed)."""

    @property
    def vocab_size(self) -> int:
        """V, the number of token ids (``config.vocab_size``)."""
        return self.config.vocab_size

    @property
    def n_past(self) -> int:
        """Positions currently in the KV cache."""
        return len(self._cached)

    # ---- the one check of token ids entering a model

    def _context_limit(self) -> Tuple[str, int]:
        """The longest input one call takes, and its name in messages."""
        return "n_ctx", self.n_ctx

    def _check_ids(self, input_ids: Any, name: str = "input_ids") -> np.ndarray:
        """``input_ids`` (an int, a list, a 1-D or (B, T) numpy array or torch tensor) as a
        contiguous (B, T) int64 array: integer ids (TypeError otherwise), in ``[0, vocab_size)``,
        not empty, rows of one length, at most the context long (ValueError naming ``name``)."""
        ids = id_batch(input_ids, name, self.config.vocab_size)
        what, limit = self._context_limit()
        if ids.shape[1] > limit:
            raise ValueError(f"{name} has {ids.shape[1]} tokens, longer than the context {what}={limit}")
        return np.ascontiguousarray(ids)

    # ---- the incremental interface generation builds on

    def step(self, input_ids: Any, all_logits: bool = False) -> np.ndarray:
        """Append tokens (1-D) to the cached sequence and return the logits of
        the last one (V,), or of all of them (T, V)."""
        ids = self._check_ids(input_ids)
        if ids.shape[0] != 1:
            raise ValueError("step takes one sequence (1-D ids)")
        with self._lock:
            logits = self._live().forward(ids[0].astype(np.int32), all_logits)
            self._cached.extend(ids[0].tolist())
            return logits

    def _step_token(self, token: int) -> np.ndarray:
        """step([token]) for the decoding loop, without the generic input
        checks (the compiled forward still checks the id's range)."""
        with self._lock:
            logits = self._live().forward(np.array((token,), dtype=np.int32), False)
            self._cached.append(token)
            return logits

    def _prefill(self, ids: List[int]) -> np.ndarray:
        """Logits after ``ids`` (V,), running only what the cache lacks."""
        with self._lock:
            live = self._live()  # first: a model may rebuild its runtime here, which empties the cache
            common = reusable_prefix(ids, self._cached)
            live.truncate(common)
            self._cached = self._cached[:common]
            return self.step(ids[common:])

    # ---- sentence embeddings from the final hidden states

    _POOLING = ("mean", "last")

    def encode(self, sentences: Union[str, Sequence[str]], normalize: bool = False,
               normalize_embeddings: Optional[bool] = None, max_length: Optional[int] = None,
               pooling: str = "mean", tokenizer: Any = None) -> np.ndarray:
        """Sentence embeddings from the last hidden state (the final norm's output, transformers'
        ``hidden_states[-1]``), as ``SentenceTransformer.encode`` returns them for a decoder:
        each text tokenized as ``tokenizer(text)`` does (the model's own special tokens), run
        alone, pooled by ``pooling`` (``"mean"`` over its tokens, or the ``"last"`` token's
        state) and, with ``normalize=True`` (or ``normalize_embeddings=True``), scaled to unit
        L2 norm. A text longer than the context raises ValueError unless ``max_length`` cuts
        it. Returns float32 (N, C), or (C,) for one string.

        >>> model.encode(["A cat sits.", "A dog runs."], normalize=True).shape  # doctest: +SKIP
        (2, 576)
        """
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"sentences[{i}] is {type(t).__name__}, not a string")
        if normalize_embeddings is not None:
            normalize = bool(normalize_embeddings)
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        tok = tokenizer if tokenizer is not None else self.tokenizer
        rows = tok(texts)["input_ids"] if texts else []
        out = np.zeros((len(texts), int(self.config.hidden_size)), dtype=np.float32)
        for i, row in enumerate(rows):
            if not row:
                raise ValueError(f"sentences[{i}] has no tokens")
            out[i] = self.embed([row[:max_length]], normalize=normalize, pooling=pooling)[0]
        return out[0] if single else out

    def embed(self, input_ids: Any, attention_mask: Any = None, normalize: bool = False,
              pooling: str = "mean") -> np.ndarray:
        """Pooled embeddings (B, C) float32 of token ids (:meth:`encode`'s pooling): each row's
        real tokens (``attention_mask``, padding on one side) run alone from an empty cache."""
        if pooling not in self._POOLING:
            raise ValueError(f"pooling must be one of {', '.join(self._POOLING)}, got {pooling!r}")
        ids = self._check_ids(input_ids)
        rows = mask_columns(attention_mask, ids.shape)
        out = np.zeros((ids.shape[0], int(self.config.hidden_size)), dtype=np.float32)
        with self._lock:
            for b in range(ids.shape[0]):
                cols = np.arange(ids.shape[1]) if rows is None else rows[b]
                if cols.size == 0:
                    raise ValueError(f"input_ids row {b} has no tokens under its attention_mask")
                live = self._live()
                live.truncate(0)
                self._cached = []
                _, h = live.forward_hidden(ids[b, cols].astype(np.int32), False, 0, False)  # (T, C)
                self._cached = ids[b, cols].tolist()
                out[b] = pool_embeddings(h[None], np.ones((1, cols.size), np.int64), pooling, normalize)[0]
        return out

    # ---- transformers' model-object idioms that have one answer on the CPU

    @property
    def device(self) -> str:
        """``"cpu"``, for ``inputs.to(model.device)``."""
        return "cpu"

    def to(self: _Model, device: Any) -> _Model:
        """``model.to("cpu")`` returns the model; any other device raises ValueError."""
        check_device(device, "device")
        return self

    def eval(self: _Model) -> _Model:
        """``model.eval()`` returns the model (inference needs no mode switch here)."""
        return self
