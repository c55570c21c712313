"""pipeline("text-generation" | "text-classification" | "feature-extraction"): inputs in,
transformers' result format out. Not a place for decoding or model math."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np

__all__ = ["pipeline", "TextGenerationPipeline", "TextClassificationPipeline", "FeatureExtractionPipeline",
           "load_classifier"]

Messages = List[Dict[str, str]]


class TextGenerationPipeline:
    """Callable: ``pipe(text_or_messages, **generate_kwargs)`` returns
    ``[{"generated_text": ...}]`` (one dict per returned sequence); a list of
    inputs gives a list of such lists. For chat messages, generated_text is
    the conversation with the assistant's reply appended, as transformers
    returns it."""

    def __init__(self, model: Any, tokenizer: Any = None, **defaults: Any):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.defaults = defaults

    def _one(self, item: object, return_full_text: bool, kwargs: Dict[str, Any]) -> List[Dict[str, Any]]:
        messages: List[Any] = []  # of a chat
        if _is_chat(item):
            messages = list(item)  # type: ignore[call-overload]
        elif not isinstance(item, str):
            raise TypeError(f"text_inputs must be a string, chat messages (a list of dicts) or a list of them, "
                            f"got a list holding {type(item).__name__}")
        ids = self.model.encode_prompt(item, self.tokenizer)
        out = self.model.generate(ids, tokenizer=self.tokenizer, **{**self.defaults, **kwargs})
        results = []
        for row in out:
            new = [int(t) for t in row[len(ids):]]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if isinstance(item, str):
                value: Any = (item + text) if return_full_text else text
            else:
                value = messages + [{"role": "assistant", "content": text}]
            results.append({"generated_text": value})
        return results

    def __call__(self, text_inputs: Union[str, Messages, Sequence[Union[str, Messages]]],
                 return_full_text: bool = True, **generate_kwargs: Any) -> List[Any]:
        """Generate for one input (a list of results) or a list of inputs (a list of lists);
        ``generate_kwargs`` are :meth:`generate`'s (``max_new_tokens``, ``max_length``,
        ``do_sample``, ``num_return_sequences``, ``num_beams``, ...)."""
        if isinstance(text_inputs, str) or _is_chat(text_inputs):
            return self._one(text_inputs, return_full_text, generate_kwargs)
        if not isinstance(text_inputs, (list, tuple)):
            raise TypeError(f"text_inputs must be a string, chat messages (a list of dicts) or a list of them, "
                            f"got {type(text_inputs).__name__}")
        return [self._one(x, return_full_text, generate_kwargs) for x in text_inputs]


def _is_chat(item: object) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and isinstance(item[0], dict)


# ---- encoder pipelines (BERT)

_UNSET: Any = object()  # top_k not given: transformers' legacy result shapes
_FUNCTIONS = ("softmax", "sigmoid", "none")
_TEXT_KEYS = ("text", "text_pair")


def _text_item(item: object, where: str) -> Tuple[str, Optional[str]]:
    """(text, text_pair or None) of one input: a string or {"text": ..., "text_pair": ...}."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict):
        extra = sorted(set(item) - set(_TEXT_KEYS))
        if extra or "text" not in item:
            raise ValueError(f"{where}: a dict input holds 'text' and optionally 'text_pair', got keys "
                             f"{sorted(item)}")
        text, pair = item["text"], item.get("text_pair")
        if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
            raise TypeError(f"{where}: 'text' and 'text_pair' must be strings")
        return text, pair
    if isinstance(item, (list, tuple)):
        raise ValueError(f"{where}: the pipeline received invalid inputs; to send a text pair, send a dictionary "
                         '{"text": "My text", "text_pair": "My pair"}')
    raise TypeError(f"{where}: inputs must be strings or {{'text', 'text_pair'}} dicts, got {type(item).__name__}")


def _as_items(inputs: Any) -> Tuple[List[Any], bool]:
    """(the inputs as a list, whether one input was given rather than a list)."""
    if isinstance(inputs, (str, dict)):
        return [inputs], True
    if isinstance(inputs, (list, tuple)) or (isinstance(inputs, Iterable) and not isinstance(inputs, bytes)):
        return list(inputs), False
    raise TypeError(f"inputs must be a string, a {{'text', 'text_pair'}} dict or a list of them, "
                    f"got {type(inputs).__name__}")


