"""Data-parallel training speed: 2 ranks x 1 thread (mpirun) against 1 process x 2 threads, same global batch:

    python bench/train_mpi.py --repeats 5

Trains the README's character-level Shakespeare GPT shape (4 layers, 4 heads, n_embd 128, blocks of 128
tokens, a global batch of 8 blocks; `--model bench-train` for bench/train.py's 10.8M-parameter one) with
the Trainer on random token ids (speed does not depend on them), the three ways interleaved in each round:
one process on 2 threads, `mpirun -n 2` with 1 thread and 4 blocks per rank, and one process on 1 thread.
Prints the median optimizer-step throughput (tokens of the global batch per second, from the Trainer's
per-step log, first 3 steps dropped) and, for the ranks, the share of the run spent in the gradient sum
(MPI_Allreduce of the flat gradient buffer). Needs Open MPI's mpirun and mpi4py. Not a correctness test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

MODELS: Dict[str, Tuple[int, int, int, int, int]] = {  # n_layer, n_head, n_embd, block_size, global batch
    "shakespeare-char": (4, 4, 128, 128, 8),
    "bench-train": (6, 6, 384, 256, 8),
}


def worker(model: str, steps: int, out: str) -> None:
    """One training run (this process is one rank, or the only process); prints a JSON line on rank 0."""
    import numpy as np

    from pyllm import GPT2Config, GPT2LMHeadModel
    from pyllm.training import TokenDataset, Trainer, TrainingArguments
    from pyllm.training.distributed import get_world

    world = get_world()
    n_layer, n_head, n_embd, block, batch = MODELS[model]
    if batch % world.size:
        raise SystemExit(f"the global batch of {batch} does not split over {world.size} ranks")
    tokens = np.random.default_rng(0).integers(0, 84, size=2_000_000).astype(np.uint16)
    data = TokenDataset(tokens, block_size=block, vocab_size=84)
    cfg = GPT2Config(vocab_size=84, n_positions=block, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    m = GPT2LMHeadModel(cfg, seed=0)
    args = TrainingArguments(out, max_steps=steps, per_device_train_batch_size=batch // world.size,
                             learning_rate=2e-3, warmup_steps=2, logging_steps=1, save_strategy="no",
                             disable_tqdm=True)
    t0 = time.perf_counter()
    Trainer(m, args, train_dataset=data, log_file=io.StringIO()).train()
    wall = time.perf_counter() - t0
    if world.is_main:
        rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
        tps = [r["tokens_per_second"] for r in rows if "tokens_per_second" in r][3:]
        print(json.dumps({"tok_s": statistics.median(tps), "comm_share": world.comm_seconds / wall,
                          "ranks": world.size}), flush=True)


def launch(mode: str, model: str, steps: int) -> Dict[str, float]:
    env = dict(os.environ, PYLLM_ADAPTIVE_THREADS="0", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    env.pop("OPENBLAS_CORETYPE", None)
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--steps", str(steps)]
    with tempfile.TemporaryDirectory() as out:
        if mode == "2 ranks x 1 thread":
            env["OMP_NUM_THREADS"] = "1"
            cmd = [shutil.which("mpirun") or "mpirun", "-n", "2", *me, "--out", out]
        else:
            env["OMP_NUM_THREADS"] = "2" if mode == "1 process x 2 threads" else "1"
            cmd = [*me, "--out", out]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="shakespeare-char")
    ap.add_argument("--steps", type=int, default=23)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.model, a.steps, a.out)
        return
    modes = ["1 process x 2 threads", "2 ranks x 1 thread", "1 process x 1 thread"]
    got: Dict[str, List[Dict[str, float]]] = {m: [] for m in modes}
    for r in range(a.repeats):
        for m in modes:
            got[m].append(launch(m, a.model, a.steps))
            print(f"round {r + 1}: {m}: {got[m][-1]['tok_s']:,.0f} tok/s", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"\n{a.model}, global batch {MODELS[a.model][4]} x {MODELS[a.model][3]} tokens, {a.steps} steps, "
          f"median of {a.repeats} interleaved rounds (load average {load:.1f})")
    base = statistics.median(x["tok_s"] for x in got[modes[0]])
    print("| run | tokens/s | vs 1 process x 2 threads | gradient-sum share |")
    print("| --- | --- | --- | --- |")
    for m in modes:
        tps = statistics.median(x["tok_s"] for x in got[m])
        share = statistics.median(x["comm_share"] for x in got[m]) if m.startswith("2 ranks") else None
        print(f"| {m} | {tps:,.0f} | {tps / base:.2f}x | {'' if share is None else f'{share:.1%}'} |")


if __name__ == "__main__":
    main()
