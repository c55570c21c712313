# The training jobs tests/test_mpi.py starts, alone or under mpirun: a small GPT-2 on fixed tokens, or
# (--classify) a small BERT classifier on fixed rows, through Trainer, with switches to make one rank fail.
# Not a test itself (pytest does not collect it).
"""python mpi_worker.py OUT --batch B --steps S [--accum A] [--resume] [--save-every K]
[--die-rank R --die-step K] [--hang-rank R --hang-step K] [--data-seed N]
python mpi_worker.py OUT --classify --batch B --epochs E [--accum A] [--dropout P] [--resume]
[--die-rank R --die-step K]"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

import numpy as np

from pyllm import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
from pyllm.training import TokenDataset, Trainer, TrainingArguments
from pyllm.training.classification import pad_features
from pyllm.training.distributed import get_world


class Sabotaged(TokenDataset):
    """A token dataset that kills (or stalls) its rank at the chosen step."""

    die_step = hang_step = -1
    calls = 0

    def get_batch(self, batch_size, rng):
        self.calls += 1
        if self.calls == self.die_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.calls == self.hang_step:
            time.sleep(3600)
        return super().get_batch(batch_size, rng)


def accuracy(pred):
    return {"accuracy": float((np.asarray(pred.predictions).argmax(-1) == np.asarray(pred.label_ids)).mean())}


def classify(a, world) -> None:
    """A 2-layer BERT with 3 labels on 160 training rows of 5..22 ids (a global batch of 6 leaves a short last
    batch of 4) and 13 evaluation rows; evaluated and saved each epoch, the best model kept."""
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(173):  # learnable: the row's label is which of the ids 3, 4, 5 it holds (once, anywhere)
        label, words = int(rng.integers(0, 3)), rng.integers(6, 50, size=int(rng.integers(2, 19))).tolist()
        words.insert(int(rng.integers(0, len(words) + 1)), 3 + label)
        rows.append({"input_ids": [1, *words, 2], "label": label})
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=a.dropout,
                     attention_probs_dropout_prob=a.dropout, num_labels=3)
    model = BertForSequenceClassification(cfg, seed=7)
    calls = [0]

    def collate(features):
        calls[0] += 1
        if world.rank == a.die_rank and calls[0] == a.die_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return pad_features(features, 0)

    args = TrainingArguments(a.out, num_train_epochs=a.epochs, per_device_train_batch_size=a.batch,
                             per_device_eval_batch_size=4, gradient_accumulation_steps=a.accum, learning_rate=1e-2,
                             warmup_steps=2, logging_steps=1, eval_strategy="epoch", save_strategy="epoch",
                             load_best_model_at_end=True, metric_for_best_model="accuracy", save_total_limit=2,
                             seed=11, disable_tqdm=True)
    trainer = Trainer(model, args, train_dataset=rows[:160], eval_dataset=rows[160:], data_collator=collate,
                      compute_metrics=accuracy)
    trainer.train(resume_from_checkpoint=True if a.resume else None)
    trainer.save_model()
    predictions = trainer.predict(rows[160:]).predictions
    if world.is_main:
        np.save(os.path.join(a.out, "weights.npy"), model.flat_buffers()[0])
        np.save(os.path.join(a.out, "predictions.npy"), predictions)
        with open(os.path.join(a.out, "layout.json"), "w") as f:
            json.dump([[name, offset, int(np.prod(shape))] for name, offset, shape in model.flat_buffers()[2]], f)
        with open(os.path.join(a.out, "comm.txt"), "w") as f:
            f.write(f"{world.size} {world.comm_seconds:.6f}\n")
    else:  # every rank ends with the same (best) weights and the same predictions
        np.save(os.path.join(a.out, f"rank{world.rank}-weights.npy"), model.flat_buffers()[0])
        np.save(os.path.join(a.out, f"rank{world.rank}-predictions.npy"), predictions)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--classify", action="store_true")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--die-rank", type=int, default=-1)
    ap.add_argument("--die-step", type=int, default=-1)
    ap.add_argument("--hang-rank", type=int, default=-1)
    ap.add_argument("--hang-step", type=int, default=-1)
    a = ap.parse_args()

    world = get_world()
    if a.classify:
        classify(a, world)
        return
    tokens = np.random.default_rng(abs(a.data_seed)).integers(0, 64, size=4000).astype(np.uint16)
    if a.data_seed < 0 and world.rank == 1:  # this rank was started on other data
        tokens = tokens[::-1].copy()
    train = Sabotaged(tokens[:3600], block_size=16, vocab_size=64, name="training")
    val = TokenDataset(tokens[3600:], block_size=16, vocab_size=64, name="validation")
    if world.rank == a.die_rank:
        train.die_step = a.die_step
    if world.rank == a.hang_rank:
        train.hang_step = a.hang_step
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2), seed=7)
    args = TrainingArguments(a.out, max_steps=a.steps, per_device_train_batch_size=a.batch,
                             per_device_eval_batch_size=4, gradient_accumulation_steps=a.accum, learning_rate=3e-3,
                             warmup_steps=2, logging_steps=1, eval_strategy="steps", eval_steps=3,
                             save_strategy="steps" if a.save_every else "no", save_steps=a.save_every or 1,
                             seed=11, disable_tqdm=True)
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val)
    trainer.train(resume_from_checkpoint=True if a.resume else None)
    trainer.save_model()
    if world.is_main:
        flat = model.flat_buffers()[0]
        np.save(os.path.join(a.out, "weights.npy"), flat)
        with open(os.path.join(a.out, "comm.txt"), "w") as f:
            f.write(f"{world.size} {world.comm_seconds:.6f}\n")


if __name__ == "__main__":
    main()