class _EncoderPipeline:
    """What both encoder pipelines share: per-input tokenization (the tokenizer keywords as given),
    batches padded to their longest input, and the model run in eval mode."""

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.batch_size = _positive(batch_size, "batch_size")

    def _encode(self, items: List[Any], tokenizer_kwargs: Dict[str, Any]) -> List[Dict[str, List[int]]]:
        for key in ("return_tensors", "text", "text_pair"):
            if key in tokenizer_kwargs:
                raise TypeError(f"{key} is not a tokenizer argument of this pipeline")
        rows = []
        for i, item in enumerate(items):
            text, pair = _text_item(item, f"inputs[{i}]")
            enc = self.tokenizer(text, pair, **tokenizer_kwargs)
            ids = list(enc["input_ids"])
            rows.append({"input_ids": ids,
                         "attention_mask": list(enc.get("attention_mask") or [1] * len(ids)),
                         "token_type_ids": list(enc.get("token_type_ids") or [0] * len(ids))})
        return rows

    def _batches(self, rows: List[Dict[str, List[int]]], batch_size: Optional[int]
                 ) -> Iterable[Tuple[List[int], Dict[str, np.ndarray]]]:
        """(row indices, padded arrays) per batch; rows of similar lengths go together."""
        n = self.batch_size if batch_size is None else _positive(batch_size, "batch_size")
        order = sorted(range(len(rows)), key=lambda k: -len(rows[k]["input_ids"]))
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        for s in range(0, len(order), n):
            idx = order[s:s + n]
            T = max(len(rows[k]["input_ids"]) for k in idx)
            arrays = {"input_ids": np.full((len(idx), T), pad, dtype=np.int64),
                      "attention_mask": np.zeros((len(idx), T), dtype=np.int64),
                      "token_type_ids": np.zeros((len(idx), T), dtype=np.int64)}
            for b, k in enumerate(idx):
                for key, arr in arrays.items():
                    arr[b, :len(rows[k][key])] = rows[k][key]
            yield idx, arrays

    def _forward(self, arrays: Dict[str, np.ndarray]) -> Any:
        m = self.model
        lock = getattr(m, "_lock", None)
        if lock is None:
            return m(**arrays)
        with lock:  # eval mode for the call (no dropout), the model's mode restored after
            was = bool(getattr(m, "training", False))
            m.train(False)
            try:
                return m(**arrays)
            finally:
                m.train(was)


