# The training job tests/test_mpi.py starts, alone or under mpirun: a small GPT-2 on fixed tokens through
# Trainer, with switches to make one rank fail. Not a test itself (pytest does not collect it).
"""python mpi_worker.py OUT --batch B --steps S [--accum A] [--resume] [--save-every K]
[--die-rank R --die-step K] [--hang-rank R --hang-step K] [--data-seed N]"""

from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np

from pyllm import GPT2Config, GPT2LMHeadModel
from pyllm.training import TokenDataset, Trainer, TrainingArguments
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
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
