"""GPT-2 generation speed: pyllm's GPT2LMHeadModel (the decoder runtime)
against transformers' GPT2LMHeadModel (torch fp32) on the same weights, a
model of the README's Shakespeare example's shape (4 layers, 128 wide,
84 characters, 128 positions; 0.82M parameters), greedy, interleaved runs.

    OPENBLAS_CORETYPE= python bench/gpt2_generate.py [--tokens 120] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

import pyllm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = pyllm.GPT2Config(vocab_size=84, n_positions=128, n_embd=128, n_layer=4, n_head=4)
    model = pyllm.GPT2LMHeadModel(cfg, seed=0)
    prompt = [5, 17, 33, 2]
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d).float().eval()
    ours_t, hf_t = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.reset()
        out = model.generate(prompt, max_new_tokens=args.tokens, do_sample=False)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt]), max_new_tokens=args.tokens, do_sample=False,
                              min_new_tokens=args.tokens, pad_token_id=0)
        hf_t.append(time.perf_counter() - t0)
    same = np.asarray(out).reshape(-1).tolist() == ref[0].tolist()
    ours, theirs = args.tokens / statistics.median(ours_t), args.tokens / statistics.median(hf_t)
    print(f"cpu: {pyllm.cpu_info()['isa']}, threads {pyllm.get_num_threads()}")
    print(f"pyllm {ours:.0f} tok/s, transformers {theirs:.0f} tok/s, ratio {ours / theirs:.2f}x; "
          f"same greedy tokens: {same}")


if __name__ == "__main__":
    main()
