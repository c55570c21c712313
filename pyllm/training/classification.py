# Sequence-classification data for the Trainer: rows from lists, dicts, pandas or `datasets`, checked,
# tokenized once and padded per batch; EvalPrediction / PredictionOutput. Not the training loop.
"""Datasets of labelled texts as transformers' Trainer takes them.

A dataset is a list of dicts, a dict of equal-length columns, a pandas
``DataFrame`` or a ``datasets.Dataset`` (neither package is needed for the
others), or any sequence whose items are dicts. Rows hold either ``text``
(tokenized with the Trainer's tokenizer; ``text_pair`` optional) or
pre-tokenized ``input_ids`` (with ``attention_mask`` / ``token_type_ids``
optional), and a label under ``label`` / ``labels`` / ``label_ids``: an
integer class id, a class name found in ``model.config.label2id``, or floats
for regression / multi-label models.

>>> rows = [{"text": "a fine film", "label": 1}, {"text": "dull", "label": 0}]
>>> ds = ClassificationDataset(rows)
>>> len(ds), ds.has_labels
(2, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["ClassificationDataset", "DataCollatorWithPadding", "EvalPrediction", "PredictionOutput",
           "as_columns", "epoch_order", "LABEL_COLUMNS", "TEXT_COLUMNS"]

LABEL_COLUMNS = ("labels", "label", "label_ids")  # transformers' collator renames label / label_ids to labels
TEXT_COLUMNS = ("text", "sentence")
_TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


class EvalPrediction:
    """What ``compute_metrics`` receives: ``predictions`` (the logits, (N, num_labels)) and
    ``label_ids`` ((N,) or None); unpacks as ``predictions, labels = eval_pred``."""

    def __init__(self, predictions: np.ndarray, label_ids: Optional[np.ndarray], inputs: Any = None):
        self.predictions = predictions
        self.label_ids = label_ids
        self.inputs = inputs

    def __iter__(self) -> Iterator[Any]:
        items = (self.predictions, self.label_ids) if self.inputs is None else \
            (self.predictions, self.label_ids, self.inputs)
        return iter(items)

    def __getitem__(self, i: int) -> Any:
        return tuple(self)[i]

    def __len__(self) -> int:
        return len(tuple(self))


@dataclass
class PredictionOutput:
    """``trainer.predict``'s result, as transformers': logits, labels (None without) and metrics."""

    predictions: np.ndarray
    label_ids: Optional[np.ndarray]
    metrics: Optional[Dict[str, float]]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.predictions, self.label_ids, self.metrics))


def as_columns(data: Any, what: str = "dataset") -> Dict[str, List[Any]]:
    """A dataset as a dict of equal-length column lists (see the module docstring for what is accepted)."""
    if data is None:
        raise ValueError(f"the {what} is None")
    cols: Dict[str, List[Any]]
    if isinstance(data, dict):
        cols = {str(k): list(v) if not isinstance(v, (str, bytes)) else [v] for k, v in data.items()}
    elif hasattr(data, "columns") and hasattr(data, "to_dict") and hasattr(data, "iloc"):  # pandas.DataFrame
        cols = {str(c): data[c].tolist() for c in data.columns}
    elif hasattr(data, "column_names") and hasattr(data, "to_dict"):  # datasets.Dataset
        cols = {str(k): list(v) for k, v in data.to_dict().items()}
    elif isinstance(data, (list, tuple)) or (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        rows = [data[i] for i in range(len(data))]
        if not rows:
            raise ValueError(f"the {what} is empty")
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise TypeError(f"{what} row {i} is {type(r).__name__}, not a dict of columns")
        keys = list(rows[0])
        for i, r in enumerate(rows):
            if set(r) != set(keys):
                raise ValueError(f"{what} row {i} has columns {sorted(r)}, row 0 has {sorted(keys)}")
        cols = {str(k): [r[k] for r in rows] for k in keys}
    else:
        raise TypeError(f"the {what} is a {type(data).__name__}: pass a list of dicts, a dict of columns, a "
                        "pandas DataFrame or a datasets.Dataset")
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the {what}'s columns differ in length: {lengths}")
    if not cols or not next(iter(lengths.values())):
        raise ValueError(f"the {what} is empty")
    return cols


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class ClassificationDataset:
    """Checked columns of a classification dataset: ``texts`` (or token ``features``) and
    ``labels`` (an int64 array of class ids, or float32 for regression / multi-label;
    None when the data has no label column)."""

    def __init__(self, data: Any, label2id: Optional[Dict[str, int]] = None, num_labels: Optional[int] = None,
                 what: str = "dataset"):
        if isinstance(data, ClassificationDataset):
            data = data.columns
        cols = as_columns(data, what)
        self.columns: Dict[str, List[Any]] = cols
        self.what = what
        self.n = len(next(iter(cols.values())))
        self.texts: Optional[List[str]] = None
        self.text_pairs: Optional[List[str]] = None
        self.features: Optional[Dict[str, List[List[int]]]] = None
        if "input_ids" in cols:
            self.features = {k: [self._ids(k, i, v) for i, v in enumerate(cols[k])] for k in _TOKEN_COLUMNS
                             if k in cols}
            for k, rows in self.features.items():
                for i, (a, b) in enumerate(zip(rows, self.features["input_ids"])):
                    if len(a) != len(b):
                        raise ValueError(f"{what} row {i}: {k} has {len(a)} values, input_ids {len(b)}")
        else:
            name = next((c for c in TEXT_COLUMNS if c in cols), None)
            if name is None:
                raise ValueError(f"the {what} has no text column ({' or '.join(TEXT_COLUMNS)}) and no input_ids; "
                                 f"its columns are {sorted(cols)}")
            self.texts = [self._text(name, i, t) for i, t in enumerate(cols[name])]
            if "text_pair" in cols:
                self.text_pairs = [self._text("text_pair", i, t) for i, t in enumerate(cols["text_pair"])]
        label_col = next((c for c in LABEL_COLUMNS if c in cols), None)
        self.labels = None if label_col is None else self._labels(label_col, cols[label_col], label2id, num_labels)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return self.n

    def _text(self, col: str, i: int, t: Any) -> str:
        if not isinstance(t, str):
            raise TypeError(f"{self.what} row {i}: {col} is {type(t).__name__} ({t!r:.40}), not a string")
        if not t.strip():
            raise ValueError(f"{self.what} row {i}: {col} is empty; drop empty texts before training")
        return t

    def _ids(self, col: str, i: int, v: Any) -> List[int]:
        arr = np.asarray(v)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError(f"{self.what} row {i}: {col} must be a non-empty list of integers, got {v!r:.60}")
        return [int(x) for x in arr]

    def _labels(self, col: str, values: List[Any], label2id: Optional[Dict[str, int]],
                num_labels: Optional[int]) -> np.ndarray:
        what = self.what
        first = values[0]
        if isinstance(first, (list, tuple, np.ndarray)):  # multi-label / multi-output regression rows
            try:
                arr = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{what}: the {col} rows are not equal-length lists of numbers ({e})") from None
            if arr.ndim != 2 or not np.isfinite(arr).all():
                raise ValueError(f"{what}: {col} must be equal-length rows of finite numbers")
            if num_labels is not None and arr.shape[1] != num_labels:
                raise ValueError(f"{what}: {col} rows have {arr.shape[1]} values; the model has "
                                 f"num_labels={num_labels}")
            return arr.astype(np.float32)
        if all(isinstance(v, str) for v in values):
            if not label2id:
                raise ValueError(f"{what}: {col} holds names ({first!r}, ...) but the model has no label2id: "
                                 "pass integer class ids or load the model with id2label/label2id")
            for i, v in enumerate(values):
                if v not in label2id:
                    raise ValueError(f"{what} row {i}: unknown label name {v!r}; the model's labels are "
                                     f"{', '.join(map(repr, label2id))}")
            return np.array([label2id[v] for v in values], dtype=np.int64)
        if all(_is_int(v) for v in values):
            lab = np.array(values, dtype=np.int64)
            if num_labels is not None and num_labels > 1:
                bad = np.flatnonzero((lab < 0) | (lab >= num_labels))
                if bad.size:
                    i = int(bad[0])
                    raise ValueError(f"{what} row {i}: {col} {int(lab[i])} is outside [0, {num_labels}) "
                                     f"(the model has num_labels={num_labels})")
            return lab
        for i, v in enumerate(values):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{what} row {i}: {col} is {type(v).__name__} ({v!r:.40}); labels are integer "
                                "class ids, label names, or floats for regression")
        lab_f = np.array(values, dtype=np.float64)
        if num_labels is not None and num_labels > 1:
            raise TypeError(f"{what}: {col} holds floats ({lab_f[0]!r}, ...) but a model with num_labels="
                            f"{num_labels} needs integer class ids (floats are for num_labels=1 regression)")
        if not np.isfinite(lab_f).all():
            raise ValueError(f"{what}: {col} holds NaN or infinity")
        return lab_f.astype(np.float32)

    def tokenize(self, tokenizer: Any, max_length: Optional[int]) -> None:
        """Turn the texts into token features once (truncated to ``max_length``; padding comes per batch)."""
        if self.features is not None:
            return
        if tokenizer is None:
            raise ValueError(f"the {self.what} holds texts: pass tokenizer= to the Trainer (or pre-tokenize it)")
        assert self.texts is not None
        enc = tokenizer(self.texts, self.text_pairs, truncation=True, max_length=max_length)
        self.features = {k: [list(map(int, r)) for r in enc[k]] for k in _TOKEN_COLUMNS if k in enc}

    def rows(self, idx: "Sequence[int] | np.ndarray") -> List[Dict[str, Any]]:
        """Feature dicts of rows ``idx`` (what a data collator takes)."""
        assert self.features is not None, "tokenize() first"
        out = []
        for i in idx:
            row: Dict[str, Any] = {k: v[i] for k, v in self.features.items()}
            if self.labels is not None:
                row["labels"] = self.labels[i]
            out.append(row)
        return out


class DataCollatorWithPadding:
    """transformers' ``DataCollatorWithPadding``: pads a list of feature dicts to the longest
    row of the batch (``padding=True``) with the tokenizer's ``pad``, and renames ``label`` /
    ``label_ids`` to ``labels``. Returns numpy arrays (``return_tensors="np"``)."""

    def __init__(self, tokenizer: Any, padding: Any = True, max_length: Optional[int] = None,
                 pad_to_multiple_of: Optional[int] = None, return_tensors: str = "np"):
        if tokenizer is None or not callable(getattr(tokenizer, "pad", None)):
            raise ValueError("DataCollatorWithPadding needs a tokenizer with a pad() method")
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.return_tensors = return_tensors

    def __call__(self, features: List[Dict[str, Any]]) -> Dict[str, Any]:
        feats = [dict(f) for f in features]
        labels: Optional[List[Any]] = None
        for key in LABEL_COLUMNS:
            if feats and key in feats[0]:
                labels = [f.pop(key) for f in feats]
                break
        batch = dict(self.tokenizer.pad(feats, padding=self.padding, max_length=self.max_length,
                                        pad_to_multiple_of=self.pad_to_multiple_of,
                                        return_tensors=self.return_tensors))
        if labels is not None:
            batch["labels"] = np.asarray(labels)
        return batch


def pad_features(features: List[Dict[str, Any]], pad_token_id: int = 0) -> Dict[str, np.ndarray]:
    """The collator without a tokenizer: right-pads input_ids with ``pad_token_id`` (masks and
    types with 0) to the batch's longest row."""
    T = max(len(f["input_ids"]) for f in features)
    B = len(features)
    ids = np.full((B, T), pad_token_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((B, T), dtype=np.int64)
    types = np.zeros((B, T), dtype=np.int64)
    for b, f in enumerate(features):
        n = len(f["input_ids"])
        ids[b, :n] = f["input_ids"]
        mask[b, :n] = f["attention_mask"] if "attention_mask" in f else 1
        if "token_type_ids" in f:
            types[b, :n] = f["token_type_ids"]
    batch: Dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    for key in LABEL_COLUMNS:
        if key in features[0]:
            batch["labels"] = np.asarray([f[key] for f in features])
            break
    return batch


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled row order of epoch ``epoch`` (0-based): a permutation of ``range(n)`` drawn from
    a generator seeded with ``(seed, epoch)``, so any epoch can be regenerated on resume."""
    return np.random.Generator(np.random.PCG64([int(seed), int(epoch)])).permutation(n)


def batches_of(order: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """``order`` cut into batches of ``batch_size`` (the last one smaller, as a DataLoader without drop_last)."""
    return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]


def split_rows(n: int, eval_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded (train, eval) row indices of ``n`` rows, ``eval_fraction`` of them for evaluation."""
    order = np.random.Generator(np.random.PCG64(int(seed))).permutation(n)
    k = int(round(n * eval_fraction))
    return np.sort(order[k:]), np.sort(order[:k])