class TextClassificationPipeline(_EncoderPipeline):
    """Callable as transformers' ``TextClassificationPipeline``: ``pipe(text)`` returns
    ``[{"label", "score"}]`` (the top label), ``pipe([t1, t2])`` one dict per text; with
    ``top_k`` (an int, or None for every label) each text gets a list sorted by score, best
    first. ``function_to_apply`` is "softmax", "sigmoid" or "none" (default from the config:
    none for regression, sigmoid for multi-label or one label, else softmax);
    ``return_all_scores=True`` is transformers' older spelling of ``top_k=None`` (scores in
    label order). A text pair is ``{"text": ..., "text_pair": ...}``. Other keywords
    (``truncation``, ``max_length``, ``padding``) go to the tokenizer, per text.

    >>> pipe = pipeline("text-classification", model="my-classifier")          # doctest: +SKIP
    >>> pipe("What a lovely day!")                                            # doctest: +SKIP
    [{'label': 'positive', 'score': 0.98...}]
    """

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 8, **defaults: Any):
        super().__init__(model, tokenizer, batch_size)
        if not hasattr(model, "config") or not hasattr(model.config, "id2label"):
            raise TypeError(f"model must be a sequence classifier (BertForSequenceClassification), "
                            f"got {type(model).__name__}")
        self._params(defaults, {})  # bad defaults fail here, not at the first call
        self.defaults = defaults

    def _params(self, defaults: Dict[str, Any], kwargs: Dict[str, Any]
                ) -> Tuple[Any, str, bool, Dict[str, Any], Optional[int]]:
        """(top_k, function, legacy postprocessing, tokenizer keywords, batch_size)."""
        p = {**defaults, **kwargs}
        top_k = p.pop("top_k", _UNSET)
        return_all_scores = p.pop("return_all_scores", None)
        function = p.pop("function_to_apply", None)
        batch_size = p.pop("batch_size", None)
        legacy = top_k is _UNSET
        if legacy:
            top_k = None if return_all_scores else 1
        elif top_k is not None:
            top_k = _positive(top_k, "top_k")
        if function is None:
            function = self._default_function()
        elif not isinstance(function, str) or function.lower() not in _FUNCTIONS:
            raise ValueError(f"function_to_apply={function!r}: use one of {', '.join(_FUNCTIONS)}")
        return top_k, str(function).lower(), legacy, p, batch_size

    def _default_function(self) -> str:
        c = self.model.config
        if c.problem_type == "regression":
            return "none"
        if c.problem_type == "multi_label_classification" or c.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def scores(self, logits: np.ndarray, function: str) -> np.ndarray:
        """Scores of logits (B, num_labels) in float32, as transformers computes them."""
        x = np.asarray(logits, dtype=np.float32)
        if function == "sigmoid":
            return np.asarray(1.0 / (1.0 + np.exp(-x)))
        if function == "softmax":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return np.asarray(e / e.sum(axis=-1, keepdims=True))
        return x

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Classify one input or a list of them; keywords as the class says, plus ``batch_size``."""
        top_k, function, legacy, tok_kwargs, batch_size = self._params(self.defaults, kwargs)
        items, single = _as_items(inputs)
        rows = self._encode(items, tok_kwargs)
        results: List[Any] = [None] * len(rows)
        id2label = self.model.config.id2label
        for idx, arrays in self._batches(rows, batch_size):
            scores = self.scores(np.asarray(self._forward(arrays).logits), function)
            for b, k in enumerate(idx):
                row = scores[b]
                if legacy and top_k == 1:
                    results[k] = {"label": id2label[int(row.argmax())], "score": row.max().item()}
                    continue
                ranked = [{"label": id2label[i], "score": v.item()} for i, v in enumerate(row)]
                if not legacy:
                    ranked.sort(key=lambda d: d["score"], reverse=True)
                    if top_k is not None:
                        ranked = ranked[:top_k]
                results[k] = ranked
        if not single:
            return results
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return results  # as transformers: one text without top_k gives a one-item list (a dict pair does not)
        return results[0]


class FeatureExtractionPipeline(_EncoderPipeline):
    """Callable as transformers' ``FeatureExtractionPipeline``: ``pipe(text)`` returns the
    model's first output for it as nested lists, ``[1, T, C]`` hidden states per token of a
    ``BertModel`` (T counting [CLS] and [SEP]); a list of texts gives a list of those.
    ``return_tensors=True`` gives float32 numpy arrays (1, T, C) instead. ``truncation`` and
    ``tokenize_kwargs`` go to the tokenizer. For pooled sentence embeddings use
    ``model.encode`` (sentence-transformers' pooling) instead.

    >>> pipe = pipeline("feature-extraction", model="all-MiniLM-L6-v2")        # doctest: +SKIP
    >>> np.array(pipe("Hello world")).shape                                   # doctest: +SKIP
    (1, 4, 384)
    """

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 8, **defaults: Any):
        super().__init__(model, tokenizer, batch_size)
        self.defaults = defaults

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        """Hidden states of one input or a list of them."""
        p = {**self.defaults, **kwargs}
        return_tensors = bool(p.pop("return_tensors", False))
        batch_size = p.pop("batch_size", None)
        tok_kwargs = dict(p.pop("tokenize_kwargs", None) or {})
        if "truncation" in p:
            if "truncation" in tok_kwargs:
                raise ValueError("truncation given twice (as a keyword and in tokenize_kwargs)")
            tok_kwargs["truncation"] = p.pop("truncation")
        if p:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(p))} (tokenizer arguments go in "
                            "tokenize_kwargs)")
        items, single = _as_items(inputs)
        rows = self._encode(items, tok_kwargs)
        results: List[Any] = [None] * len(rows)
        for idx, arrays in self._batches(rows, batch_size):
            first = np.asarray(self._forward(arrays)[0])  # (B, T, C) hidden states, or (B, NL) logits
            for b, k in enumerate(idx):
                T = len(rows[k]["input_ids"])
                value = first[b:b + 1, :T] if first.ndim == 3 else first[b:b + 1]
                results[k] = np.ascontiguousarray(value) if return_tensors else value.tolist()
        return results[0] if single else results


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _checkpoint_names(d: Path) -> List[str]:
    """The tensor names of a directory's safetensors checkpoint (one file or an index of shards)."""
    from safetensors import safe_open

    index = d / "model.safetensors.index.json"
    try:
        if index.is_file():
            return list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        with safe_open(str(d / "model.safetensors"), framework="np") as f:
            return list(f.keys())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read the checkpoint in {d}: {e}") from e


def load_classifier(name_or_path: Any, **kwargs: Any) -> Any:
    """A trained ``BertForSequenceClassification`` from a directory (or registered name);
    ValueError when its checkpoint holds no classifier, where transformers would start
    one from random weights and classify with them."""
    from . import hub
    from .models import AutoModelForSequenceClassification

    d = hub.resolve_model_dir(name_or_path)
    if not (d / "config.json").is_file():
        raise ValueError(f"{d} has no config.json: not a Hugging Face model directory")
    if not any(n.endswith("classifier.weight") for n in _checkpoint_names(d)):
        raise ValueError(f"{name_or_path} has no classifier (no classifier.weight in its checkpoint): fine-tune one "
                         "first, or load it with AutoModelForSequenceClassification.from_pretrained(..., "
                         "num_labels=N) and pass the model to use a fresh head knowingly")
    return AutoModelForSequenceClassification.from_pretrained(d, **kwargs)


_TASKS = ("text-generation", "text-classification", "sentiment-analysis", "feature-extraction")


@overload
def pipeline(task: Literal["text-generation"], model: Any = ..., tokenizer: Any = ..., n_threads: Optional[int] = ...,
             n_ctx: Optional[int] = ..., device: Any = ..., device_map: Any = ..., torch_dtype: Any = ...,
             dtype: Any = ..., **kwargs: Any) -> TextGenerationPipeline: ...


@overload
def pipeline(task: Literal["text-classification", "sentiment-analysis"], model: Any = ..., tokenizer: Any = ...,
             n_threads: Optional[int] = ..., n_ctx: Optional[int] = ..., device: Any = ..., device_map: Any = ...,
             torch_dtype: Any = ..., dtype: Any = ..., **kwargs: Any) -> TextClassificationPipeline: ...


@overload
def pipeline(task: Literal["feature-extraction"], model: Any = ..., tokenizer: Any = ...,
             n_threads: Optional[int] = ..., n_ctx: Optional[int] = ..., device: Any = ..., device_map: Any = ...,
             torch_dtype: Any = ..., dtype: Any = ..., **kwargs: Any) -> FeatureExtractionPipeline: ...


@overload
def pipeline(task: str, model: Any = ..., tokenizer: Any = ..., n_threads: Optional[int] = ...,
             n_ctx: Optional[int] = ..., device: Any = ..., device_map: Any = ..., torch_dtype: Any = ...,
             dtype: Any = ..., **kwargs: Any
             ) -> Union[TextGenerationPipeline, TextClassificationPipeline, FeatureExtractionPipeline]: ...


def pipeline(task: str, model: Any = None, tokenizer: Any = None, n_threads: Optional[int] = None,
             n_ctx: Optional[int] = None, device: Any = None, device_map: Any = None, torch_dtype: Any = None,
             dtype: Any = None, **kwargs: Any
             ) -> Union[TextGenerationPipeline, TextClassificationPipeline, FeatureExtractionPipeline]:
    """``pipeline(task, model=name_or_path)`` as in transformers, for

    - ``"text-generation"`` (the default decoder when ``model`` is None; keywords are
      :meth:`generate` defaults),
    - ``"text-classification"`` / ``"sentiment-analysis"`` (a fine-tuned BERT classifier
      directory; ``top_k``, ``function_to_apply``, ``batch_size`` and tokenizer keywords as
      defaults for each call),
    - ``"feature-extraction"`` (a BERT directory, default ``"all-MiniLM-L6-v2"``).

    ``device`` (-1 or "cpu"), ``device_map`` ("cpu", "auto"), ``torch_dtype`` / ``dtype``
    are accepted as in :meth:`AutoModelForCausalLM.from_pretrained` (a GPU device raises
    ValueError; a dtype other than float32 is ignored with a warning).

    >>> pipe = pipeline("text-generation", model="SmolLM2-135M-Instruct", device=-1)   # doctest: +SKIP
    >>> pipe([{"role": "user", "content": "Hi!"}], max_new_tokens=20)                  # doctest: +SKIP
    >>> pipeline("feature-extraction", model="all-MiniLM-L6-v2")("Hi")                 # doctest: +SKIP
    """
    if task not in _TASKS:
        raise ValueError(f"unsupported task {task!r}; supported: {', '.join(_TASKS)}")
    from .models.base import check_device, check_dtype

    check_device(device, "device")
    check_device(device_map, "device_map")
    check_dtype(torch_dtype, "torch_dtype")
    check_dtype(dtype, "dtype")
    if isinstance(tokenizer, (str, os.PathLike)):
        from .models import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    by_name = model is None or isinstance(model, str) or hasattr(model, "__fspath__")
    if task == "text-generation":
        from .hub import DEFAULT_MODEL
        from .models import AutoModelForCausalLM

        if by_name:
            model = AutoModelForCausalLM.from_pretrained(model or DEFAULT_MODEL, n_threads=n_threads, n_ctx=n_ctx)
        elif not hasattr(model, "generate"):
            raise TypeError(f"model must be a model, a path or a registered model name, got {type(model).__name__}")
        return TextGenerationPipeline(model, tokenizer, **kwargs)
    batch_size = kwargs.pop("batch_size", 8)
    if task == "feature-extraction":
        from .models import AutoModel

        if by_name:
            model = AutoModel.from_pretrained(model or "all-MiniLM-L6-v2")
        elif not callable(model):
            raise TypeError(f"model must be a model, a path or a registered model name, got {type(model).__name__}")
        return FeatureExtractionPipeline(model, tokenizer, batch_size, **kwargs)
    if model is None:
        raise ValueError(f"pipeline({task!r}) needs model=: a fine-tuned classifier directory")
    if by_name:
        model = load_classifier(model)
    return TextClassificationPipeline(model, tokenizer, batch_size, **kwargs)
