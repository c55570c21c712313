"""Quantized matmul speed on SmolLM2-135M's shapes: decode (M=1) as GB/s of
weight bytes next to the read bandwidth measured in the same run, prefill
(M=512) as GFLOP/s next to numpy's fp32 matmul of the dequantized weights.

    python bench/quant.py [--threads 2] [--repeats 9]

Prints a markdown table. Not a correctness test (tests/test_quant.py is).
Decode weights rotate through copies totalling more than the L3 cache, as a
decoded token streams the whole model; "hot" reruns one copy from cache.
"""

from __future__ import annotations

import argparse
import os
import sys

# SmolLM2-135M: q/o (576,576), k/v (192,576), gate/up (1536,576), down
# (576,1536) in Q4_1; the tied output head (49152,576) in Q8_0. (N, K, type)
DECODE_SHAPES = [(576, 576, "Q4_1"), (192, 576, "Q4_1"), (1536, 576, "Q4_1"), (576, 1536, "Q4_1"),
                 (49152, 576, "Q8_0"), (1536, 576, "Q4_0"), (1536, 576, "Q8_0")]
PREFILL_SHAPES = [(576, 576, "Q4_1"), (192, 576, "Q4_1"), (1536, 576, "Q4_1"), (576, 1536, "Q4_1"),
                  (1536, 576, "Q8_0")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--stream-mb", type=int, default=256, help="decode weight copies, total MB")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pyllm
    from pyllm import _C, quant

    from common import interleaved_medians

    pyllm.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    info = pyllm.cpu_info()
    print(f"pyllm {pyllm.__version__}, isa {info['isa']}, {args.threads} threads, numpy {np.__version__}")
    print()

    def weights(N, K, name):
        """Random raw rows (N, row_bytes) with model-like scales, built in numpy."""
        raw = rng.integers(0, 256, (N, quant.row_bytes(name, K)), dtype=np.uint8)
        blocks = raw.reshape(-1, quant.TYPE_SIZES[name])
        blocks[:, 0:2] = np.array([0.01], np.float16).view(np.uint8)  # d
        if name == "Q4_1":
            blocks[:, 2:4] = np.array([-0.07], np.float16).view(np.uint8)  # m
        return raw

    probe = np.ones(128 * 1024 * 1024, dtype=np.float32)  # 512 MB

    def read():
        _C.sum(probe)

    def decode_times(w0, x, t_id, K):
        """Seconds per call: rotating through copies of w0 (streamed), one copy (hot), the probe read."""
        copies = [w0] + [w0.copy() for _ in range(max(1, args.stream_mb * 2**20 // w0.nbytes) - 1)]
        state = {"i": 0}

        def streamed():
            state["i"] = (state["i"] + 1) % len(copies)
            _C.qmatmul(x, copies[state["i"]], t_id, K)

        return interleaved_medians({"streamed": streamed, "hot": lambda: _C.qmatmul(x, w0, t_id, K), "read": read},
                                   args.repeats)  # the copies are freed on return

    print("| decode M=1 | (N,K) | weight MB | streamed | % of read bw | hot (cached) |")
    print("| --- | --- | --- | --- | --- | --- |")
    bws = []
    for N, K, name in DECODE_SHAPES:
        w0 = weights(N, K, name)
        x = rng.standard_normal((1, K), dtype=np.float32)
        t = decode_times(w0, x, quant.GGML_TYPES[name], K)
        bw = probe.nbytes / t["read"] / 1e9
        bws.append(bw)
        gbs = w0.nbytes / t["streamed"] / 1e9
        print(f"| {name} | ({N},{K}) | {w0.nbytes / 1e6:.2f} | {gbs:.1f} GB/s ({t['streamed'] * 1e6:.0f} us) "
              f"| {gbs / bw:.0%} | {w0.nbytes / t['hot'] / 1e9:.1f} GB/s ({t['hot'] * 1e6:.0f} us) |")
    print(f"| read bandwidth | 512 MB `_C.sum`, median over shapes | | {float(np.median(bws)):.1f} GB/s | 100% | |")
    print()

    M = 512
    print(f"| prefill M={M} | (N,K) | pyllm qmatmul | numpy fp32 (dequantized W) | ratio | pyllm fp32 sgemm |")
    print("| --- | --- | --- | --- | --- | --- |")
    for N, K, name in PREFILL_SHAPES:
        w = weights(N, K, name)
        wf = quant.dequantize(w, name, (N, K))
        x = rng.standard_normal((M, K), dtype=np.float32)
        t_id = quant.GGML_TYPES[name]
        t = interleaved_medians({"q": lambda x=x, w=w, t_id=t_id, K=K: _C.qmatmul(x, w, t_id, K),
                                 "numpy": lambda x=x, wf=wf: x @ wf.T,
                                 "sgemm": lambda x=x, wf=wf: _C.matmul(x, wf, trans_b=True)}, args.repeats)
        gf = {k: 2 * M * N * K / v / 1e9 for k, v in t.items()}
        print(f"| {name} | ({N},{K}) | {gf['q']:.1f} GFLOP/s | {gf['numpy']:.1f} GFLOP/s "
              f"| {gf['q'] / gf['numpy']:.2f}x | {gf['sgemm']:.1f} GFLOP/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
