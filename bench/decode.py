"""Greedy decode speed, pyllm or llama-cpp-python, one system per process:

    python bench/decode.py pyllm --threads 2 --repeats 5
    python bench/decode.py llama_cpp --threads 2 --repeats 5

16 prompt tokens, then 128 tokens one step at a time (argmax); prints the
median decode tok/s and every run. Run the two systems alternately on a busy
machine. Not a correctness test."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

try:  # the default model in pyllm's cache; a process without pyllm falls back to its default location
    from pyllm.hub import resolve_model_file

    DEFAULT = str(resolve_model_file("SmolLM2-135M-Instruct", download=False))
except Exception:
    DEFAULT = os.path.expanduser("~/.cache/pyllm/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = list(range(1000, 1016))


def run_pyllm(path, threads, repeats, new):
    import numpy as np

    import pyllm

    m = pyllm.AutoModelForCausalLM.from_pretrained(path, n_threads=threads, n_ctx=512)
    rates = []
    for _ in range(repeats + 1):
        m.reset()
        tok = int(np.argmax(m.step(PROMPT)))
        t0 = time.perf_counter()
        for _ in range(new):
            tok = int(np.argmax(m.step([tok])))
        rates.append(new / (time.perf_counter() - t0))
    return rates[1:]  # the first run warms up


def run_llama_cpp(path, threads, repeats, new):
    import numpy as np
    from llama_cpp import Llama

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import llama_cpp_without_amx

    llama_cpp_without_amx()

    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False,
                logits_all=False)
    rates = []
    for _ in range(repeats + 1):
        llm.reset()
        llm.eval(PROMPT)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t0 = time.perf_counter()
        for _ in range(new):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        rates.append(new / (time.perf_counter() - t0))
    return rates[1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["pyllm", "llama_cpp"])
    ap.add_argument("--model", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=128)
    a = ap.parse_args()
    fn = run_pyllm if a.system == "pyllm" else run_llama_cpp
    rates = fn(a.model, a.threads, a.repeats, a.new_tokens)
    print(f"{a.system} threads={a.threads} decode tok/s median {statistics.median(rates):.1f} "
          f"runs {' '.join(f'{r:.1f}' for r in rates)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
