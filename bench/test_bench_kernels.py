"""pytest-benchmark entries for the kernels, pyllm and numpy side by side in
one group per shape: `pytest bench/ --benchmark-only`. The ratio table with
the memory-bandwidth figure comes from `python bench/kernels.py`."""

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
