"""Prefill and decode speed while another process keeps one core busy:

    python bench/contention.py --repeats 5

Starts a busy loop in a child process (and stops it at the end), then runs
the default model three ways, interleaved, in the same minute: one thread,
two threads pinned (adaptive off), and the default settings (two threads,
adaptive: a call may run on one thread when that has lately been faster).
The default runs on a model object of its own, so that what it learned
comes from its own calls only. Prints the medians and the default's share
of the better pinned figure; then the same without the busy loop. Not a
correctness test (the tokens do not depend on the thread count).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np

import pyllm

PROMPT_TOKENS = 512
NEW_TOKENS = 64


def busy() -> None:
    while True:
        pass


def prefill(model: pyllm.LlamaForCausalLM, ids: np.ndarray) -> float:
    model.reset()
    t0 = time.perf_counter()
    model.step(ids)
    return len(ids) / (time.perf_counter() - t0)


def decode(model: pyllm.LlamaForCausalLM, ids: np.ndarray) -> float:
    model.reset()
    tok = int(np.argmax(model.step(ids[:16])))
    t0 = time.perf_counter()
    for _ in range(NEW_TOKENS):
        tok = int(np.argmax(model.step([tok])))
    return NEW_TOKENS / (time.perf_counter() - t0)


def measure(models: Dict[str, pyllm.LlamaForCausalLM], ids: np.ndarray, repeats: int) -> Dict[str, List[float]]:
    settings: Dict[str, Callable[[], None]] = {
        "1 thread": lambda: pyllm.set_num_threads(1, adaptive=False),
        "2 threads": lambda: pyllm.set_num_threads(2, adaptive=False),
        "default": lambda: pyllm.set_num_threads(2, adaptive=True),
    }
    out: Dict[str, List[float]] = {f"{k} {w}": [] for k in settings for w in ("prefill", "decode")}
    for r in range(repeats + 1):  # the first round warms up (and lets the default learn)
        for name, setup in settings.items():
            setup()
            m = models["default" if name == "default" else "pinned"]
            p, d = prefill(m, ids), decode(m, ids)
            if r:
                out[f"{name} prefill"].append(p)
                out[f"{name} decode"].append(d)
    return out


def report(title: str, res: Dict[str, List[float]]) -> None:
    print(f"\n{title}")
    print("| what | 1 thread | 2 threads | default | default / better pinned |")
    print("| --- | --- | --- | --- | --- |")
    for what in ("prefill", "decode"):
        one, two, dflt = (statistics.median(res[f"{k} {what}"]) for k in ("1 thread", "2 threads", "default"))
        print(f"| {what} tok/s | {one:.1f} | {two:.1f} | {dflt:.1f} | {dflt / max(one, two):.0%} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quiet-too", action="store_true", help="also measure without the busy loop")
    a = ap.parse_args()
    models = {k: pyllm.AutoModelForCausalLM.from_pretrained(a.model, n_ctx=1024) for k in ("pinned", "default")}
    ids = np.random.default_rng(0).integers(100, 40000, size=PROMPT_TOKENS)
    print(f"cpu: {pyllm.cpu_info()['isa']}, {mp.cpu_count()} logical cores; prompt {PROMPT_TOKENS} tokens, "
          f"decode {NEW_TOKENS} tokens; medians of {a.repeats} interleaved rounds")
    proc = mp.Process(target=busy, daemon=True)
    proc.start()
    try:
        time.sleep(0.5)
        report("one core busy (a busy-loop process)", measure(models, ids, a.repeats))
    finally:
        proc.terminate()
        proc.join()
    if a.quiet_too:
        report("no busy loop", measure(models, ids, a.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
