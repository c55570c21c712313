"""Training speed while another process keeps one core busy, and without it:

    python bench/train_contention.py --repeats 7

Trains the README's character-level Shakespeare GPT (4 layers, 4 heads,
n_embd 128, blocks of 128 characters, batch 8; `--model bench-train` for
bench/train.py's 10.8M-parameter one) with the Trainer, a fixed number of
optimizer steps per round, three ways interleaved in the same minutes: one
thread, two threads pinned (adaptive off), and the default settings (two
threads, adaptive: each step may run on one thread when that has lately been
faster). The default trains a model and Trainer of its own, so that what it
learned comes from its own steps only; each phase (busy, then idle) starts
fresh, as a new training run would. Prints tokens/s (the median round, and
all rounds' tokens over their time, which counts the default's occasional
steps on the slower count), the default's share of the better pinned
figure and of its steps run on one thread, and how long OpenMP's idle
worker spins after a step. Not a correctness test.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

import pyllm
from pyllm import _C, GPT2Config, GPT2LMHeadModel
from pyllm.training import CharTokenizer, TokenDataset, Trainer, TrainingArguments, read_text

# name: (n_layer, n_head, n_embd, block_size, batch)
MODELS: Dict[str, Tuple[int, int, int, int, int]] = {
    "shakespeare-char": (4, 4, 128, 128, 8),  # the README's worked example
    "bench-train": (6, 6, 384, 256, 8),  # bench/train.py
}


def busy() -> None:
    while True:
        pass


class Run:
    """A model and its Trainer; counts the thread count each step's kernels saw."""

    def __init__(self, model: str, data: TokenDataset, vocab: int, steps: int, out_dir: str):
        n_layer, n_head, n_embd, block, batch = MODELS[model]
        cfg = GPT2Config(vocab_size=vocab, n_positions=block, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
        self.model = GPT2LMHeadModel(cfg, seed=0)
        self.tokens = steps * batch * block
        args = TrainingArguments(out_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=2e-3,
                                 warmup_steps=10, logging_steps=steps, save_strategy="no", disable_tqdm=True)
        self.trainer = Trainer(self.model, args, train_dataset=data, log_file=io.StringIO())
        self.threads_seen: List[int] = []
        self.step_seconds: List[float] = []
        self.last = 0.0  # when the latest step started
        real = self.model.forward_backward

        def counted(x: np.ndarray, y: np.ndarray) -> float:
            now = time.perf_counter()
            if self.threads_seen:
                self.step_seconds.append(now - self.last)  # the previous step (forward, backward, update)
            self.last = now
            self.threads_seen.append(_C.get_num_threads())
            return real(x, y)

        self.model.forward_backward = counted  # type: ignore[method-assign]

    def tokens_per_second(self) -> float:
        t0 = time.perf_counter()
        self.trainer.train()
        end = time.perf_counter()
        self.step_seconds.append(end - self.last)  # the round's last step
        self.threads_seen.append(0)  # a round boundary: no step starts here
        self.last = end
        return self.tokens / (end - t0)


def measure(model: str, data: TokenDataset, vocab: int, steps: int, repeats: int, threads: int,
            out_dir: str) -> Tuple[Dict[str, List[float]], Tuple[float, float]]:
    settings: Dict[str, Callable[[], None]] = {
        "1 thread": lambda: pyllm.set_num_threads(1, adaptive=False),
        f"{threads} threads": lambda: pyllm.set_num_threads(threads, adaptive=False),
        "default": lambda: pyllm.set_num_threads(threads, adaptive=True),
    }
    runs = {k: Run(model, data, vocab, steps, out_dir) for k in ("pinned", "default")}
    out: Dict[str, List[float]] = {k: [] for k in settings}
    for r in range(repeats + 1):  # the first round warms up (and lets the default learn)
        for name, setup in settings.items():
            setup()
            tps = runs["default" if name == "default" else "pinned"].tokens_per_second()
            if r:
                out[name].append(tps)
    d = runs["default"]
    # after the warm-up round: steps with their thread count and time (round boundaries dropped)
    timed = [(n, sec) for n, sec in zip(d.threads_seen[steps + 1:], d.step_seconds[steps + 1:]) if n]
    on_one = sum(n == 1 for n, _ in timed) / max(len(timed), 1)
    time_on_many = sum(sec for n, sec in timed if n != 1) / max(sum(sec for _, sec in timed), 1e-9)
    return out, (on_one, time_on_many)


def worker_spin_ms(model: GPT2LMHeadModel, n: int, block: int) -> float:
    """Milliseconds of CPU the process's other threads (OpenMP's workers) use
    in the half second after a forward/backward on n threads (Linux only)."""
    def per_thread_ns() -> Dict[str, int]:
        out = {}
        for t in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{t}/schedstat") as f:
                out[t] = int(f.read().split()[0])
        return out

    ids = np.zeros((8, block), dtype=np.int64)
    with _C.ScopedThreads(n):
        model.forward_backward(ids, ids)
    model.zero_grad()
    before = per_thread_ns()
    time.sleep(0.5)
    after = per_thread_ns()
    me = str(os.getpid())
    return sum(after[t] - before.get(t, 0) for t in after if t != me) / 1e6


def report(title: str, res: Dict[str, List[float]], shares: Tuple[float, float], tokens: int) -> None:
    """Medians of the rounds, and each setting's tokens over its total time
    (which counts every round, the default's tries of the slower count included)."""
    names = list(res)
    print(f"\n{title}")
    print(f"| what | {' | '.join(names[:2])} pinned | default (adaptive) | default / better pinned |")
    print("| --- | --- | --- | --- | --- |")
    one, many, dflt = (statistics.median(res[k]) for k in names)
    print(f"| training tok/s, median round | {one:,.0f} | {many:,.0f} | {dflt:,.0f} | {dflt / max(one, many):.0%} |")
    one, many, dflt = (len(res[k]) * tokens / sum(tokens / v for v in res[k]) for k in names)
    print(f"| training tok/s, all rounds | {one:,.0f} | {many:,.0f} | {dflt:,.0f} | {dflt / max(one, many):.0%} |")
    print(f"(default: {shares[0]:.0%} of its timed steps on 1 thread, the others {shares[1]:.0%} of its time; rounds: "
          + "; ".join(f"{k} " + " ".join(f"{v:,.0f}" for v in res[k]) for k in names) + ")")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="shakespeare-char")
    ap.add_argument("--steps", type=int, default=32, help="optimizer steps per round")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (medians)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phase", choices=("both", "busy", "idle"), default="both",
                    help="with the busy loop, without it, or both (busy first)")
    a = ap.parse_args()
    text = read_text("shakespeare")
    tok = CharTokenizer.from_text(text)
    data = TokenDataset(tok.encode_array(text).astype(np.uint16), MODELS[a.model][3], tok.vocab_size)
    n_layer, n_head, n_embd, block, batch = MODELS[a.model]
    print(f"cpu: {pyllm.cpu_info()['isa']}, {mp.cpu_count()} logical cores, load average "
          f"{os.getloadavg()[0]:.2f}; GPT-2 {n_layer}L/{n_head}H/{n_embd}d, vocab {tok.vocab_size}, "
          f"batch {batch}x{block}; {a.steps} steps per round, medians of {a.repeats} interleaved rounds")
    with tempfile.TemporaryDirectory() as out_dir:
        if a.phase in ("both", "busy"):
            proc = mp.Process(target=busy, daemon=True)
            proc.start()
            try:
                time.sleep(0.5)
                res, share = measure(a.model, data, tok.vocab_size, a.steps, a.repeats, a.threads, out_dir)
                report("one core busy (a busy-loop process)", res, share, a.steps * batch * block)
            finally:
                proc.terminate()
                proc.join()
        if a.phase in ("both", "idle"):
            time.sleep(1.0)
            print(f"\n(load average {os.getloadavg()[0]:.2f})")
            res, share = measure(a.model, data, tok.vocab_size, a.steps, a.repeats, a.threads, out_dir)
            report("no busy loop", res, share, a.steps * batch * block)
    if os.path.isdir("/proc/self/task"):
        pyllm.set_num_threads(a.threads, adaptive=False)
        probe = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=block, n_embd=n_embd,
                                           n_layer=n_layer, n_head=n_head))
        worker_spin_ms(probe, a.threads, block)  # starts the workers
        many, one = worker_spin_ms(probe, a.threads, block), worker_spin_ms(probe, 1, block)
        print(f"\nOpenMP workers' CPU in the 0.5 s after a forward/backward: {many:.1f} ms after one on "
              f"{a.threads} threads (they spin, then sleep), {one:.1f} ms after one on 1 thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
