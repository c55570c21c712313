"""matmul / linear against float64 numpy over awkward shapes, on every ISA."""

from __future__ import annotations

import numpy as np
import pytest

import pyllm
from pyllm import _C, ops

SIZES = [1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 33]


def _check(out, ref, K):
    # fp32 accumulation over K terms of unit-variance products
    tol = 2e-6 * np.sqrt(K) * 8 + 1e-6
    assert out.dtype == np.float32
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max() / np.sqrt(K)))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_sgemm_awkward_shapes(isa, rng, trans_a, trans_b):
    for M in SIZES:
        for N in [1, 7, 9, 15, 16, 17, 33]:
            for K in [1, 7, 9, 33]:
                a = rng.standard_normal((M, K), dtype=np.float32)
                b = rng.standard_normal((K, N), dtype=np.float32)
                ref = a.astype(np.float64) @ b.astype(np.float64)
                aa = np.ascontiguousarray(a.T) if trans_a else a
                bb = np.ascontiguousarray(b.T) if trans_b else b
                _check(_C.matmul(aa, bb, trans_a=trans_a, trans_b=trans_b), ref, K)


@pytest.mark.parametrize(
    "M,K,N",
    [(1, 1023, 1023), (4, 1023, 777), (5, 300, 1023), (1023, 33, 9), (200, 1023, 200),
     (145, 257, 3100), (7, 4100, 33),
     # around the avx512 12x32 tile and its 16x16 packing transposes
     (12, 16, 32), (13, 17, 31), (24, 48, 64), (35, 47, 95), (37, 1000, 65)],
)
@pytest.mark.parametrize("trans_b", [False, True])
def test_sgemm_block_edges(isa, rng, M, K, N, trans_b):
    # shapes that cross the MC=144, KC=256, NC=3072 blocks and the GEMV cut-off
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    bb = np.ascontiguousarray(b.T) if trans_b else b
    _check(_C.matmul(a, bb, trans_b=trans_b), ref, K)


def test_matmul_ref_is_exact_oracle(rng):
    a = rng.standard_normal((9, 33), dtype=np.float32)
    b = rng.standard_normal((33, 7), dtype=np.float32)
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(_C.matmul_ref(a, b), ref)


def test_results_do_not_depend_on_thread_count(rng):
    a = rng.standard_normal((300, 500), dtype=np.float32)
    b = rng.standard_normal((500, 200), dtype=np.float32)
    before = pyllm.get_num_threads()
    try:
        pyllm.set_num_threads(1)
        one = ops.matmul(a, b)
        pyllm.set_num_threads(3)
        three = ops.matmul(a, b)
    finally:
        pyllm.set_num_threads(before)
    ref = a.astype(np.float64) @ b
    _check(one, ref, 500)
    _check(three, ref, 500)


@pytest.mark.parametrize(
    "ashape,bshape",
    [((5,), (5,)), ((5,), (5, 3)), ((4, 5), (5,)), ((2, 3, 4, 5), (5, 6)), ((3, 4, 5), (3, 5, 2)),
     ((1, 4, 5), (3, 5, 2)), ((2, 1, 4, 5), (3, 5, 6)), ((7,), (2, 7, 3)), ((2, 3, 7), (7,))],
)
def test_matmul_numpy_semantics(isa, rng, ashape, bshape):
    a = rng.standard_normal(ashape)
    b = rng.standard_normal(bshape)
    ref = np.matmul(a, b)
    out = ops.matmul(a, b)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_matmul_accepts_noncontiguous_and_float64(rng):
    a = rng.standard_normal((20, 30))[:, ::2]  # float64, strided
    b = rng.standard_normal((40, 15)).T.astype(np.float16)  # transposed view
    out = ops.matmul(a, b)
    np.testing.assert_allclose(out, a @ b.astype(np.float64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(isa, rng, bias):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 7, 33), dtype=np.float32)
    w = rng.standard_normal((17, 33), dtype=np.float32)
    b = rng.standard_normal(17, dtype=np.float32) if bias else None
    ref = torch.nn.functional.linear(
        torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b)
    ).numpy()
    np.testing.assert_allclose(ops.linear(x, w, b), ref, rtol=1e-5, atol=2e-5)


def test_empty_and_zero_k():
    assert ops.matmul(np.zeros((0, 3)), np.zeros((3, 4))).shape == (0, 4)
    np.testing.assert_array_equal(ops.matmul(np.zeros((2, 0)), np.zeros((0, 3))), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.ones((2, 3)), np.ones((4, 5)), "last dimension of a"),
        (np.ones((2, 3), dtype=np.int32), np.ones((3, 2)), "floating-point"),
        (np.ones((2, 3)), np.ones((3, 2), dtype=bool), "floating-point"),
        (np.float32(1.0), np.ones((3, 2)), "at least one dimension"),
        (np.ones((2, 2, 3)), np.ones((3, 3, 2)), "do not broadcast"),
    ],
)
def test_matmul_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        ops.matmul(a, b)


def test_linear_bad_input():
    with pytest.raises(ValueError, match="features"):
        ops.linear(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="bias"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match="2-D"):
        ops.linear(np.ones((2, 3)), np.ones(3))


def test_binding_layer_rejects_unconverted_input():
    # the private layer checks rather than converts: dtype, ndim, contiguity
    with pytest.raises(ValueError, match="float32"):
        _C.matmul(np.ones((2, 2)), np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.matmul(np.ones((2, 4), dtype=np.float32)[:, ::2], np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="2 dimensions"):
        _C.matmul(np.ones(2, dtype=np.float32), np.ones((2, 2), dtype=np.float32))
