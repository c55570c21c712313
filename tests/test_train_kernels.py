"""Training kernels (pyllm._C, in place over caller buffers) against numpy in
float64, PyTorch autograd and central finite differences, on every ISA."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from pyllm import _C

torch = pytest.importorskip("torch")

F32 = np.float32
# (rows, channels): vector tails, one-element rows, and one big enough for threads
ROWS_COLS = [(1, 1), (1, 7), (3, 9), (2, 33), (5, 65), (4, 127), (97, 385)]


def tt(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(F32)


def numgrad(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the float64 scalar f() w.r.t. every entry of x (perturbed in place)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2 * h)
    return g


def close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    assert got.dtype == F32
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max(initial=0))))


# ---- sgemm


def _sgemm_check(rng: np.random.Generator, M: int, N: int, K: int, trans_a: bool, trans_b: bool,
                 accumulate: bool, with_bias: bool = False) -> None:
    a = randn(rng, M, K)
    b = randn(rng, K, N)
    c0 = randn(rng, M, N)
    bias = randn(rng, N) if with_bias else None
    want = a.astype(np.float64) @ b.astype(np.float64) + (c0 if accumulate else 0.0) + (bias if with_bias else 0.0)
    out = c0.copy()
    _C.sgemm(out, np.ascontiguousarray(a.T) if trans_a else a, np.ascontiguousarray(b.T) if trans_b else b,
             trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, bias=bias)
    # fp32 accumulation over K unit-variance products
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-5 * np.sqrt(K) + 1e-5)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_sgemm_awkward(isa, rng, trans_a, trans_b, accumulate):
    for M in [1, 2, 5, 7, 9, 13, 33]:
        for N in [1, 7, 9, 17, 33]:
            for K in [1, 7, 9, 33]:
                _sgemm_check(rng, M, N, K, trans_a, trans_b, accumulate)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", [(130, 67, 385), (37, 1000, 65), (300, 45, 129), (513, 97, 33)])
def test_sgemm_training_layouts(isa, rng, M, N, K, trans_a, trans_b):
    _sgemm_check(rng, M, N, K, trans_a, trans_b, True)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_sgemm_bias(isa, rng, trans_a, trans_b, accumulate):
    # the bias is added once per output, also across k blocks, thread blocks and the few-row paths
    for M, N, K in [(1, 9, 7), (3, 33, 65), (4, 17, 1), (7, 9, 33), (130, 67, 900), (600, 200, 40)]:
        _sgemm_check(rng, M, N, K, trans_a, trans_b, accumulate, with_bias=True)
    out = np.ones((3, 4), F32)
    _C.sgemm(out, np.zeros((3, 0), F32), np.zeros((0, 4), F32), accumulate=True, bias=np.arange(4, dtype=F32))
    np.testing.assert_array_equal(out, np.ones((3, 4)) + np.arange(4))


def test_sgemm_bad_input(rng):
    a, b = randn(rng, 4, 5), randn(rng, 5, 6)
    out = np.zeros((4, 6), F32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _C.sgemm(out, a, b, trans_b=True)
    with pytest.raises(ValueError, match="out must have shape"):
        _C.sgemm(np.zeros((6, 4), F32), a, b)
    with pytest.raises(ValueError, match="a must be float32"):
        _C.sgemm(out, a.astype(np.float64), b)
    with pytest.raises(ValueError, match="b must be C-contiguous"):
        _C.sgemm(out, a, np.asfortranarray(b))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _C.sgemm(np.zeros((6, 4), F32).T, a, b)
    with pytest.raises(ValueError, match="a must have 2 dimensions"):
        _C.sgemm(out, a.reshape(2, 2, 5), b)
    with pytest.raises(ValueError, match="overlap"):
        sq = randn(rng, 5, 5)
        _C.sgemm(sq, sq, sq)
    ro = np.zeros((4, 6), F32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        _C.sgemm(ro, a, b)
    with pytest.raises(ValueError, match="out must be a numpy array"):
        _C.sgemm([[0.0]], a, b)
    with pytest.raises(ValueError, match="bias must have shape"):
        _C.sgemm(out, a, b, bias=np.zeros(5, F32))
    with pytest.raises(ValueError, match="bias must be float32"):
        _C.sgemm(out, a, b, bias=np.zeros(6))


# ---- bias


@pytest.mark.parametrize("R,N", ROWS_COLS + [(300, 1152)])
def test_bias(isa, rng, R, N):
    x, bias, dout = randn(rng, R, N), randn(rng, N), randn(rng, R, N)
    out = x.copy()
    _C.bias_add(out, bias)
    close(out, x + bias, rtol=1e-6, atol=1e-7)
    # backward adds into a nonzero buffer
    g0 = randn(rng, N)
    dbias = g0.copy()
    _C.bias_backward(dbias, dout)
    close(dbias, g0 + dout.astype(np.float64).sum(0), atol=1e-5)
    # against autograd, and finite differences of sum(dout * (x + bias))
    bt = tt(bias).requires_grad_()
    (tt(x) + bt).backward(tt(dout))
    close(dbias - g0, bt.grad.numpy(), atol=1e-5)
    if R * N <= 400:
        b64, x64, d64 = bias.astype(np.float64), x.astype(np.float64), dout.astype(np.float64)
        fd = numgrad(lambda: float(((x64 + b64) * d64).sum()), b64)
        close(dbias - g0, fd, rtol=1e-4, atol=1e-5)


def test_bias_leading_dims_and_bad_input(rng):
    out = randn(rng, 2, 3, 4)
    bias = randn(rng, 4)
    want = out + bias
    _C.bias_add(out, bias)
    close(out, want)
    with pytest.raises(ValueError, match=r"out must have a last dimension of 4 \(N, the size of bias\)"):
        _C.bias_add(randn(rng, 3, 5), bias)
    with pytest.raises(ValueError, match="dbias must have 1 dimensions"):
        _C.bias_backward(randn(rng, 1, 4), randn(rng, 3, 4))
    with pytest.raises(ValueError, match="dout must be float32"):
        _C.bias_backward(bias, np.zeros((3, 4)))


# ---- encoder: token + position embeddings


@pytest.mark.parametrize("B,T,C,V", [(1, 1, 1, 1), (2, 7, 9, 5), (3, 9, 33, 11), (4, 64, 136, 7), (8, 33, 384, 65)])
def test_encoder(isa, rng, B, T, C, V):
    maxT = T + 3
    ids = rng.integers(0, V, (B, T))
    wte, wpe = randn(rng, V, C), randn(rng, maxT, C)
    out = np.full((B, T, C), np.nan, F32)
    _C.encoder_forward(out, ids, wte, wpe)
    close(out, wte[ids] + wpe[None, :T], rtol=1e-7, atol=1e-7)

    dout = randn(rng, B, T, C)
    g_wte, g_wpe = randn(rng, V, C), randn(rng, maxT, C)
    dwte, dwpe = g_wte.copy(), g_wpe.copy()
    _C.encoder_backward(dwte, dwpe, dout, ids)
    wte_t, wpe_t = tt(wte).requires_grad_(), tt(wpe).requires_grad_()
    (wte_t[tt(ids)] + wpe_t[:T][None]).backward(tt(dout))
    # many repeats of few tokens: the scatter must not lose updates to races
    close(dwte - g_wte, wte_t.grad.numpy(), atol=1e-5)
    close(dwpe - g_wpe, wpe_t.grad.numpy(), atol=1e-5)
    np.testing.assert_array_equal(dwpe[T:], g_wpe[T:])
    if B * T * C <= 300:
        wte64, wpe64, d64 = wte.astype(np.float64), wpe.astype(np.float64), dout.astype(np.float64)

        def loss() -> float:
            return float(((wte64[ids] + wpe64[None, :T]) * d64).sum())

        close(dwte - g_wte, numgrad(loss, wte64), rtol=1e-4, atol=1e-5)
        close(dwpe - g_wpe, numgrad(loss, wpe64), rtol=1e-4, atol=1e-5)


def test_encoder_bad_input(rng):
    wte, wpe = randn(rng, 5, 4), randn(rng, 3, 4)
    out = np.zeros((2, 3, 4), F32)
    with pytest.raises(ValueError, match=r"ids: id 5 .* out of range \[0, 5\)"):
        _C.encoder_forward(out, np.array([[0, 1, 2], [3, 4, 5]]), wte, wpe)
    with pytest.raises(ValueError, match=r"id -1 .* out of range"):
        _C.encoder_backward(np.zeros_like(wte), np.zeros_like(wpe), out, np.array([[0, 1, 2], [3, -1, 0]]))
    with pytest.raises(ValueError, match="ids must be int64"):
        _C.encoder_forward(out, np.zeros((2, 3), np.int32), wte, wpe)
    with pytest.raises(ValueError, match="wpe must be"):
        _C.encoder_forward(np.zeros((2, 4, 4), F32), np.zeros((2, 4), np.int64), wte, wpe)
    with pytest.raises(ValueError, match="out must have shape"):
        _C.encoder_forward(np.zeros((2, 3, 5), F32), np.zeros((2, 3), np.int64), wte, wpe)
    with pytest.raises(ValueError, match="dout must have shape"):
        _C.encoder_backward(np.zeros_like(wte), np.zeros_like(wpe), np.zeros((2, 3, 3), F32),
                            np.zeros((2, 3), np.int64))


# ---- layernorm


def _layernorm64(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


@pytest.mark.parametrize("R,C", ROWS_COLS)
def test_layernorm(isa, rng, R, C):
    eps = 1e-5
    x = randn(rng, R, C, scale=2.0) + 1.0
    w, b, dout = randn(rng, C), randn(rng, C), randn(rng, R, C)
    out, mean, rstd = (np.full(s, np.nan, F32) for s in [(R, C), (R,), (R,)])
    _C.layernorm_forward(out, mean, rstd, x, w, b, eps)
    x64 = x.astype(np.float64)
    close(out, _layernorm64(x64, w, b, eps), atol=2e-5)
    close(mean, x64.mean(-1), atol=1e-6)
    close(rstd, 1 / np.sqrt(x64.var(-1) + eps), rtol=1e-5)

    g0 = [randn(rng, R, C), randn(rng, C), randn(rng, C)]
    grads = [g.copy() for g in g0]
    _C.layernorm_backward(*grads, dout, x, w, mean, rstd)
    got = [g - g_init for g, g_init in zip(grads, g0)]
    xt, wt, bt = (tt(a).double().requires_grad_() for a in (x, w, b))
    torch.nn.functional.layer_norm(xt, (C,), wt, bt, eps).backward(tt(dout).double())
    for g, ref in zip(got, (xt.grad, wt.grad, bt.grad)):
        close(g, ref.numpy(), rtol=1e-4, atol=2e-5)
    # the scalar twin agrees too
    ref_grads = [np.zeros_like(g) for g in g0]
    _C.layernorm_backward_ref(*ref_grads, dout, x, w, mean, rstd)
    for g, ref in zip(got, ref_grads):
        close(g, ref, rtol=1e-4, atol=2e-5)
    if R * C <= 300:
        w64, b64, d64 = w.astype(np.float64), b.astype(np.float64), dout.astype(np.float64)

        def loss() -> float:
            return float((_layernorm64(x64, w64, b64, eps) * d64).sum())

        for g, p in zip(got, (x64, w64, b64)):
            close(g, numgrad(loss, p), rtol=1e-3, atol=1e-4)


def test_layernorm_bad_input(rng):
    x, w = randn(rng, 3, 4), randn(rng, 4)
    mean, rstd = np.zeros(3, F32), np.zeros(3, F32)
    with pytest.raises(ValueError, match="mean must have 3 elements"):
        _C.layernorm_forward(np.zeros_like(x), np.zeros(2, F32), rstd, x, w, w, 1e-5)
    with pytest.raises(ValueError, match=r"inp must have a last dimension of 5 \(C, the size of weight\)"):
        _C.layernorm_forward(np.zeros_like(x), mean, rstd, x, randn(rng, 5), randn(rng, 5), 1e-5)
    with pytest.raises(ValueError, match="bias must have shape"):
        _C.layernorm_forward(np.zeros_like(x), mean, rstd, x, w, randn(rng, 5), 1e-5)
    with pytest.raises(ValueError, match="dinp must have the shape of inp"):
        _C.layernorm_backward(np.zeros((4, 3), F32), np.zeros_like(w), np.zeros_like(w), x, x, w, mean, rstd)
    with pytest.raises(ValueError, match="dout must be C-contiguous"):
        _C.layernorm_backward(np.zeros_like(x), np.zeros_like(w), np.zeros_like(w), randn(rng, 4, 3).T, x, w,
                              mean, rstd)
    with pytest.raises(ValueError, match="overlap"):
        g = np.zeros(4, F32)
        _C.layernorm_backward(np.zeros_like(x), g, g, x, x, w, mean, rstd)


# ---- GELU (tanh approximation) and the residual add


def _gelu64(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("n", [1, 7, 9, 33, 1023, 40001])
def test_gelu(isa, rng, n):
    x = randn(rng, n, scale=3.0)
    x[: min(n, 6)] = [-30.0, 30.0, 0.0, -1e-8, 9.0, -9.0][: min(n, 6)]
    out = np.full(n, np.nan, F32)
    _C.gelu_forward(out, x)
    x64 = x.astype(np.float64)
    close(out, _gelu64(x64), rtol=1e-5, atol=1e-6)

    dout, g0 = randn(rng, n), randn(rng, n)
    dinp = g0.copy()
    _C.gelu_backward(dinp, x, dout)
    xt = tt(x).double().requires_grad_()
    torch.nn.functional.gelu(xt, approximate="tanh").backward(tt(dout).double())
    close(dinp - g0, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    # element-wise central differences of the float64 function
    h = 1e-6
    fd = (_gelu64(x64 + h) - _gelu64(x64 - h)) / (2 * h) * dout
    close(dinp - g0, fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7, 9, 33, 40001])
def test_residual(isa, rng, n):
    a, b = randn(rng, n), randn(rng, n)
    out = np.zeros(n, F32)
    _C.residual_forward(out, a, b)
    np.testing.assert_array_equal(out, a + b)
    _C.residual_forward(a, a, b)  # in place
    np.testing.assert_array_equal(a, out)


def test_elementwise_bad_input(rng):
    x = randn(rng, 3, 4)
    with pytest.raises(ValueError, match="out must have as many elements as inp"):
        _C.gelu_forward(np.zeros(11, F32), x)
    with pytest.raises(ValueError, match="dout must have as many elements as inp"):
        _C.gelu_backward(np.zeros_like(x), x, np.zeros(13, F32))
    with pytest.raises(ValueError, match="inp must be float32"):
        _C.gelu_forward(np.zeros_like(x), x.astype(np.float16))
    with pytest.raises(ValueError, match="b must have as many elements as a"):
        _C.residual_forward(np.zeros_like(x), x, np.zeros(5, F32))


# ---- cross-entropy


@pytest.mark.parametrize("R,V", [(1, 1), (1, 7), (3, 9), (9, 33), (33, 65), (70, 1023)])
def test_crossentropy(isa, rng, R, V):
    logits = randn(rng, R, V, scale=4.0)
    targets = rng.integers(0, V, R)
    targets[::3] = -100
    losses = np.full(R, np.nan, F32)
    _C.crossentropy_forward(losses, logits, targets)
    want = torch.nn.functional.cross_entropy(tt(logits).double(), tt(targets), reduction="none").numpy()
    close(losses, want, rtol=1e-5, atol=1e-5)
    assert (losses[targets == -100] == 0).all()

    valid = int((targets != -100).sum())
    dloss = 1.0 / max(valid, 1)
    dlogits = np.full((R, V), np.nan, F32)  # written, not accumulated
    _C.crossentropy_backward(dlogits, logits, targets, dloss)
    lt = tt(logits).double().requires_grad_()
    if valid:
        torch.nn.functional.cross_entropy(lt, tt(targets)).backward()  # mean over valid targets
        ref = lt.grad.numpy()
    else:
        ref = np.zeros((R, V))
    close(dlogits, ref, rtol=1e-5, atol=1e-6)
    # in place: dlogits may be the logits buffer
    inplace = logits.copy()
    _C.crossentropy_backward(inplace, inplace, targets, dloss)
    np.testing.assert_array_equal(inplace, dlogits)
    if R * V <= 300:
        l64 = logits.astype(np.float64)

        def loss() -> float:
            m = l64.max(-1, keepdims=True)
            lse = np.log(np.exp(l64 - m).sum(-1)) + m[:, 0]
            keep = targets != -100
            return float((lse - l64[np.arange(R), np.where(keep, targets, 0)])[keep].sum() * dloss)

        close(dlogits, numgrad(loss, l64), rtol=1e-4, atol=1e-6)


def test_crossentropy_bad_input(rng):
    logits = randn(rng, 3, 5)
    losses = np.zeros(3, F32)
    with pytest.raises(ValueError, match=r"targets: 5 at row 1 is neither in \[0, 5\) nor the ignore index"):
        _C.crossentropy_forward(losses, logits, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match="targets: -1 at row 2"):
        _C.crossentropy_backward(np.zeros_like(logits), logits, np.array([0, 1, -1]), 1.0)
    with pytest.raises(ValueError, match="targets must have shape"):
        _C.crossentropy_forward(losses, logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="targets must be int64"):
        _C.crossentropy_forward(losses, logits, np.array([0, 1, 2], np.int32))
    with pytest.raises(ValueError, match="losses must have shape"):
        _C.crossentropy_forward(np.zeros(4, F32), logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dlogits must be logits itself or not overlap"):
        big = randn(rng, 4, 5)
        _C.crossentropy_backward(big[1:], big[:3], np.array([0, 1, 2]), 1.0)


# ---- optimizer and gradient-norm helpers


@pytest.mark.parametrize("n", [1, 7, 33, 1000, 40003])
def test_adamw_matches_torch(isa, rng, n):
    lr, betas, eps, wd = 3e-3, (0.9, 0.95), 1e-8, 0.1
    p = randn(rng, n)
    pt = tt(p.copy()).requires_grad_()
    opt = torch.optim.AdamW([pt], lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    m, v = np.zeros(n, F32), np.zeros(n, F32)
    for step in range(1, 8):
        g = randn(rng, n, scale=0.1 * step)
        if step == 3:
            g[: n // 2] = 0.0  # zero gradients still decay and move by momentum
        pt.grad = tt(g.copy())
        opt.step()
        _C.adamw_step(p, g, m, v, lr, betas[0], betas[1], eps, wd, step)
        state = opt.state[pt]
        # 1e-6 relative to each array's scale: m cancels (one ulp of 0.1 is 7e-9)
        for got, want in [(p, pt.detach().numpy()), (m, state["exp_avg"].numpy()), (v, state["exp_avg_sq"].numpy())]:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))


def test_adamw_bad_input(rng):
    p, g, m, v = (np.zeros(5, F32) for _ in range(4))
    with pytest.raises(ValueError, match="step must be >= 1"):
        _C.adamw_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0)
    with pytest.raises(ValueError, match="m must have as many elements as param"):
        _C.adamw_step(p, g, np.zeros(4, F32), v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="separate buffers"):
        _C.adamw_step(p, g, m, m, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="beta2 must be in"):
        _C.adamw_step(p, g, m, v, 1e-3, 0.9, 1.0, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="grad must be float32"):
        _C.adamw_step(p, g.astype(np.float64), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


@pytest.mark.parametrize("n", [0, 1, 7, 33, 1023, 100003])
def test_sumsq_and_scale(isa, rng, n):
    x = randn(rng, n, scale=3.0)
    assert _C.sumsq(x) == pytest.approx(float((x.astype(np.float64) ** 2).sum()), rel=1e-6, abs=1e-12)
    y = x.copy()
    _C.scale_(y, 0.37)
    np.testing.assert_array_equal(y, x * F32(0.37))
    with pytest.raises(ValueError, match="x must be float32"):
        _C.sumsq(x.astype(np.float64))
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="x must be writeable"):
        _C.scale_(ro, 2.0)


# ---- causal self-attention over packed qkv, probabilities saved


def _attention64(qkv: np.ndarray, NH: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 numpy reference: qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (qkv[..., i * C : (i + 1) * C].reshape(B, T, NH, C // NH).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(C // NH)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    att = np.exp(s - s.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C), att


ATTN_SHAPES = [(1, 1, 1, 1), (1, 7, 3, 1), (2, 9, 12, 3), (1, 33, 20, 2), (2, 50, 48, 4), (2, 97, 96, 6),
               (1, 130, 128, 2)]


@pytest.mark.parametrize("B,T,C,NH", ATTN_SHAPES)
def test_attention(isa, rng, B, T, C, NH):
    qkv = randn(rng, B, T, 3 * C)
    out, att = np.full((B, T, C), np.nan, F32), np.full((B, NH, T, T), np.nan, F32)
    _C.attention_forward(out, att, qkv, NH)
    want_out, want_att = _attention64(qkv.astype(np.float64), NH)
    close(out, want_out, atol=2e-5)
    close(att, want_att, atol=2e-6)
    assert (att[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
    ref_out, ref_att = np.zeros_like(out), np.zeros_like(att)
    _C.attention_forward_ref(ref_out, ref_att, qkv, NH)
    close(ref_out, want_out, atol=2e-6)
    close(ref_att, want_att, atol=2e-7)

    dout, g0 = randn(rng, B, T, C), randn(rng, B, T, 3 * C)
    dqkv = g0.copy()
    _C.attention_backward(dqkv, dout, qkv, att, NH)
    qt = tt(qkv).double().requires_grad_()
    q, k, v = (x.reshape(B, T, NH, C // NH).transpose(1, 2) for x in qt.split(C, dim=-1))
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    y.transpose(1, 2).reshape(B, T, C).backward(tt(dout).double())
    close(dqkv - g0, qt.grad.numpy(), rtol=1e-4, atol=5e-5)
    ref = g0.copy()
    _C.attention_backward_ref(ref, dout, qkv, att, NH)
    close(ref - g0, qt.grad.numpy(), rtol=1e-4, atol=2e-5)
    if B * T * C <= 300:
        q64, d64 = qkv.astype(np.float64), dout.astype(np.float64)
        fd = numgrad(lambda: float((_attention64(q64, NH)[0] * d64).sum()), q64)
        close(dqkv - g0, fd, rtol=1e-3, atol=1e-4)


def test_attention_gpt2_shape_threads(rng):
    # the training shape's heads (B*NH units over the threads), HS 64, T past one row block
    B, T, C, NH = 2, 100, 384, 6
    qkv = randn(rng, B, T, 3 * C)
    out, att = np.zeros((B, T, C), F32), np.zeros((B, NH, T, T), F32)
    _C.attention_forward(out, att, qkv, NH)
    want_out, want_att = _attention64(qkv.astype(np.float64), NH)
    close(out, want_out, atol=2e-5)
    close(att, want_att, atol=2e-6)
    dout = randn(rng, B, T, C)
    dqkv, ref = np.zeros_like(qkv), np.zeros_like(qkv)
    _C.attention_backward(dqkv, dout, qkv, att, NH)
    _C.attention_backward_ref(ref, dout, qkv, att, NH)
    close(dqkv, ref, rtol=1e-4, atol=2e-5)


def test_attention_bad_input(rng):
    qkv = randn(rng, 2, 5, 12)
    out, att = np.zeros((2, 5, 4), F32), np.zeros((2, 2, 5, 5), F32)
    with pytest.raises(ValueError, match="multiple of n_head=3"):
        _C.attention_forward(out, np.zeros((2, 3, 5, 5), F32), qkv, 3)
    with pytest.raises(ValueError, match="n_head must be >= 1"):
        _C.attention_forward(out, att, qkv, 0)
    with pytest.raises(ValueError, match="att must have shape"):
        _C.attention_forward(out, np.zeros((2, 2, 5, 4), F32), qkv, 2)
    with pytest.raises(ValueError, match="out must have shape"):
        _C.attention_forward(np.zeros((2, 5, 12), F32), att, qkv, 2)
    with pytest.raises(ValueError, match="qkv must have 3 dimensions"):
        _C.attention_forward(out, att, qkv.reshape(10, 12), 2)
    with pytest.raises(ValueError, match="separate buffers"):
        _C.attention_forward(qkv.reshape(-1)[:40].reshape(2, 5, 4), att, qkv, 2)
    with pytest.raises(ValueError, match="dqkv must have shape"):
        _C.attention_backward(np.zeros((2, 5, 4), F32), out, qkv, att, 2)
    with pytest.raises(ValueError, match="dout must be float32"):
        _C.attention_backward(np.zeros_like(qkv), out.astype(np.float64), qkv, att, 2)
