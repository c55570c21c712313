# /v1/embeddings for encoder models (BERT) and decoders (mean-pooled final hidden states): inputs checked
# against the model's length, vectors computed as the model's encode() computes them, in OpenAI's response
# shape. Not HTTP routing, and not the scheduling of a decoder's work (its engine runs it).
"""Sentence embeddings behind ``POST /v1/embeddings``."""

from __future__ import annotations

import base64
import functools
import json
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .protocol import APIError, EmbeddingRequest

__all__ = ["EmbeddingModel", "is_encoder"]


def is_encoder(source: Any) -> bool:
    """Whether ``source`` (a loaded model, a directory or a registered name) is a BERT encoder."""
    from .. import hub
    from ..models.bert import BertPreTrainedModel

    if isinstance(source, BertPreTrainedModel):
        return True
    if not isinstance(source, (str, Path)):
        return False
    p = Path(source).expanduser()
    if not p.is_dir():
        if str(source) not in hub.DIRECTORIES:
            return False
        p = hub.resolve_model_dir(str(source))
    try:
        return bool(json.loads((p / "config.json").read_text(encoding="utf-8")).get("model_type") == "bert")
    except (OSError, ValueError, AttributeError):
        return False


def _normalizes(d: Optional[Path]) -> bool:
    """Whether the directory's sentence-transformers pipeline (modules.json) ends in a Normalize module."""
    if d is None:
        return False
    try:
        modules = json.loads((d / "modules.json").read_text(encoding="utf-8"))
        return any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


class EmbeddingModel:
    """One served model's embeddings: ``embed(request)`` answers an :class:`EmbeddingRequest` (run
    it in a worker thread: it waits for the model).

    For a BERT encoder the vectors are ``model.encode(texts)``: the directory's pooling (mean over
    the attention mask for all-MiniLM-L6-v2), L2-normalised when the directory's
    sentence-transformers modules end in Normalize (as all-MiniLM-L6-v2's do), exactly as
    sentence-transformers returns them; the whole request holds the model. For a decoder they are
    ``model.encode(texts, normalize=True)``: the mean of the final norm's output over each input's
    tokens, at unit length as OpenAI's are; each input runs through ``run`` (the model's engine, one
    input between two decode steps, so streams keep flowing). Token-list inputs are used as given
    (as ``/tokenize`` returns a text's ids, special tokens included). An input longer than the model
    takes (BERT's ``max_seq_length``, else ``max_position_embeddings``; a decoder's ``n_ctx``) is a
    400 unless the request sets ``truncate``."""

    def __init__(self, model: Any, batch_size: int = 32, run: Optional[Callable[[Callable[[], Any]], Any]] = None):
        from ..models.base import PreTrainedCausalLM
        from ..models.bert import BertModel

        c = model.config
        self.model = model
        self.tokenizer = model.tokenizer
        self.batch_size = batch_size
        self.dim = int(c.hidden_size)
        self.vocab = int(c.vocab_size)
        self.decoder = isinstance(model, PreTrainedCausalLM)
        if self.decoder:
            self.max_len = int(model.n_ctx)
            self.normalize = True
        elif isinstance(model, BertModel):
            self.max_len = int(min(model.max_seq_length or c.max_position_embeddings, c.max_position_embeddings))
            self.normalize = _normalizes(getattr(model, "_source", None))
        else:
            raise ValueError(f"an embedding model must be a BertModel or a causal LM, got {type(model).__name__}")
        self._run = run if run is not None else (lambda fn: fn())
        self._lock = threading.Lock()

    def _check_length(self, n: int, where: str, truncate: bool) -> None:
        if n > self.max_len and not truncate:
            raise APIError(400, f"{where}: {n} tokens, more than this model's maximum of {self.max_len}; shorten "
                           "it or set truncate: true", param="input", code="context_length_exceeded")

    def embed(self, req: EmbeddingRequest, name: str) -> Dict[str, Any]:
        """OpenAI's response body for ``req``."""
        if req.dimensions is not None and req.dimensions != self.dim:
            raise APIError(400, f"dimensions: {name} gives {self.dim}-dimensional embeddings and does not "
                           f"shorten them; omit dimensions or pass {self.dim}", param="dimensions")
        items = req.inputs()

        def where(i: int) -> str:
            return "input" if len(items) == 1 else f"input[{i}]"

        out = np.zeros((len(items), self.dim), dtype=np.float32)
        texts: List[Tuple[int, str]] = [(i, x) for i, x in enumerate(items) if isinstance(x, str)]
        ids: List[Tuple[int, List[int]]] = [(i, x) for i, x in enumerate(items) if isinstance(x, list)]
        tokens = 0
        encoded: List[List[int]] = []  # the texts' ids (a decoder embeds these; encode() would tokenize again)
        if texts:
            encoded = [list(row) for row in self.tokenizer([t for _, t in texts])["input_ids"]]
            for (i, _), n in zip(texts, map(len, encoded)):
                if self.decoder and int(n) == 0:  # nothing to pool (a BERT input has [CLS] and [SEP])
                    raise APIError(400, f"{where(i)}: the text has no tokens", param="input")
                self._check_length(int(n), where(i), req.truncate)
                tokens += min(int(n), self.max_len)
        for i, row in ids:
            bad = [t for t in row if not 0 <= t < self.vocab]
            if bad:
                raise APIError(400, f"{where(i)}: token id {bad[0]} is not in [0, {self.vocab})", param="input")
            self._check_length(len(row), where(i), req.truncate)
            tokens += min(len(row), self.max_len)
        if self.decoder:  # one input per engine call: what encode(text, normalize=True) computes
            for i, row in [(i, row) for (i, _), row in zip(texts, encoded)] + ids:
                out[i] = self._run(functools.partial(self.model.embed, [row[:self.max_len]], normalize=True))[0]
        else:
            with self._lock:
                if texts:
                    out[[i for i, _ in texts]] = self.model.encode([t for _, t in texts], batch_size=self.batch_size,
                                                                   normalize=self.normalize, max_length=self.max_len)
                if ids:
                    out[[i for i, _ in ids]] = self._embed_ids([row[:self.max_len] for _, row in ids])
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, req.encoding_format)}
                for i, v in enumerate(out)]
        return {"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _embed_ids(self, rows: List[List[int]]) -> np.ndarray:
        """Pooled vectors of token lists, in batches of similar lengths (padding masked out)."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda k: -len(rows[k]))
        pad = self.tokenizer.pad_token_id
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            T = len(rows[idx[0]])
            batch = np.full((len(idx), T), 0 if pad is None else int(pad), dtype=np.int64)
            mask = np.zeros((len(idx), T), dtype=np.int64)
            for b, k in enumerate(idx):
                batch[b, :len(rows[k])] = rows[k]
                mask[b, :len(rows[k])] = 1
            out[idx] = self.model.embed(batch, mask, None, self.normalize)
        return out


def _encoded(v: np.ndarray, encoding_format: str) -> Union[List[float], str]:
    """A vector as OpenAI sends it: floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in v]
