"""Record what transformers' Trainer does on a tiny BERT sequence classifier (dropout off), for
tests/test_trainer_classification.py: the learning rate and the loss of every optimizer step, the
gradient norms, the eval loss of each epoch and the eval logits after training. Both trainers see
the same weights (a seeded pyllm model saved with save_pretrained), the same pre-tokenized rows
and the same row order (pyllm's per-epoch shuffle, fed to transformers through its sampler).
Not run by the tests; rerun it to regenerate.

    python scripts/record_trainer_refs.py

Needs torch and transformers. Writes tests/data/trainer_classification_refs.json.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
              num_labels=3)
MODEL_SEED = 0
# the TrainingArguments both runs use
ARGS = dict(num_train_epochs=3, per_device_train_batch_size=4, per_device_eval_batch_size=4, learning_rate=2e-3,
            weight_decay=0.01, warmup_steps=3, lr_scheduler_type="linear", logging_steps=1, eval_strategy="epoch",
            save_strategy="no", seed=42, max_grad_norm=1.0)
N_TRAIN, N_EVAL = 14, 6  # 14 rows in batches of 4: the last batch of each epoch holds 2


def make_rows(n: int, seed: int) -> List[Dict[str, Any]]:
    """Pre-tokenized rows of 3..12 tokens (ids 5..63, the first 2 as [CLS], the last 3 as [SEP]) and labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        T = int(rng.integers(3, 13))
        ids = [2] + rng.integers(5, 64, size=T - 2).tolist() + [3]
        rows.append({"input_ids": ids, "attention_mask": [1] * T, "token_type_ids": [0] * T,
                     "label": int(rng.integers(0, 3))})
    return rows


def epoch_order(seed: int, epoch: int, n: int) -> List[int]:
    """The row order of epoch ``epoch`` (what pyllm.training.classification.epoch_order draws)."""
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n).tolist()


def tiny_model(tmp: Path) -> Path:
    from pyllm import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig.from_dict({}, **CONFIG), seed=MODEL_SEED)
    d = tmp / "tiny-bert"
    model.save_pretrained(d)
    return d


def run_transformers(model_dir: Path, train_rows: List[Dict[str, Any]], eval_rows: List[Dict[str, Any]],
                     out_dir: str) -> Dict[str, Any]:
    """Train with transformers' Trainer; returns the per-step records and the eval results."""
    import torch
    from torch.utils.data import Sampler
    from transformers import BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    seed, n = int(ARGS["seed"]), len(train_rows)

    class EpochOrder(Sampler[int]):
        def __init__(self) -> None:
            self.epoch = 0

        def __len__(self) -> int:
            return n

        def __iter__(self):  # type: ignore[no-untyped-def]
            order = epoch_order(seed, self.epoch, n)
            self.epoch += 1
            return iter(order)

    def collate(features: List[Dict[str, Any]]) -> Dict[str, Any]:
        T = max(len(f["input_ids"]) for f in features)
        batch = {k: torch.tensor([f[k] + [0] * (T - len(f[k])) for f in features])
                 for k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["labels"] = torch.tensor([f["label"] for f in features])
        return batch

    lrs: List[float] = []
    losses: List[float] = []

    class Record(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):  # type: ignore[no-untyped-def]
            lrs.append(float(optimizer.param_groups[0]["lr"]))

    class Recording(Trainer):
        def _get_train_sampler(self, *a: Any, **k: Any) -> Any:
            return sampler

        def training_step(self, *a: Any, **k: Any) -> Any:
            loss = super().training_step(*a, **k)
            losses.append(float(loss.detach()))
            return loss

    sampler = EpochOrder()
    args = TrainingArguments(out_dir, use_cpu=True, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                             **ARGS)

    def accuracy(p: Any) -> Dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, axis=1) == p.label_ids).mean())}

    trainer = Recording(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows,
                        data_collator=collate, compute_metrics=accuracy, callbacks=[Record()])
    trainer.train()
    steps = [e for e in trainer.state.log_history if "loss" in e]
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    model.eval()
    with torch.no_grad():
        batch = collate(eval_rows)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits.numpy()
    return {"step_lr": lrs, "step_loss": losses,
            "logged": [{k: e[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm")} for e in steps],
            "evals": [{k: e[k] for k in ("step", "epoch", "eval_loss", "eval_accuracy")} for e in evals],
            "final_eval_logits": logits.astype(float).tolist(), "max_steps": trainer.state.max_steps}


def record() -> Dict[str, Any]:
    import transformers

    from pyllm import BertConfig, BertForSequenceClassification

    train_rows, eval_rows = make_rows(N_TRAIN, 1), make_rows(N_EVAL, 2)
    weights = BertForSequenceClassification(BertConfig.from_dict({}, **CONFIG), seed=MODEL_SEED).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_transformers(tiny_model(Path(tmp)), train_rows, eval_rows, str(Path(tmp) / "out"))
    return {"transformers_version": transformers.__version__, "config": CONFIG, "model_seed": MODEL_SEED,
            "initial_weight_sum": float(sum(float(np.abs(v).astype(np.float64).sum()) for v in weights.values())),
            "args": ARGS, "train_rows": train_rows, "eval_rows": eval_rows,
            "orders": [epoch_order(int(ARGS["seed"]), e, N_TRAIN) for e in range(int(ARGS["num_train_epochs"]))],
            **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DATA / "trainer_classification_refs.json"))
    out = Path(ap.parse_args().out)
    ref = record()
    assert all(math.isfinite(x) for x in ref["step_loss"])
    out.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {out}: {len(ref['step_loss'])} steps, eval losses {[e['eval_loss'] for e in ref['evals']]}")


if __name__ == "__main__":
    main()
