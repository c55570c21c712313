"""Training-kernel speed against PyTorch (and numpy's BLAS for the GEMMs) in
the same run, at the shapes of the small GPT-2 training benchmark (B*T = 2048
rows, C = 384, 6 heads, MLP 1536): each Linear's product in its three
directions (forward, input gradient with trans_b, weight gradient with
trans_a accumulated), attention forward/backward, layernorm and GELU
backward.

    python bench/train_kernels.py [--threads 2] [--repeats 9] [--only gemm|ops]

Prints markdown tables, GFLOP/s (or GB/s) and the ratio to the faster peer.
Not a correctness test (tests/test_train_kernels.py is).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

Fns = dict[str, Callable[[], object]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", choices=["gemm", "ops"], default=None)
    args = parser.parse_args()
    # numpy's BLAS reads its thread count at import
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import interleaved_medians

    import pyllm
    from pyllm import _C

    pyllm.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    info = pyllm.cpu_info()
    print(f"pyllm {pyllm.__version__}, isa {info['isa']}, {args.threads} threads, numpy {np.__version__}, "
          f"torch {torch.__version__}")
    R, C, NH, T = 2048, 384, 6, 256

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    def linear_cases(R: int, IN: int, OUT: int) -> list[tuple[str, str, Fns]]:
        """The three products of one Linear (weight (IN, OUT)) for pyllm, numpy and torch."""
        x, w, dy = f32(R, IN), f32(IN, OUT), f32(R, OUT)
        y, dx, dw = np.zeros((R, OUT), np.float32), np.zeros((R, IN), np.float32), np.zeros((IN, OUT), np.float32)
        tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
        ty, tdx, tdw = torch.from_numpy(y.copy()), torch.from_numpy(dx.copy()), torch.from_numpy(dw.copy())
        return [
            ("forward", f"({R},{IN})@({IN},{OUT})", {
                "pyllm": lambda: _C.sgemm(y, x, w),
                "numpy": lambda: np.matmul(x, w, out=y),
                "torch": lambda: torch.mm(tx, tw, out=ty),
            }),
            ("input grad, trans_b", f"({R},{OUT})@({IN},{OUT})^T", {
                "pyllm": lambda: _C.sgemm(dx, dy, w, trans_b=True),
                "numpy": lambda: np.matmul(dy, w.T, out=dx),
                "torch": lambda: torch.mm(tdy, tw.t(), out=tdx),
            }),
            ("weight grad, trans_a, +=", f"({R},{IN})^T@({R},{OUT})", {
                "pyllm": lambda: _C.sgemm(dw, x, dy, trans_a=True, accumulate=True),
                "numpy": lambda: np.add(dw, x.T @ dy, out=dw),
                "torch": lambda: tdw.addmm_(tx.t(), tdy),
            }),
        ]

    if args.only in (None, "gemm"):
        print()
        print("| product | shape | pyllm GFLOP/s | numpy | torch | vs best |")
        print("| --- | --- | --- | --- | --- | --- |")
        # HF Conv1D layout: weight (IN, OUT); y = x @ W
        total: dict[str, float] = {"pyllm": 0.0, "numpy": 0.0, "torch": 0.0}
        for IN, OUT in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)]:
            cases = linear_cases(R, IN, OUT)
            for label, shape, fns in cases:
                t = interleaved_medians(fns, args.repeats)
                for k in total:
                    total[k] += t[k]
                gf = {k: 2 * R * IN * OUT / v / 1e9 for k, v in t.items()}
                best = max(gf["numpy"], gf["torch"])
                print(f"| {label} | {shape} | {gf['pyllm']:.1f} | {gf['numpy']:.1f} | {gf['torch']:.1f} "
                      f"| {gf['pyllm'] / best:.2f}x |")
        print(f"| all twelve, ms | | {total['pyllm'] * 1e3:.1f} | {total['numpy'] * 1e3:.1f} "
              f"| {total['torch'] * 1e3:.1f} | {min(total['numpy'], total['torch']) / total['pyllm']:.2f}x |")

    if args.only in (None, "ops"):
        B = R // T
        print()
        print("| op | shape | pyllm ms | torch ms | vs torch |")
        print("| --- | --- | --- | --- | --- |")
        qkv, dout = f32(B, T, 3 * C), f32(B, T, C)
        out, att = np.zeros((B, T, C), np.float32), np.zeros((B, NH, T, T), np.float32)
        dqkv = np.zeros_like(qkv)
        _C.attention_forward(out, att, qkv, NH)
        tq = torch.from_numpy(qkv).requires_grad_()
        tdout = torch.from_numpy(dout)

        def torch_attn_fwd() -> torch.Tensor:
            q, k, v = (z.view(B, T, NH, C // NH).transpose(1, 2) for z in tq.split(C, dim=-1))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return y.transpose(1, 2).reshape(B, T, C)

        def torch_attn_fwd_nograd() -> None:
            with torch.no_grad():
                torch_attn_fwd()

        def torch_attn_fwd_bwd() -> None:
            tq.grad = None
            torch_attn_fwd().backward(tdout)

        def pyllm_attn_fwd_bwd() -> None:
            _C.attention_forward(out, att, qkv, NH)
            _C.attention_backward(dqkv, dout, qkv, att, NH)

        x, w, b, mean, rstd = f32(R, C), f32(C), f32(C), np.zeros(R, np.float32), np.zeros(R, np.float32)
        ln_out, dx, dw, db, dy = np.zeros((R, C), np.float32), np.zeros((R, C), np.float32), np.zeros(C, np.float32), \
            np.zeros(C, np.float32), f32(R, C)
        _C.layernorm_forward(ln_out, mean, rstd, x, w, b, 1e-5)
        tx = torch.from_numpy(x).requires_grad_()
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        tdy = torch.from_numpy(dy)

        def torch_ln() -> None:
            tx.grad = tw.grad = tb.grad = None
            torch.nn.functional.layer_norm(tx, (C,), tw, tb, 1e-5).backward(tdy)

        def pyllm_ln() -> None:
            _C.layernorm_forward(ln_out, mean, rstd, x, w, b, 1e-5)
            _C.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd)

        h, dh = f32(R, 4 * C), f32(R, 4 * C)
        gh, dgh = np.zeros_like(h), np.zeros_like(h)
        th = torch.from_numpy(h).requires_grad_()
        tdh = torch.from_numpy(dh)

        def torch_gelu() -> None:
            th.grad = None
            torch.nn.functional.gelu(th, approximate="tanh").backward(tdh)

        def pyllm_gelu() -> None:
            _C.gelu_forward(gh, h)
            _C.gelu_backward(dgh, h, dh)

        rows = [
            ("attention forward", f"qkv ({B},{T},{3 * C}), {NH} heads",
             {"pyllm": lambda: _C.attention_forward(out, att, qkv, NH), "torch": torch_attn_fwd_nograd}),
            ("attention forward + backward", "same", {"pyllm": pyllm_attn_fwd_bwd, "torch": torch_attn_fwd_bwd}),
            ("layernorm forward + backward", f"({R},{C})", {"pyllm": pyllm_ln, "torch": torch_ln}),
            ("gelu forward + backward", f"({R},{4 * C})", {"pyllm": pyllm_gelu, "torch": torch_gelu}),
        ]
        for label, shape, fns in rows:
            t = interleaved_medians(fns, args.repeats)
            print(f"| {label} | {shape} | {t['pyllm'] * 1e3:.2f} | {t['torch'] * 1e3:.2f} "
                  f"| {t['torch'] / t['pyllm']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
