"""pytest-benchmark entries for the kernels, pyllm and numpy side by side in
one group per shape: `pytest bench/ --benchmark-only`. The ratio table with
the memory-bandwidth figure comes from `python bench/kernel_ops.py`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from pyllm import _C, ops  # noqa: E402

SHAPES = [(512, 576, 1536), (512, 1536, 576), (1024, 1024, 1024)]


@pytest.mark.parametrize("who", ["pyllm", "numpy"])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_sgemm(benchmark, who, M, K, N):
    benchmark.group = f"sgemm {M}x{K}x{N}"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    benchmark(lambda: _C.matmul(a, b) if who == "pyllm" else a @ b)


@pytest.mark.parametrize("who", ["pyllm", "numpy"])
def test_gemv_large(benchmark, who):
    benchmark.group = "gemv 1x4096x8192"
    rng = np.random.default_rng(0)
    b = rng.standard_normal((4096, 8192), dtype=np.float32)
    x = rng.standard_normal((1, 4096), dtype=np.float32)
    benchmark(lambda: _C.matmul(x, b) if who == "pyllm" else x @ b)


@pytest.mark.parametrize("who", ["pyllm", "numpy"])
def test_softmax_vocab(benchmark, who):
    benchmark.group = "softmax 64x49152"
    x = np.random.default_rng(0).standard_normal((64, 49152), dtype=np.float32)

    def numpy_softmax():
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    benchmark(lambda: ops.softmax(x) if who == "pyllm" else numpy_softmax())


@pytest.mark.parametrize("who", ["pyllm", "numpy"])
@pytest.mark.parametrize("direction", ["forward", "trans_b", "trans_a"])
def test_sgemm_training(benchmark, who, direction):
    # one GPT-2 Linear (384 -> 1536) over 2048 rows: y = x W, dx = dy W^T, dW += x^T dy
    benchmark.group = f"training sgemm 2048x384x1536 {direction}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 384), dtype=np.float32)
    w = rng.standard_normal((384, 1536), dtype=np.float32)
    dy = rng.standard_normal((2048, 1536), dtype=np.float32)
    out = {"forward": np.zeros((2048, 1536), np.float32), "trans_b": np.zeros((2048, 384), np.float32),
           "trans_a": np.zeros((384, 1536), np.float32)}[direction]
    if direction == "forward":
        fn = (lambda: _C.sgemm(out, x, w)) if who == "pyllm" else (lambda: np.matmul(x, w, out=out))
    elif direction == "trans_b":
        fn = (lambda: _C.sgemm(out, dy, w, trans_b=True)) if who == "pyllm" else (lambda: np.matmul(dy, w.T, out=out))
    else:
        fn = (lambda: _C.sgemm(out, x, dy, trans_a=True, accumulate=True)) if who == "pyllm" else (
            lambda: np.add(out, x.T @ dy, out=out))
    benchmark(fn)


def test_attention_training(benchmark):
    # forward (probabilities saved) and backward at the GPT-2 training shape
    benchmark.group = "training attention (8,256,1152) 6 heads"
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((8, 256, 1152), dtype=np.float32)
    dout = rng.standard_normal((8, 256, 384), dtype=np.float32)
    out, att = np.zeros((8, 256, 384), np.float32), np.zeros((8, 6, 256, 256), np.float32)
    dqkv = np.zeros_like(qkv)

    def step():
        _C.attention_forward(out, att, qkv, 6)
        _C.attention_backward(dqkv, dout, qkv, att, 6)

    benchmark(step)
