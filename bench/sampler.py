# Time per token of pyllm's fused sampler against transformers' logits processors in torch, at the
# default model's vocabulary; prints a markdown table. Not a correctness test (tests/test_logits_process.py).
"""Usage: python bench/sampler.py [--vocab 49152] [--history 300] [--repeats 15]

Settings: temperature 0.7, top_k 50, top_p 0.9, repetition_penalty 1.1 over a
``--history``-token history, batch 1. Rows:

* pyllm fused: ``LogitsProcessorList.sample`` (one Cython pass per row);
* pyllm one by one: the same list applied processor by processor, then ``sample``;
* transformers: its processors in torch on the same logits, then
  ``torch.multinomial(softmax)`` as its generate() does.

Medians of interleaved runs (bench/common.py), so a busy machine slows all
rows alike. The budget is 5% of an ~8 ms decode step: 400 us.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyllm.generation.logits_process import build_logits_processors, sample  # noqa: E402

from common import interleaved_medians  # noqa: E402

SETTINGS = dict(temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.1)


def make_inputs(vocab: int, history: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # logits shaped like a model's: a few strong candidates over a broad low tail
    logits = (rng.standard_normal((1, vocab)) * 2.0).astype(np.float32)
    logits[0, rng.integers(0, vocab, 20)] += 8.0
    ids = rng.integers(0, vocab, size=(1, history))
    return logits, ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--history", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    logits, ids = make_inputs(args.vocab, args.history)
    procs = build_logits_processors(do_sample=True, **SETTINGS)
    assert procs._fused_plan() is not None
    gen = np.random.default_rng(0)

    fns = {
        "pyllm fused": lambda: procs.sample(ids, logits, gen),
        "pyllm one by one": lambda: sample(procs(ids, logits), gen),
    }
    versions = {"numpy": np.__version__}
    try:
        import torch
        import transformers
        from transformers.generation import logits_process as hf

        torch.set_num_threads(1)
        hf_procs = hf.LogitsProcessorList([
            hf.RepetitionPenaltyLogitsProcessor(SETTINGS["repetition_penalty"]),
            hf.TemperatureLogitsWarper(SETTINGS["temperature"]),
            hf.TopKLogitsWarper(SETTINGS["top_k"]),
            hf.TopPLogitsWarper(SETTINGS["top_p"]),
        ])
        t_logits, t_ids = torch.from_numpy(logits), torch.from_numpy(ids)
        t_gen = torch.Generator().manual_seed(0)

        def hf_step():
            scores = hf_procs(t_ids, t_logits)
            return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=t_gen)

        fns["transformers (torch, 1 thread)"] = hf_step
        versions.update(torch=torch.__version__, transformers=transformers.__version__)
    except ImportError as e:  # the bench extra has transformers; say so rather than fail
        print(f"(transformers row skipped: {e})", file=sys.stderr)

    med = interleaved_medians(fns, repeats=args.repeats)
    base = med.get("transformers (torch, 1 thread)")
    print(f"Sampling one token, V={args.vocab}, B=1, history {args.history}, "
          f"temperature 0.7, top_k 50, top_p 0.9, repetition_penalty 1.1 "
          f"({', '.join(f'{k} {v}' for k, v in versions.items())}; {os.cpu_count()} CPUs)\n")
    print("| sampler | us/token (median) | vs transformers | share of an 8 ms step |")
    print("| --- | ---: | ---: | ---: |")
    for name, sec in med.items():
        ratio = f"{base / sec:.1f}x faster" if base and name != "transformers (torch, 1 thread)" else "1.0x"
        print(f"| {name} | {sec * 1e6:.1f} | {ratio} | {sec / 8e-3:.1%} |")


if __name__ == "__main__":
    main()
