"""Training throughput of pyllm's GPT-2 beside PyTorch (transformers
GPT2LMHeadModel + torch.optim.AdamW) in the same run: one full step each
(forward, backward, gradient clipping, AdamW), medians of interleaved steps,
tokens/s and model FLOP utilization against a measured fp32 sgemm rate.

    python bench/train.py [--threads 2] [--repeats 7] [--batch 8] [--seq 256]

Both start from the same weights (pyllm saves them, transformers loads them).
Not a correctness test (tests/test_gpt2.py is).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

HERE = Path(__file__).resolve().parent


def flops_per_token(cfg: Any, T: int) -> float:
    """Training FLOPs per token: 6 per weight of every matmul (lm_head
    included, embedding lookups not) plus 6 * 2 * L * T * C for the attention
    scores and their weighted sums (full T x T, as the usual MFU convention)."""
    C, L, V, F = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.inner_size
    matmul_weights = L * (C * 3 * C + C * C + 2 * C * F) + V * C
    return 6.0 * matmul_weights + 12.0 * L * T * C


def sgemm_rate(threads: int) -> float:
    """FLOP/s of a large fp32 matrix product (numpy's BLAS and torch, the
    faster one): the practical peak MFU is measured against."""
    import numpy as np
    import torch

    n = 1536
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    best = 0.0
    for fn in (lambda: a @ b, lambda: torch.mm(ta, tb)):
        fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best = max(best, 2.0 * n**3 / sorted(times)[len(times) // 2])
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per system (medians)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--n-embd", type=int, default=384)
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-head", type=int, default=6)
    args = parser.parse_args()
    # BLAS pools size themselves at import: fix them first
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch
    import transformers

    import pyllm

    sys.path.insert(0, str(HERE))
    from common import interleaved_medians

    torch.set_num_threads(args.threads)
    pyllm.set_num_threads(args.threads)
    B, T = args.batch, args.seq
    cfg = pyllm.GPT2Config(vocab_size=args.vocab, n_positions=T, n_embd=args.n_embd, n_layer=args.n_layer,
                           n_head=args.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=None, eos_token_id=None)
    model = pyllm.GPT2LMHeadModel(cfg, seed=0)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        hf = transformers.GPT2LMHeadModel.from_pretrained(d).float().train()
    rng = np.random.default_rng(0)
    seq = rng.integers(0, args.vocab, size=(B, T + 1))
    ids, labels = seq[:, :T].copy(), seq[:, 1:].copy()
    ids_t, labels_t = torch.from_numpy(ids), torch.from_numpy(labels)

    def groups(m: Any) -> Any:
        ps = list(m.parameters())
        return [{"params": [p for p in ps if p.ndim >= 2], "weight_decay": 0.1},
                {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0}]

    opt = pyllm.AdamW(model, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    opt_t = torch.optim.AdamW(groups(hf), lr=3e-4, betas=(0.9, 0.95))
    losses: Dict[str, float] = {}

    def step_pyllm() -> None:
        opt.zero_grad()
        losses.setdefault("pyllm", model.forward_backward(ids, labels))
        pyllm.clip_grad_norm_(model, 1.0)
        opt.step()

    def step_torch() -> None:
        opt_t.zero_grad(set_to_none=True)
        logits = hf(ids_t).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels_t.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt_t.step()
        losses.setdefault("torch", loss.item())

    fns: Dict[str, Callable[[], object]] = {"pyllm": step_pyllm, "torch": step_torch}
    secs = interleaved_medians(fns, repeats=args.repeats, warmup=args.warmup, min_time=0.0, settle=0.2)
    peak = sgemm_rate(args.threads)
    fpt = flops_per_token(cfg, T)

    print(f"GPT-2 vocab {args.vocab}, n_positions {T}, n_embd {args.n_embd}, n_layer {args.n_layer}, "
          f"n_head {args.n_head} ({model.num_parameters() / 1e6:.2f}M parameters), batch {B}x{T}, "
          f"{args.threads} threads, isa {pyllm.cpu_info()['isa']}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"first-step loss: pyllm {losses['pyllm']:.5f}, torch {losses['torch']:.5f}; "
          f"{fpt / 1e6:.1f} MFLOP per token; fp32 sgemm rate (MFU reference) {peak / 1e9:.1f} GFLOP/s")
    print()
    print("| system | ms / step | tokens/s | vs torch | MFU |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("pyllm", "torch"):
        tps = B * T / secs[name]
        print(f"| {name} | {secs[name] * 1e3:.0f} | {tps:,.0f} | {secs['torch'] / secs[name]:.2f}x | "
              f"{100 * tps * fpt / peak:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
