# `pyllm train-classifier`: fine-tune a BERT sequence classifier on a CSV of labelled texts with the
# Trainer (epoch evaluation, best model kept). Not the Trainer, not a general CSV library.
"""``pyllm train-classifier --data file.csv --text-column text --label-column sentiment
--model all-MiniLM-L6-v2 --out DIR [--labels positive,negative]``.

The CSV is read with Python's ``csv`` module: UTF-8, except that a line whose
bytes are not valid UTF-8 is read as Latin-1 (so every byte is kept). The
classes are ``--labels`` in the given order (rows with another label are left
out, and counted), else every label value in sorted order. A seeded
``--eval-split`` of the rows is held out; each epoch is evaluated (loss,
accuracy, macro-F1), the best epoch's model (by accuracy) is saved to
``--out`` with its tokenizer, ready for ``pipeline("text-classification")``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["add_parser", "read_labelled_csv", "macro_f1", "classification_metrics"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train-classifier", help="fine-tune a BERT text classifier on a CSV with Trainer",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", required=True, help="a CSV file with a header row")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="a BERT directory or registered name")
    p.add_argument("--out", required=True, help="checkpoints and the best model go here")
    p.add_argument("--labels", default=None, help="comma-separated class names to keep, in id order")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128, help="tokens per text (longer ones are truncated)")
    p.add_argument("--eval-split", type=float, default=0.1, help="fraction of the rows held out for evaluation")
    p.add_argument("--max-rows", type=int, default=None, help="use a seeded sample of this many rows")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    p.set_defaults(func=train_classifier)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_line(line) for line in raw.splitlines(keepends=True))


def _line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_labelled_csv(path: "str | os.PathLike[str]", text_column: str, label_column: str
                      ) -> Tuple[List[str], List[str]]:
    """(texts, labels) of a CSV file's two named columns; rows with an empty text are an error."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data {os.fspath(path)!r} is not a file")
    reader = csv.DictReader(io.StringIO(_decode(p.read_bytes()).lstrip("\ufeff"), newline=""))
    columns = reader.fieldnames or []
    for what, name in (("text", text_column), ("label", label_column)):
        if name not in columns:
            raise ValueError(f"{p} has no {what} column {name!r}; its columns are {', '.join(columns) or 'none'}")
    texts, labels = [], []
    for lineno, row in enumerate(reader, start=2):
        text, label = row.get(text_column), row.get(label_column)
        if text is None or label is None:
            raise ValueError(f"{p}, record {lineno}: too few fields")
        if not text.strip():
            raise ValueError(f"{p}, record {lineno}: the {text_column!r} field is empty")
        texts.append(text)
        labels.append(label.strip())
    if not texts:
        raise ValueError(f"{p} holds no rows")
    return texts, labels


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """The unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN) (0 for a class never seen
    nor predicted, as scikit-learn's zero_division=0)."""
    scores = []
    for c in range(num_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def classification_metrics(eval_pred: Any) -> Dict[str, float]:
    """compute_metrics for Trainer: accuracy and macro-F1 of the argmax of the logits."""
    logits, labels = eval_pred
    pred = np.asarray(logits).argmax(axis=-1)
    gold = np.asarray(labels)
    return {"accuracy": float((pred == gold).mean()), "f1": macro_f1(pred, gold, int(np.asarray(logits).shape[-1]))}


def train_classifier(args: argparse.Namespace) -> int:
    from ..models import AutoTokenizer, BertForSequenceClassification
    from . import Trainer, TrainingArguments
    from .classification import split_rows
    from .distributed import get_world

    world = get_world()
    main = world.is_main  # under mpirun, rank 0 alone reports

    texts, labels = read_labelled_csv(args.data, args.text_column, args.label_column)
    names: List[str] = [s.strip() for s in args.labels.split(",")] if args.labels else sorted(set(labels))
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        raise ValueError(f"--labels must name two or more distinct classes, got {args.labels!r}")
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise ValueError(f"--labels {', '.join(unknown)} never occur in the {args.label_column!r} column (its "
                         f"values: {', '.join(sorted(set(labels))[:10])})")
    keep = [i for i, lab in enumerate(labels) if lab in names]
    skipped = len(labels) - len(keep)
    if args.max_rows is not None:
        if args.max_rows < 2:
            raise ValueError(f"--max-rows must be at least 2, got {args.max_rows}")
        pick = np.random.default_rng(args.seed).permutation(len(keep))[:args.max_rows]
        keep = [keep[i] for i in np.sort(pick)]
    if not 0 < args.eval_split < 1:
        raise ValueError(f"--eval-split must be in (0, 1), got {args.eval_split}")
    label2id = {n: i for i, n in enumerate(names)}
    rows = [{"text": texts[i], "label": label2id[labels[i]]} for i in keep]
    train_idx, eval_idx = split_rows(len(rows), args.eval_split, args.seed)
    if not len(train_idx) or not len(eval_idx):
        raise ValueError(f"{len(rows)} rows are too few for an eval split of {args.eval_split}")
    if main:
        print(json.dumps({"rows": len(rows), "train": len(train_idx), "eval": len(eval_idx), "labels": names,
                          "skipped_rows_with_other_labels": skipped}), flush=True)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.model_max_length = int(args.max_length)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=len(names), seed=args.seed,
                                                          id2label=dict(enumerate(names)), label2id=label2id)
    training_args = TrainingArguments(
        output_dir=args.out, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=args.lr, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=2, logging_steps=10, load_best_model_at_end=True,
        metric_for_best_model="accuracy", seed=args.seed, disable_tqdm=bool(args.no_progress))
    trainer = Trainer(model=model, args=training_args, train_dataset=[rows[i] for i in train_idx],
                      eval_dataset=[rows[i] for i in eval_idx], tokenizer=tokenizer,
                      compute_metrics=classification_metrics)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(args.out)
    out: Dict[str, Optional[Any]] = {"best_checkpoint": trainer.state.best_model_checkpoint, **metrics}
    if main:
        if world.distributed:
            print(f"[{world.size} ranks, {world.size * args.batch_size} rows a step between them]", file=sys.stderr,
                  flush=True)
        print(json.dumps(out), flush=True)
    return 0
