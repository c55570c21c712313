"""Kernel speed against numpy's BLAS in the same run: fp32 GEMM, GEMV on a
matrix larger than L3 next to the measured DRAM read bandwidth.

    python bench/kernel_ops.py [--threads 2] [--repeats 15]

Prints a markdown table (the README's). Not a correctness test.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    # numpy's BLAS reads its thread count at import
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pyllm
    from pyllm import _C

    from common import interleaved_medians

    pyllm.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    info = pyllm.cpu_info()
    print(f"pyllm {pyllm.__version__}, isa {info['isa']}, {args.threads} threads, numpy {np.__version__}")
    print()
    print("| op | shape | pyllm | numpy | ratio |")
    print("| --- | --- | --- | --- | --- |")

    for M, K, N in [(512, 576, 1536), (512, 1536, 576), (1024, 1024, 1024)]:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        t = interleaved_medians({"pyllm": lambda a=a, b=b: _C.matmul(a, b), "numpy": lambda a=a, b=b: a @ b},
                                args.repeats)
        gf = {k: 2 * M * K * N / v / 1e9 for k, v in t.items()}
        print(f"| sgemm | ({M},{K})@({K},{N}) | {gf['pyllm']:.1f} GFLOP/s | {gf['numpy']:.1f} GFLOP/s "
              f"| {gf['pyllm'] / gf['numpy']:.2f}x |")
        # the Linear-weight layout: x (M,K) against weight (N,K)
        w = np.ascontiguousarray(b.T)
        t = interleaved_medians(
            {"pyllm": lambda a=a, w=w: _C.matmul(a, w, trans_b=True), "numpy": lambda a=a, w=w: a @ w.T}, args.repeats
        )
        gf = {k: 2 * M * K * N / v / 1e9 for k, v in t.items()}
        print(f"| linear | ({M},{K})@({N},{K})^T | {gf['pyllm']:.1f} GFLOP/s | {gf['numpy']:.1f} GFLOP/s "
              f"| {gf['pyllm'] / gf['numpy']:.2f}x |")

    # memory-bound: the matrix is 128 MB, four times this CPU's L3
    K, N = 4096, 8192
    big = rng.standard_normal((K, N), dtype=np.float32)
    x = rng.standard_normal((1, K), dtype=np.float32)
    probe = np.ones(128 * 1024 * 1024, dtype=np.float32)  # 512 MB
    t = interleaved_medians(
        {"gemv": lambda: _C.matmul(x, big), "gemv_t": lambda: _C.matmul(x, big.reshape(N, K), trans_b=True),
         "numpy": lambda: x @ big, "read": lambda: _C.sum(probe)},
        max(5, args.repeats // 2),
    )
    bw = probe.nbytes / t["read"] / 1e9
    for key, label in [("gemv", f"(1,{K})@({K},{N})"), ("gemv_t", f"(1,{K})@({N},{K})^T")]:
        gbs = big.nbytes / t[key] / 1e9
        print(f"| gemv | {label} | {gbs:.1f} GB/s ({gbs / bw:.0%} of read bandwidth) "
              f"| {big.nbytes / t['numpy'] / 1e9:.1f} GB/s | {t['numpy'] / t[key]:.2f}x |")
    print(f"| read bandwidth | 512 MB sum, {args.threads} threads | {bw:.1f} GB/s | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
