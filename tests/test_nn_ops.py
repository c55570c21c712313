"""Row-wise and element-wise ops against numpy (float64) and PyTorch, on every ISA."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm import ops

torch = pytest.importorskip("torch")

# rows x cols covering vector tails (8), block edges (256) and long rows
SHAPES = [(1, 1), (1, 7), (3, 9), (2, 33), (5, 255), (4, 257), (2, 1023), (3, 4099), (1, 49152)]


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax(isa, rng, shape):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    ref = torch.softmax(t(x).double(), dim=-1).numpy()
    out = ops.softmax(x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax(isa, rng, shape):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    ref = torch.log_softmax(t(x).double(), dim=-1).numpy()
    np.testing.assert_allclose(ops.log_softmax(x), ref, rtol=1e-5, atol=2e-5)


def test_softmax_axis_and_extremes(isa):
    x = np.array([[0.0, -np.inf, 1000.0], [-1000.0, -np.inf, -1001.0]], dtype=np.float32)
    for axis in (0, 1, -1):
        ref = torch.softmax(t(x).double(), dim=axis).numpy()
        np.testing.assert_allclose(ops.softmax(x, axis=axis), ref, rtol=1e-6, atol=1e-30)
    # a row of all -inf has no distribution: NaN, as torch
    allmasked = np.full((1, 9), -np.inf, dtype=np.float32)
    assert np.isnan(ops.softmax(allmasked)).all()
    assert np.isnan(torch.softmax(t(allmasked), -1).numpy()).all()
    with pytest.raises(ValueError, match="out of bounds"):
        ops.softmax(x, axis=2)


@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm(isa, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    # HF LlamaRMSNorm, in float32
    xt = t(x)
    ref = t(w) * (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + 1e-6))
    np.testing.assert_allclose(ops.rms_norm(x, w, 1e-6), ref.numpy(), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(isa, rng, shape, affine):
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    C = shape[-1]
    w = rng.standard_normal(C).astype(np.float32) if affine else None
    b = rng.standard_normal(C).astype(np.float32) if affine else None
    ref = torch.nn.functional.layer_norm(
        t(x).double(), (C,), None if w is None else t(w).double(), None if b is None else t(b).double(), 1e-5
    ).numpy()
    np.testing.assert_allclose(ops.layer_norm(x, w, b, 1e-5), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", [1, 7, 9, 33, 1023, 4099])
def test_gelu(isa, rng, approximate, n):
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    ref = torch.nn.functional.gelu(t(x).double(), approximate=approximate).numpy()
    np.testing.assert_allclose(ops.gelu(x, approximate), ref, rtol=1e-5, atol=1e-6)


def test_gelu_extremes(isa):
    x = np.array([-100.0, -20.0, -1e-8, 0.0, 1e-8, 20.0, 100.0], dtype=np.float32)
    for approx in ("none", "tanh"):
        ref = torch.nn.functional.gelu(t(x), approximate=approx).numpy()
        np.testing.assert_allclose(ops.gelu(x, approx), ref, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(x, "fast")


@pytest.mark.parametrize("n", [1, 7, 9, 33, 1023, 4099])
def test_silu(isa, rng, n):
    x = (rng.standard_normal(n) * 6).astype(np.float32)
    x[:3] = [-100.0, 100.0, 0.0][: min(3, n)]
    ref = torch.nn.functional.silu(t(x).double()).numpy()
    np.testing.assert_allclose(ops.silu(x), ref, rtol=1e-5, atol=1e-6)


def _hf_rope(x, pos, theta):
    # the HF llama rotary embedding (rotate_half layout), all in float32
    HS = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.int64).float() / HS))
    freqs = torch.from_numpy(pos).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    xt = t(x)
    rot = torch.cat((-xt[..., HS // 2 :], xt[..., : HS // 2]), dim=-1)
    return (xt * emb.cos() + rot * emb.sin()).numpy()


@pytest.mark.parametrize("HS", [2, 8, 14, 64, 130])
@pytest.mark.parametrize("theta", [10000.0, 100000.0])
def test_rope_matches_hf(isa, rng, HS, theta):
    x = rng.standard_normal((2, 3, 37, HS)).astype(np.float32)
    pos = np.arange(37, dtype=np.int64) * 13  # up to position 468
    # angles are rounded to fp32 as in HF; at position 468 one ulp of the
    # angle is 3e-5, which bounds how closely two fp32 implementations agree
    np.testing.assert_allclose(ops.rope(x, pos, theta), _hf_rope(x, pos, theta), rtol=1e-5, atol=5e-5)


def test_rope_interleaved(isa, rng):
    x = rng.standard_normal((4, 9, 16)).astype(np.float32)
    pos = np.arange(3, 12)
    # interleaved == rotate-half on the de-interleaved layout
    perm = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2)])
    want = np.empty_like(x)
    want[..., perm] = ops.rope(x[..., perm], pos, 500.0)
    np.testing.assert_allclose(ops.rope(x, pos, 500.0, interleaved=True), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ops.rope(x, None, 500.0), ops.rope(x, np.arange(9), 500.0))


def test_rope_bad_input():
    with pytest.raises(ValueError, match="even"):
        ops.rope(np.ones((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="positions"):
        ops.rope(np.ones((3, 4), dtype=np.float32), np.arange(4))
    with pytest.raises(ValueError, match="integer"):
        ops.rope(np.ones((3, 4), dtype=np.float32), np.arange(3.0))


def test_embedding(rng):
    table = rng.standard_normal((11, 5)).astype(np.float32)
    ids = np.array([[0, 10, 3], [3, 3, 1]], dtype=np.int32)
    np.testing.assert_array_equal(ops.embedding(ids, table), table[ids])
    for bad in (11, -1):
        with pytest.raises(ValueError, match="out of range"):
            ops.embedding(np.array([1, bad]), table)
    with pytest.raises(ValueError, match="integer"):
        ops.embedding(np.array([1.0]), table)


def test_norm_bad_input():
    with pytest.raises(ValueError, match="weight"):
        ops.rms_norm(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="bias"):
        ops.layer_norm(np.ones((2, 4)), np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match="floating"):
        ops.softmax(np.ones(4, dtype=np.int64))
    with pytest.raises(ValueError, match="at least one dimension"):
        ops.rms_norm(np.float32(1.0), np.ones(1))


def test_empty_inputs():
    assert ops.softmax(np.zeros((0, 5))).shape == (0, 5)
    assert ops.gelu(np.zeros(0)).shape == (0,)
    assert ops.layer_norm(np.zeros((0, 5))).shape == (0, 5)
