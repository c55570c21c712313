"""BERT encoders in the Hugging Face layout: ``BertModel`` (hidden states, pooler output and
sentence embeddings) and ``BertForSequenceClassification`` (transformers' three losses,
trainable), forward and backward in C++ (``_C.EncoderModel``) over one flat float32
parameter buffer. Not the tokenizer, not the training loop.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _C
from .._fileio import atomic_write, write_text_atomic
from .._inputs import _mask_array, id_batch, is_torch_tensor, like_input, to_numpy
from .base import ModelOutput, check_name_or_path, hf_loading_kwargs, l2_normalized, pool_embeddings

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# config.json fields that change the math and the only values pyllm implements
_FIXED_FIELDS: Dict[str, Tuple[Any, ...]] = {
    "hidden_act": ("gelu",),
    "position_embedding_type": ("absolute",),
    "is_decoder": (False,),
    "add_cross_attention": (False,),
}
# checkpoint tensors that hold no parameter of these models (buffers, pre-training heads)
_IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")


@dataclass
class BertConfig:
    vocab_size: int = 30522  # V
    hidden_size: int = 768  # C
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # NH; head size HS = C / NH
    intermediate_size: int = 3072  # F, the MLP width
    hidden_act: str = "gelu"  # the exact (erf) GELU
    hidden_dropout_prob: float = 0.1  # embeddings, attention output and MLP output (training only)
    attention_probs_dropout_prob: float = 0.1  # attention probabilities (training only)
    max_position_embeddings: int = 512  # the longest sequence (learned absolute positions)
    type_vocab_size: int = 2  # token types (sentence A / B)
    initializer_range: float = 0.02  # std of the normal init of new weights
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    is_decoder: bool = False
    add_cross_attention: bool = False
    classifier_dropout: Optional[float] = None  # None: hidden_dropout_prob
    problem_type: Optional[str] = None  # one of PROBLEM_TYPES, or None: inferred from num_labels and labels
    id2label: Dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    label2id: Dict[str, int] = field(default_factory=lambda: {"LABEL_0": 0, "LABEL_1": 1})
    architectures: Optional[List[str]] = None
    model_type: str = "bert"
    extra: Dict[str, Any] = field(default_factory=dict)  # other config.json keys, written back unchanged
    init_num_labels: InitVar[Optional[int]] = None  # BertConfig(init_num_labels=3): LABEL_0..LABEL_2

    def __post_init__(self, init_num_labels: Optional[int]) -> None:
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
        if init_num_labels is not None:
            self.num_labels = init_num_labels
        if set(self.label2id) != set(self.id2label.values()):
            self.label2id = {v: k for k, v in self.id2label.items()}  # derived, as transformers
        self.validate()

    @property
    def num_labels(self) -> int:
        """The classifier's outputs (len(id2label), as transformers)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"num_labels must be a positive integer, got {n!r}")
        if n != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(int(n))}
            self.label2id = {v: k for k, v in self.id2label.items()}

    def validate(self) -> None:
        """Raise ValueError naming the first field pyllm cannot build a model from."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig.hidden_size={self.hidden_size} is not a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            v = getattr(self, name)
            if v is None and name == "classifier_dropout":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {v!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ValueError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)} or None, "
                             f"got {self.problem_type!r}")
        if sorted(self.id2label) != list(range(len(self.id2label))) or not self.id2label:
            raise ValueError(f"id2label must map 0..num_labels-1 to names, got {self.id2label!r}")
        if self.model_type != "bert":
            raise ValueError(f"BertConfig.model_type must be 'bert', got {self.model_type!r}")
        for name, allowed in _FIXED_FIELDS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"BertConfig.{name}={getattr(self, name)!r} is not supported; "
                                 f"supported: {', '.join(repr(a) for a in allowed)}")

    @property
    def classifier_dropout_prob(self) -> float:
        return float(self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout)

    def to_dict(self) -> Dict[str, Any]:
        """The config.json contents transformers reads."""
        d = {k: v for k, v in asdict(self).items() if k not in ("extra", "init_num_labels")}
        d = {**self.extra, **d}
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        if d["architectures"] is None:
            del d["architectures"]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], **overrides: Any) -> "BertConfig":
        """From a config.json dict plus keyword overrides (``num_labels``, ``id2label``,
        ``problem_type``, dropout rates, ...); keys that do not change the model are kept in
        ``extra`` and written back by ``to_dict``."""
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT config: model_type is {d.get('model_type')!r}")
        names = {f.name for f in fields(cls)} - {"extra"}
        merged = dict(d)
        num_labels = overrides.pop("num_labels", None)
        for k in list(overrides):
            if k not in names:
                raise TypeError(f"unexpected argument {k!r} (not a BertConfig field)")
        merged.update(overrides)
        if num_labels is not None and "id2label" not in overrides:
            n = num_labels
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
                raise ValueError(f"num_labels must be a positive integer, got {n!r}")
            if len(merged.get("id2label") or {}) != n:
                merged["id2label"] = {i: f"LABEL_{i}" for i in range(int(n))}
                if "label2id" not in overrides:
                    merged["label2id"] = {f"LABEL_{i}": i for i in range(int(n))}
        elif "id2label" in overrides and "label2id" not in overrides:
            merged["label2id"] = {str(v): int(k) for k, v in overrides["id2label"].items()}
        extra = {k: v for k, v in merged.items() if k not in names and k != "num_labels"}
        kwargs = {k: v for k, v in merged.items() if k in names}
        if kwargs.get("id2label") is None:
            kwargs.pop("id2label", None)
        if kwargs.get("label2id") is None:
            kwargs.pop("label2id", None)
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: Union[str, "os.PathLike[str]"], **overrides: Any) -> "BertConfig":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read the BERT config {path}: {e}") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(d, **overrides)


_dataclass_init = BertConfig.__init__


def _config_init(self: BertConfig, *args: Any, num_labels: Optional[int] = None, **kwargs: Any) -> None:
    """transformers' ``BertConfig(num_labels=3)``: labels LABEL_0..LABEL_2 unless id2label names them."""
    if num_labels is not None:
        if kwargs.get("init_num_labels") is not None:
            raise TypeError("pass num_labels or init_num_labels, not both")
        given = kwargs.get("id2label")
        if given is not None and len(given) != num_labels:
            raise ValueError(f"num_labels={num_labels} but id2label names {len(given)} labels")
        if given is None:
            kwargs["init_num_labels"] = num_labels
    _dataclass_init(self, *args, **kwargs)


