"""AutoModelForCausalLM: open a model file, a model directory or a registered
name and build the class its architecture needs. Not a registry of remote
models (see hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .. import hub
from . import registry
from .base import PreTrainedCausalLM, check_name_or_path, hf_loading_kwargs
from .gguf import GGUFFile
from .hfdir import HFCheckpoint

if TYPE_CHECKING:
    from ..tokenizers.base import TokenizerMixin
    from .bert import BertForSequenceClassification, BertModel


def _hf_dir(name_or_path: Any) -> Optional[Path]:
    """``name_or_path`` as a Hugging Face style model directory (config.json
    next to the weights), or None."""
    try:
        p = Path(os.fspath(name_or_path)).expanduser()
    except TypeError:
        return None
    return p if p.is_dir() and (p / "config.json").is_file() else None


def _load_hf_dir(d: Path, n_ctx: Optional[int]) -> PreTrainedCausalLM:
    try:
        model_type = json.loads((d / "config.json").read_text(encoding="utf-8")).get("model_type")
    except ValueError as e:
        raise ValueError(f"{d / 'config.json'} is not valid JSON: {e}") from None
    except AttributeError:
        raise ValueError(f"{d / 'config.json'} does not hold a JSON object") from None
    if model_type == "gpt2":
        from ..tokenizers.files import find_tokenizer, load_tokenizer
        from .gpt2 import GPT2LMHeadModel

        tok = load_tokenizer(d) if find_tokenizer(d) is not None else None
        model = GPT2LMHeadModel.from_pretrained(d, tokenizer=tok)
        if n_ctx is not None:
            if not 0 < n_ctx <= model.config.n_positions:
                raise ValueError(f"n_ctx={n_ctx} is outside [1, {model.config.n_positions}] "
                                 "(the model's n_positions)")
            model.n_ctx = int(n_ctx)
        return model
    arch = registry.for_model_type(model_type, str(d / "config.json"))
    return arch.build(arch.from_hf(HFCheckpoint(d)), n_ctx)


class AutoModelForCausalLM:
    """``AutoModelForCausalLM.from_pretrained(name_or_path)`` as in transformers:
    a ``.gguf`` path, a directory holding one, a GPT-2 directory (config.json
    + model.safetensors, plus the tokenizer files ``pyllm train`` or
    transformers write), or a registered name such as
    ``"SmolLM2-135M-Instruct"`` (fetched on first use).

    transformers' ``torch_dtype`` / ``dtype`` (float32 or "auto"; others are
    ignored with a warning), ``device_map`` / ``device`` (the CPU only:
    anything else raises ValueError) and ``low_cpu_mem_usage``-style loading
    switches are accepted. The model is a
    :class:`~pyllm.models.base.PreTrainedCausalLM` (a ``DecoderForCausalLM``
    for every GGUF / HF decoder architecture, or a ``GPT2LMHeadModel``).

    >>> model = AutoModelForCausalLM.from_pretrained("SmolLM2-135M-Instruct", device_map="cpu")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("use AutoModelForCausalLM.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, n_threads: Optional[int] = None, n_ctx: Optional[int] = None,
                        **kwargs: Any) -> PreTrainedCausalLM:
        check_name_or_path(name_or_path)
        hf_loading_kwargs(kwargs)
        if n_threads is not None:
            from .. import _check_num_threads, set_num_threads

            _check_num_threads(n_threads, "n_threads")
            set_num_threads(n_threads)
        d = _hf_dir(name_or_path)
        if d is not None:
            return _load_hf_dir(d, n_ctx)
        path = hub.resolve_model_file(name_or_path)
        f = GGUFFile(path)
        arch = registry.for_gguf(f.metadata.get("general.architecture"), str(path))
        return arch.build(arch.from_gguf(f), n_ctx)


def _bert_dir(name_or_path: Any) -> Path:
    """The BERT model directory meant by ``name_or_path`` (a directory or a registered name)."""
    d = hub.resolve_model_dir(name_or_path)
    try:
        model_type = json.loads((d / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"cannot read {d / 'config.json'}: {e}") from None
    if model_type != "bert":
        raise ValueError(f"unsupported model_type {model_type!r} in {d / 'config.json'}; this class supports: bert "
                         "(decoders load with AutoModelForCausalLM)")
    return d


class AutoModel:
    """``AutoModel.from_pretrained(name_or_path)`` as in transformers, for encoders: a BERT
    directory (config.json + model.safetensors) or a registered name such as
    ``"all-MiniLM-L6-v2"``, as a :class:`~pyllm.models.bert.BertModel`. Keywords go to
    ``BertModel.from_pretrained``.

    >>> model = AutoModel.from_pretrained("all-MiniLM-L6-v2")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("use AutoModel.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, **kwargs: Any) -> "BertModel":
        from .bert import BertModel

        check_name_or_path(name_or_path)
        return BertModel.from_pretrained(_bert_dir(name_or_path), **kwargs)


class AutoModelForSequenceClassification:
    """``AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=...)`` as in
    transformers: a BERT directory or registered name as a
    :class:`~pyllm.models.bert.BertForSequenceClassification` (a missing classifier
    initialised from ``seed``). Keywords go to its ``from_pretrained``.

    >>> model = AutoModelForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("use AutoModelForSequenceClassification.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, **kwargs: Any) -> "BertForSequenceClassification":
        from .bert import BertForSequenceClassification

        check_name_or_path(name_or_path)
        return BertForSequenceClassification.from_pretrained(_bert_dir(name_or_path), **kwargs)


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)``: the tokenizer stored in a
    GGUF file's metadata (byte-level BPE or SentencePiece-style BPE, ``tokenizer.ggml.model``),
    or the tokenizer files of a model directory (tokenizer.json, vocab.json +
    merges.txt, BERT's vocab.txt + tokenizer_config.json, or pyllm's char_tokenizer.json), as a
    :class:`~pyllm.tokenizers.base.TokenizerMixin`."""

    def __init__(self) -> None:
        raise TypeError("use AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(name_or_path: Any, **kwargs: Any) -> TokenizerMixin:
        check_name_or_path(name_or_path)
        padding_side = kwargs.pop("padding_side", None)
        for key in ("use_fast", "trust_remote_code", "local_files_only"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        tok = AutoTokenizer._load(name_or_path)
        if padding_side is not None:
            if padding_side not in ("left", "right"):
                raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
            tok.padding_side = padding_side
        return tok

    @staticmethod
    def _load(name_or_path: Any) -> TokenizerMixin:
        from ..tokenizers.files import find_tokenizer, load_tokenizer, tokenizer_from_gguf_metadata
        from ..tokenizers.wordpiece import BertTokenizerFast, is_bert_tokenizer_dir

        bert = is_bert_tokenizer_dir(name_or_path)  # WordPiece tokenizer.json, or vocab.txt + tokenizer_config.json
        if bert is not None:
            return BertTokenizerFast.from_pretrained(bert)
        if isinstance(name_or_path, (str, os.PathLike)) and Path(name_or_path).is_dir():
            if find_tokenizer(name_or_path) is not None:
                return load_tokenizer(name_or_path)
            if _hf_dir(name_or_path) is not None:
                raise FileNotFoundError(f"no tokenizer files in {name_or_path} (tokenizer.json, tokenizer.model, "
                                        "vocab.json + merges.txt or char_tokenizer.json)")
        path = hub.resolve_model_file(name_or_path)
        return tokenizer_from_gguf_metadata(GGUFFile(path).metadata)
