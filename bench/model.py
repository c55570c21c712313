"""Model speed on the default GGUF file, pyllm beside its peers in the same
run: load time, prefill (512-token prompt, then one token), greedy decode of
128 tokens, and each system's perplexity on the same text.

    python bench/model.py [--threads 2] [--repeats 3] [--peers transformers,llama_cpp,ctranslate2]

A peer that is not installed is skipped with a message. Medians of
--repeats runs. Not a correctness test (tests/test_llama.py is).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REF = HERE.parent / "tests" / "data" / "smollm2_reference.npz"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def perplexity_from_logits(logits: np.ndarray, ids: np.ndarray) -> float:
    lp = logits[:-1].astype(np.float64)
    lp = lp - lp.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    return float(np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean()))


class Row(dict):
    pass


def bench_pyllm(path: Path, prompt: np.ndarray, ids: np.ndarray, repeats: int, threads: int) -> Row:
    import pyllm

    t0 = time.perf_counter()
    model = pyllm.AutoModelForCausalLM.from_pretrained(path, n_threads=threads, n_ctx=1024)
    load = time.perf_counter() - t0

    def prefill():
        model.reset()
        model.step(prompt)
        model.step(prompt[:1])

    def decode():
        model.reset()
        model.step(prompt[:8])
        tok = int(prompt[8])
        for _ in range(128):
            tok = int(np.argmax(model.step([tok])))

    pf = median_time(prefill, repeats)
    dc = median_time(decode, repeats)
    ppl = perplexity_from_logits(model(ids).logits[0], ids)
    return Row(system=f"pyllm {pyllm.__version__} ({pyllm.cpu_info()['isa']})", load=load,
               prefill=len(prompt) / pf, decode=128 / dc, ppl=ppl)


def bench_transformers(path: Path, prompt: np.ndarray, ids: np.ndarray, repeats: int, threads: int) -> Row:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    load = time.perf_counter() - t0
    p = torch.tensor(prompt[None, :])

    def prefill():
        with torch.no_grad():
            out = model(p, use_cache=True)
            model(p[:, :1], past_key_values=out.past_key_values, use_cache=True)

    def decode():
        with torch.no_grad():
            model.generate(p[:, :8], max_new_tokens=128, min_new_tokens=128, do_sample=False)

    pf = median_time(prefill, repeats)
    dc = median_time(decode, max(1, repeats // 2))
    with torch.no_grad():
        logits = model(torch.tensor(ids[None, :])).logits[0].numpy()
    return Row(system=f"transformers {transformers.__version__} fp32", load=load, prefill=len(prompt) / pf,
               decode=128 / dc, ppl=perplexity_from_logits(logits, ids))


def bench_llama_cpp(path: Path, prompt: np.ndarray, ids: np.ndarray, repeats: int, threads: int) -> Row:
    import llama_cpp

    t0 = time.perf_counter()
    # speed runs keep only the last position's logits, as generation does
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, logits_all=False, verbose=False)
    load = time.perf_counter() - t0
    toks = [int(t) for t in prompt]

    def prefill():
        llm.reset()
        llm.eval(toks)
        llm.eval(toks[:1])

    def decode():
        llm.reset()
        llm.eval(toks[:8])
        tok = toks[8]
        for _ in range(128):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))

    pf = median_time(prefill, repeats)
    dc = median_time(decode, repeats)
    del llm
    scorer = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_batch=512,
                             logits_all=True, verbose=False)
    scorer.eval([int(t) for t in ids])
    logits = np.array(scorer.scores[: len(ids)])
    return Row(system=f"llama-cpp-python {llama_cpp.__version__}", load=load, prefill=len(prompt) / pf,
               decode=128 / dc, ppl=perplexity_from_logits(logits, ids))


PEERS: Dict[str, Callable[..., Row]] = {
    "transformers": bench_transformers,
    "llama_cpp": bench_llama_cpp,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--peers", default="transformers,llama_cpp")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from pyllm.hub import resolve_model_file

    path = resolve_model_file(args.model)
    ref = np.load(REF)
    ids = ref["ids"]
    prompt = np.resize(ids, 512).astype(np.int32)

    rows: List[Row] = [bench_pyllm(path, prompt, ids, args.repeats, args.threads)]
    for name in [p for p in args.peers.split(",") if p]:
        try:
            rows.append(PEERS[name](path, prompt, ids, args.repeats, args.threads))
        except ImportError as e:
            print(f"# {name}: skipped, not installed ({e})", file=sys.stderr)
    base = rows[0]
    print(f"{path.name}, {args.threads} threads, medians of {args.repeats}; perplexity on {len(ids)} tokens")
    print()
    print("| system | load s | prefill tok/s | decode tok/s | perplexity | pyllm prefill / decode ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = "" if r is base else f"{base['prefill'] / r['prefill']:.2f}x / {base['decode'] / r['decode']:.2f}x"
        print(f"| {r['system']} | {r['load']:.2f} | {r['prefill']:.0f} | {r['decode']:.1f} | {r['ppl']:.3f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