BertConfig.__init__ = _config_init  # type: ignore[method-assign]


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    """As transformers': ``last_hidden_state`` (B, T, C), ``pooler_output`` (B, C) (None
    without a pooler), ``hidden_states`` (L+1 arrays (B, T, C): the embeddings, then each
    layer) when asked; also ``out["last_hidden_state"]`` and ``out[0]``."""

    last_hidden_state: Any
    pooler_output: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None

    _FIELDS = ("last_hidden_state", "pooler_output", "hidden_states")  # in to_tuple order


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """As transformers': ``logits`` (B, num_labels), ``loss`` (0-d, None without labels),
    ``hidden_states`` when asked; ``out["logits"]``, ``out[0]`` (loss first when set)."""

    logits: Any
    loss: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None

    _FIELDS = ("loss", "logits", "hidden_states")  # in to_tuple order


class BertPreTrainedModel:
    """What both BERT classes share: the C++ encoder, the flat parameter and gradient
    buffers (``named_parameters()`` yields live views with Hugging Face names), input
    checks, ``train()`` / ``eval()``, loading and saving.

    Dropout runs in training mode only (as torch modules: a new model is in training mode,
    ``from_pretrained`` returns one in eval mode); its masks come from a generator seeded
    with ``seed``, so a run repeats. Thread safety: forward, backward and optimizer steps
    (``pyllm.AdamW`` takes the same lock) hold one lock per model."""

    _prefix = ""  # the name prefix of the encoder's tensors in this class's checkpoints
    _architecture = "BertModel"

    def __init__(self, config: BertConfig, seed: int = 0, add_pooling_layer: bool = True, num_labels: int = 0,
                 tokenizer: Any = None, init_weights: bool = True):
        if not isinstance(config, BertConfig):
            raise ValueError(f"config must be a BertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self._lock = threading.RLock()
        c = config
        self._rt = _C.EncoderModel(vocab_size=c.vocab_size, max_positions=c.max_position_embeddings,
                                   type_vocab=c.type_vocab_size, hidden=c.hidden_size, layers=c.num_hidden_layers,
                                   heads=c.num_attention_heads, intermediate=c.intermediate_size,
                                   eps=float(c.layer_norm_eps), pooler=add_pooling_layer, num_labels=num_labels)
        self._layout: List[Tuple[str, Tuple[int, ...], int]] = [
            (self._hf_name(name), tuple(shape), off) for name, shape, off in self._rt.layout()]
        n = int(self._rt.num_parameters)
        self._params = np.zeros(n, dtype=np.float32)
        self._grads = np.zeros(n, dtype=np.float32)
        self.params = {name: self._params[off:off + math.prod(s)].reshape(s) for name, s, off in self._layout}
        self.grads = {name: self._grads[off:off + math.prod(s)].reshape(s) for name, s, off in self._layout}
        self.training = True
        self._rng = np.random.default_rng(seed)
        if init_weights:  # (from_pretrained overwrites them: it initialises only what the checkpoint lacks)
            self._init_weights(self.params, np.random.default_rng(seed))
        self._tokenizer = tokenizer

    def _hf_name(self, name: str) -> str:
        return name if name.startswith("classifier.") else self._prefix + name

    def _init_weights(self, views: Dict[str, np.ndarray], rng: np.random.Generator) -> None:
        # as transformers' BertPreTrainedModel: N(0, initializer_range) for linear and
        # embedding weights (the padding row zeroed), zero biases, unit norm weights
        std = np.float32(self.config.initializer_range)
        for name, view in views.items():
            if name.endswith("LayerNorm.weight"):
                view[...] = 1.0
            elif view.ndim == 2:
                view[...] = rng.standard_normal(view.shape, dtype=np.float32) * std
                if name.endswith("word_embeddings.weight") and 0 <= self.config.pad_token_id < view.shape[0]:
                    view[self.config.pad_token_id] = 0.0
            else:
                view[...] = 0.0

    # ---- modes and parameters

    def train(self, mode: bool = True) -> "BertPreTrainedModel":
        """Training mode (dropout on) or, with ``mode=False``, eval mode; returns the model."""
        self.training = bool(mode)
        return self

    def eval(self) -> "BertPreTrainedModel":
        """Eval mode: no dropout (``train(False)``)."""
        return self.train(False)

    def get_rng_state(self) -> Dict[str, Any]:
        """The state of the generator that seeds the dropout masks (for checkpoints that resume exactly)."""
        with self._lock:
            return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`get_rng_state` returned."""
        with self._lock:
            rng = np.random.default_rng()
            try:
                rng.bit_generator.state = state
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"not a dropout generator state: {e}") from e
            self._rng = rng

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(HF name, live float32 view) of every parameter; writes go into the model."""
        return iter(self.params.items())

    def named_gradients(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(HF name, live float32 view) of every parameter's accumulated gradient."""
        return iter(self.grads.items())

    def flat_buffers(self) -> Tuple[np.ndarray, np.ndarray, List[Tuple[str, int, Tuple[int, ...]]]]:
        """The flat parameter and gradient buffers and (name, offset, shape) of each parameter."""
        return self._params, self._grads, [(name, off, shape) for name, shape, off in self._layout]

    def num_parameters(self) -> int:
        return int(self._params.size)

    def zero_grad(self) -> None:
        """Set every gradient to zero (backward accumulates)."""
        with self._lock:
            self._grads.fill(0.0)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under their HF names."""
        with self._lock:
            return {name: v.copy() for name, v in self.params.items()}

    # ---- inputs

    def _inputs(self, input_ids: Any, attention_mask: Any, token_type_ids: Any
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, token types, mask) as (B, T) int64 arrays, every value checked."""
        c = self.config
        ids = id_batch(input_ids, "input_ids", c.vocab_size)
        B, T = ids.shape
        if T > c.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings={c.max_position_embeddings}: "
                             "truncate the input (tokenizer(..., truncation=True, max_length=...))")
        if attention_mask is None:
            mask = np.ones((B, T), dtype=np.int64)
        else:
            m = np.asarray(to_numpy(attention_mask))
            if m.dtype.kind == "f":
                if not np.isin(m, (0.0, 1.0)).all():
                    raise ValueError("attention_mask must hold 0 and 1 only")
                m = m.astype(np.int64)
            m = _mask_array(m, (B, T))
            if not np.isin(m, (0, 1)).all():
                raise ValueError(f"attention_mask must hold 0 and 1 only, got values {np.unique(m)[:5].tolist()}")
            mask = np.ascontiguousarray(m, dtype=np.int64)
            empty = np.flatnonzero(mask.sum(axis=1) == 0)
            if empty.size:
                raise ValueError(f"attention_mask row {int(empty[0])} masks every position: nothing to attend to")
        if token_type_ids is None:
            types = np.zeros((B, T), dtype=np.int64)
        else:
            types = id_batch(token_type_ids, "token_type_ids", c.type_vocab_size)
            if types.shape != (B, T):
                raise ValueError(f"token_type_ids has shape {types.shape}, input_ids {(B, T)}")
        return np.ascontiguousarray(ids), np.ascontiguousarray(types), mask

    def _run(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray, training: bool,
             pad_rows: bool = False) -> None:
        """The C++ forward (the lock held by the caller); dropout when ``training``. Only the
        unmasked tokens (and the pooler's first token) are computed unless ``pad_rows``:
        padded positions change nothing else, and their hidden states read 0 without it."""
        c = self.config
        if training:
            seed = int(self._rng.integers(0, 2**63 - 1))
            self._rt.forward(self._params, ids, types, mask, float(c.hidden_dropout_prob),
                             float(c.attention_probs_dropout_prob), c.classifier_dropout_prob, seed,
                             pad_rows=pad_rows)
        else:
            self._rt.forward(self._params, ids, types, mask, pad_rows=pad_rows)

    def _hidden_states(self, template: Any) -> Tuple[Any, ...]:
        return tuple(like_input(template, self._rt.hidden(i)) for i in range(self.config.num_hidden_layers + 1))

    # ---- checkpoints

    def load_state_dict(self, tensors: Dict[str, np.ndarray], seed: int = 0) -> List[str]:
        """Copy HF-named tensors (with or without the ``bert.`` prefix; old ``gamma``/``beta``
        names read as ``weight``/``bias``) into the parameters. A missing pooler or
        classifier is initialised as transformers does (N(0, initializer_range), zero bias)
        from ``seed``; any other missing tensor, or one of the wrong shape, raises
        ValueError. Returns the names that were initialised."""
        named: Dict[str, np.ndarray] = {}
        for key, value in tensors.items():
            k = key[len("bert."):] if key.startswith("bert.") else key
            k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
            if k.startswith(_IGNORED_PREFIXES):
                continue
            if k.startswith("pooler.") and not any(n.endswith("pooler.dense.weight") for n in self.params):
                continue  # a model built without the pooler
            if k.startswith("classifier.") and "classifier.weight" not in self.params:
                continue  # a classifier's checkpoint loaded as the bare encoder
            name = self._hf_name(k)
            if name not in self.params:
                raise ValueError(f"unexpected tensor {key!r} in the checkpoint: not a parameter of "
                                 f"{type(self).__name__} (num_hidden_layers={self.config.num_hidden_layers})")
            arr = np.asarray(value)
            if arr.dtype.kind != "f":
                raise ValueError(f"tensor {key} has dtype {arr.dtype}; expected floating point")
            if arr.shape != self.params[name].shape:
                hint = (" (num_labels differs from the checkpoint's classifier)" if k.startswith("classifier.")
                        else "")
                raise ValueError(f"tensor {key} has shape {arr.shape}; the config implies "
                                 f"{self.params[name].shape}{hint}")
            named[name] = arr
        fresh = [n for n in self.params if n not in named]
        head = [n for n in fresh if n.startswith(("classifier.", self._prefix + "pooler."))]
        missing = [n for n in fresh if n not in head]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"the checkpoint lacks {', '.join(missing[:5])}{more}")
        with self._lock:
            for name, arr in named.items():
                self.params[name][...] = arr
            self._init_weights({n: self.params[n] for n in head}, np.random.default_rng(seed))
        return head

    def save_pretrained(self, save_directory: Union[str, "os.PathLike[str]"]) -> None:
        """Write config.json and model.safetensors (HF names) into ``save_directory``:
        transformers' ``from_pretrained`` of the same class reads them, and so does pyllm's.
        Each file goes to a temporary name first and is renamed, so a crash leaves no torn file."""
        from safetensors.numpy import save_file

        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tensors = {name: np.ascontiguousarray(v) for name, v in self.params.items()}
            atomic_write(d / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
        cfg = self.config.to_dict()
        cfg["architectures"] = [self._architecture]
        write_text_atomic(d / CONFIG_NAME, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        if self._tokenizer is not None and callable(getattr(self._tokenizer, "save_pretrained", None)):
            self._tokenizer.save_pretrained(str(d))

    @classmethod
    def _load(cls, name_or_path: Any, kwargs: Dict[str, Any], **build: Any) -> Tuple["BertPreTrainedModel", Path]:
        from .. import hub

        check_name_or_path(name_or_path)
        seed = kwargs.pop("seed", 0)
        tokenizer = kwargs.pop("tokenizer", None)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KEYS}
        hf_loading_kwargs(kwargs)
        d = hub.resolve_model_dir(name_or_path)
        if not (d / CONFIG_NAME).is_file():
            raise ValueError(f"{d} has no {CONFIG_NAME}: not a Hugging Face model directory")
        config = BertConfig.from_json_file(d / CONFIG_NAME, **overrides)
        model = cls(config, seed=seed, tokenizer=tokenizer, init_weights=False, **build)
        model.load_state_dict(_read_safetensors(d), seed=seed)
        model.eval()
        model._source = d
        return model, d

    _source: Optional[Path] = None

    # ---- tokenizer (for text input)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer given to ``from_pretrained`` or assigned here; otherwise the one the
        model directory holds, loaded with ``pyllm.AutoTokenizer`` on first use."""
        if self._tokenizer is None:
            from .auto import AutoTokenizer

            if self._source is None:
                raise ValueError("this model has no tokenizer: pass tokenizer= to from_pretrained or assign "
                                 "model.tokenizer")
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self._source)
            except (ValueError, TypeError, OSError) as e:
                raise ValueError(f"cannot load the tokenizer of {self._source} ({e}): pass tokenizer= to "
                                 "from_pretrained or assign model.tokenizer") from e
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tok: Any) -> None:
        self._tokenizer = tok

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}, vocab={c.vocab_size}, parameters={self.num_parameters():,})")


_CONFIG_KEYS = {f.name for f in fields(BertConfig)} - {"extra", "model_type", "architectures"} | {"num_labels"}


class BertModel(BertPreTrainedModel):
    """The bare encoder, as transformers' ``BertModel``: ``model(input_ids,
    attention_mask=..., token_type_ids=...)`` returns ``last_hidden_state`` (B, T, C) and
    ``pooler_output`` (B, C) (numpy, or torch for torch input); :meth:`encode` gives
    sentence embeddings as sentence-transformers does.

    >>> cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                  intermediate_size=64, max_position_embeddings=16)
    >>> out = BertModel(cfg).eval()(np.array([[2, 7, 9, 3]]))
    >>> out.last_hidden_state.shape, out.pooler_output.shape
    ((1, 4, 32), (1, 32))
    """

    def __init__(self, config: BertConfig, seed: int = 0, add_pooling_layer: bool = True, tokenizer: Any = None,
                 init_weights: bool = True):
        super().__init__(config, seed=seed, add_pooling_layer=add_pooling_layer, num_labels=0, tokenizer=tokenizer,
                         init_weights=init_weights)
        self._pooling: Optional[Dict[str, Any]] = None
        self.max_seq_length: Optional[int] = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, "os.PathLike[str]"],
                        add_pooling_layer: bool = True, **kwargs: Any) -> "BertModel":
        """Load a Hugging Face BERT directory (config.json + model.safetensors; tensor names
        with or without ``bert.``; a missing pooler initialised from ``seed``) or a registered
        name such as ``"all-MiniLM-L6-v2"``. Config fields may be overridden by keyword
        (``hidden_dropout_prob=0.0``); ``tokenizer=`` sets the tokenizer for text input;
        transformers' ``torch_dtype`` / ``device_map`` are accepted as in AutoModel. The model
        is in eval mode."""
        model, d = cls._load(pretrained_model_name_or_path, kwargs, add_pooling_layer=add_pooling_layer)
        assert isinstance(model, BertModel)
        model._pooling, model.max_seq_length = _sentence_config(d)
        return model

    def __call__(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                 output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
                 **kwargs: Any) -> BaseModelOutputWithPooling:
        _no_extra(kwargs)
        with self._lock:
            ids, types, mask = self._inputs(input_ids, attention_mask, token_type_ids)
            self._run(ids, types, mask, self.training, pad_rows=True)  # transformers' values at padding too
            L = self.config.num_hidden_layers
            last = like_input(input_ids, self._rt.hidden(L))
            pooled = like_input(input_ids, self._rt.pooled()) if "pooler.dense.weight" in self.params else None
            hs = self._hidden_states(input_ids) if output_hidden_states else None
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled, hidden_states=hs)

    forward = __call__

    def encode(self, sentences: Union[str, Sequence[str]], batch_size: int = 32, normalize: bool = False,
               normalize_embeddings: Optional[bool] = None, max_length: Optional[int] = None,
               tokenizer: Any = None) -> np.ndarray:
        """Sentence embeddings as sentence-transformers' ``SentenceTransformer.encode``: each
        text tokenized (truncated to the model's ``max_seq_length``, 256 for
        all-MiniLM-L6-v2, or ``max_length``), run in batches (eval mode, no dropout), pooled
        as the directory's ``1_Pooling/config.json`` says (mean over the attention mask when
        there is none) and, with ``normalize=True`` (or ``normalize_embeddings=True``), scaled
        to unit L2 norm. Returns float32 (N, C), or (C,) for one string.

        >>> model = BertModel.from_pretrained("all-MiniLM-L6-v2")        # doctest: +SKIP
        >>> model.encode(["A cat sits.", "A dog runs."], normalize=True).shape  # doctest: +SKIP
        (2, 384)
        """
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences) if not isinstance(sentences, str) else []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"sentences[{i}] is {type(t).__name__}, not a string")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if normalize_embeddings is not None:
            normalize = bool(normalize_embeddings)
        tok = tokenizer if tokenizer is not None else self.tokenizer
        limit = max_length or self.max_seq_length or self.config.max_position_embeddings
        limit = min(int(limit), self.config.max_position_embeddings)
        out = np.zeros((len(texts), self.config.hidden_size), dtype=np.float32)
        # longest first, as sentence-transformers: batches of similar lengths pad less
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=limit, return_tensors="np")
            out[idx] = self.embed(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), normalize)
        return out[0] if single else out

    def embed(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
              normalize: bool = False) -> np.ndarray:
        """Pooled sentence embeddings (B, C) float32 of token ids (the pooling of :meth:`encode`)."""
        with self._lock:
            ids, types, mask = self._inputs(input_ids, attention_mask, token_type_ids)
            self._run(ids, types, mask, False)
            mode = self._pool_mode()
            if mode == "mean":  # in C++ over the computed rows: the bits of pool_embeddings
                pooled = self._rt.mean_pooled()
                return l2_normalized(pooled) if normalize else pooled
            h = self._rt.hidden(self.config.num_hidden_layers)  # (B, T, C)
        return pool_embeddings(h, mask, mode, normalize)

    def _pool_mode(self) -> str:
        p = self._pooling or {}
        for key, mode in (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                          ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len")):
            if p.get(key):
                return mode
        return "mean"


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT with a linear head on the pooled output, as transformers'
    ``BertForSequenceClassification``: ``model(input_ids, attention_mask=..., labels=...)``
    returns ``.logits`` (B, num_labels) and ``.loss`` with transformers' loss for
    ``config.problem_type`` (inferred at the first call with labels when None, as
    transformers does: regression for one label, single-label for integer labels, else
    multi-label). :meth:`forward_backward` adds the loss's gradients for training.

    >>> cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                  intermediate_size=64, max_position_embeddings=16)
    >>> model = BertForSequenceClassification(cfg, seed=0).eval()
    >>> out = model(np.array([[2, 7, 9, 3]]), labels=np.array([1]))
    >>> out.logits.shape, round(float(out.loss), 1)
    ((1, 2), 0.7)
    """

    _prefix = "bert."
    _architecture = "BertForSequenceClassification"

    def __init__(self, config: BertConfig, seed: int = 0, tokenizer: Any = None, init_weights: bool = True):
        super().__init__(config, seed=seed, add_pooling_layer=True, num_labels=config.num_labels,
                         tokenizer=tokenizer, init_weights=init_weights)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, "os.PathLike[str]"],
                        **kwargs: Any) -> "BertForSequenceClassification":
        """Load a Hugging Face BERT directory or registered name (``"all-MiniLM-L6-v2"``) with
        ``num_labels`` / ``id2label`` / ``label2id`` / ``problem_type`` and other config
        overrides as keywords; a checkpoint without a classifier (or pooler) gets one
        initialised as transformers does, N(0, initializer_range) weights and zero bias,
        from ``seed`` (default 0). The model is in eval mode; ``train()`` turns dropout on."""
        model, _ = cls._load(pretrained_model_name_or_path, kwargs)
        assert isinstance(model, BertForSequenceClassification)
        return model

    # ---- losses (numpy on the small logits; the encoder's backward is C++)

    def _problem_type(self, labels: np.ndarray) -> str:
        c = self.config
        if c.problem_type is None:
            if c.num_labels == 1:
                c.problem_type = "regression"
            elif labels.dtype.kind in "iu":
                c.problem_type = "single_label_classification"
            else:
                c.problem_type = "multi_label_classification"
        return c.problem_type

    def _labels(self, labels: Any, B: int) -> Tuple[str, np.ndarray]:
        lab = np.asarray(to_numpy(labels))
        if lab.dtype.kind == "b":
            lab = lab.astype(np.int64)
        if lab.dtype.kind not in "iuf":
            raise TypeError(f"labels must be numbers, got {lab.dtype} values")
        kind = self._problem_type(lab)
        NL = self.config.num_labels
        if kind == "single_label_classification":
            if lab.dtype.kind not in "iu":
                raise TypeError(f"labels must be integer class ids for single_label_classification, got {lab.dtype} "
                                "values")
            lab = lab.reshape(-1) if lab.ndim == 2 and lab.shape[1] == 1 else lab
            if lab.shape != (B,):
                raise ValueError(f"labels have shape {lab.shape}; single_label_classification needs ({B},)")
            bad = (lab != -100) & ((lab < 0) | (lab >= NL))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"labels: {int(lab[i])} at row {i} is outside [0, {NL}) (num_labels={NL}) "
                                 "and not -100")
            return kind, lab.astype(np.int64)
        if kind == "regression":
            want = (B,) if NL == 1 else (B, NL)
            if NL == 1 and lab.shape == (B, 1):
                lab = lab.reshape(B)
            if lab.shape != want:
                raise ValueError(f"labels have shape {lab.shape}; regression with num_labels={NL} needs {want}")
        else:
            if lab.shape != (B, NL):
                raise ValueError(f"labels have shape {lab.shape}; multi_label_classification needs ({B}, {NL})")
        lab = lab.astype(np.float32)
        if not np.isfinite(lab).all():
            raise ValueError("labels hold NaN or infinity")
        return kind, lab

    @staticmethod
    def _loss_and_grad(kind: str, logits: np.ndarray, lab: np.ndarray) -> Tuple[float, np.ndarray]:
        """transformers' loss of ``logits`` (B, NL) and its gradient (float32, same shape)."""
        x = logits.astype(np.float64)
        if kind == "single_label_classification":
            keep = lab != -100
            n = int(keep.sum())
            if n == 0:
                return float("nan"), np.zeros_like(logits)  # torch: a mean over no rows
            z = x - x.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            rows = np.flatnonzero(keep)
            loss = -float(logp[rows, lab[rows]].sum() / n)
            g = np.exp(logp)
            g[rows, lab[rows]] -= 1.0
            g[~keep] = 0.0
            return loss, (g / n).astype(np.float32)
        if kind == "regression":
            y = lab.astype(np.float64).reshape(x.shape)
            diff = x - y
            return float((diff ** 2).mean()), (2.0 * diff / diff.size).astype(np.float32)
        y = lab.astype(np.float64)
        # BCE with logits: max(x, 0) - x y + log(1 + exp(-|x|))
        bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        sig = 1.0 / (1.0 + np.exp(-x))
        return float(bce.mean()), ((sig - y) / y.size).astype(np.float32)

    def __call__(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, labels: Any = None,
                 output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
                 **kwargs: Any) -> SequenceClassifierOutput:
        _no_extra(kwargs)
        with self._lock:
            ids, types, mask = self._inputs(input_ids, attention_mask, token_type_ids)
            lab = self._labels(labels, ids.shape[0]) if labels is not None else None
            self._run(ids, types, mask, self.training, pad_rows=bool(output_hidden_states))
            logits = self._rt.logits()
            hs = self._hidden_states(input_ids) if output_hidden_states else None
        loss: Any = None
        if lab is not None:
            value = np.float32(self._loss_and_grad(lab[0], logits, lab[1])[0])
            loss = like_input(input_ids, np.asarray(value)).reshape(()) if is_torch_tensor(input_ids) else value
        return SequenceClassifierOutput(logits=like_input(input_ids, logits), loss=loss, hidden_states=hs)

    forward = __call__

    def forward_backward(self, input_ids: Any, labels: Any, attention_mask: Any = None,
                         token_type_ids: Any = None) -> float:
        """The loss of ``model(input_ids, attention_mask, token_type_ids, labels=labels)`` (dropout
        as the mode says) and its gradient, added to the accumulated gradients."""
        with self._lock:
            ids, types, mask = self._inputs(input_ids, attention_mask, token_type_ids)
            kind, lab = self._labels(labels, ids.shape[0])
            self._run(ids, types, mask, self.training)
            loss, dlogits = self._loss_and_grad(kind, self._rt.logits(), lab)
            if math.isfinite(loss):
                self._rt.backward(self._params, self._grads, dlogits=dlogits)
            return loss

    def loss(self, input_ids: Any, labels: Any, attention_mask: Any = None, token_type_ids: Any = None) -> float:
        """The loss without dropout and without the backward pass (evaluation)."""
        with self._lock:
            ids, types, mask = self._inputs(input_ids, attention_mask, token_type_ids)
            kind, lab = self._labels(labels, ids.shape[0])
            self._run(ids, types, mask, False)
            return self._loss_and_grad(kind, self._rt.logits(), lab)[0]


def _no_extra(kwargs: Dict[str, Any]) -> None:
    for key in ("position_ids", "head_mask", "inputs_embeds", "output_attentions"):
        if kwargs.get(key) is not None and kwargs.get(key) is not False:
            raise TypeError(f"{key} is not supported by pyllm's BERT")
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")


def _sentence_config(d: Path) -> Tuple[Optional[Dict[str, Any]], Optional[int]]:
    """The sentence-transformers files of a directory: the pooling config (1_Pooling/config.json,
    as modules.json names it) and max_seq_length (sentence_bert_config.json), each or None."""
    pooling: Optional[Dict[str, Any]] = None
    folder = "1_Pooling"
    try:
        for mod in json.loads((d / "modules.json").read_text(encoding="utf-8")):
            if str(mod.get("type", "")).endswith("Pooling"):
                folder = mod.get("path", folder)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        pooling = json.loads((d / folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pooling = None
    max_len: Optional[int] = None
    try:
        v = json.loads((d / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
        max_len = int(v) if v else None
    except (OSError, ValueError, AttributeError, TypeError):
        max_len = None
    return (pooling if isinstance(pooling, dict) else None), max_len


def _read_safetensors(d: Path) -> Dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    index = d / (WEIGHTS_NAME + ".index.json")
    if (d / WEIGHTS_NAME).is_file():
        files = [d / WEIGHTS_NAME]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot read {index}: {e}") from e
        files = [d / f for f in sorted(set(weight_map.values()))]
    else:
        raise ValueError(f"{d} has no {WEIGHTS_NAME} (pyllm reads safetensors checkpoints only)")
    tensors: Dict[str, np.ndarray] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError, TypeError, ValueError) as e:
            raise ValueError(f"cannot read {f}: {e} (float32, float16 and float64 tensors are supported)") from e
    return tensors
