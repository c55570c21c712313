# Zero-size and broadcast inputs to pyllm.ops: empty results as numpy/torch
# give them, no per-row loop over empty rows, no copy of broadcast batches.
# Not the numerics of non-empty inputs (test_nn_ops.py, test_matmul.py).

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from pyllm import ops


def _run_child(code: str, timeout: float = 20.0, mem_mb: int = 1500) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter with a timeout and an address-space
    cap, so a hang, a crash or a runaway allocation fails the test instead of
    the test run."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))

    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True, text=True, timeout=timeout, preexec_fn=limit, env=env,
            cwd=tempfile.gettempdir(),  # the installed pyllm, not the source tree beside the tests
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"child did not finish within {timeout} s:\n{code}")


def _huge_empty(rows: int) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(np.empty(1, np.float32), (rows, 0), (0, 4))


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "rms_norm", "layer_norm"])
def test_rowwise_empty_rows_return_at_once(op):
    # 2**40 rows of nothing: one pass over the rows takes minutes; the
    # answer is an empty array of the same shape
    r = _run_child(f"""
        import numpy as np
        from pyllm import ops
        x = np.lib.stride_tricks.as_strided(np.empty(1, np.float32), (2**40, 0), (0, 4))
        args = (np.empty(0, np.float32),) if "{op}" == "rms_norm" else ()
        out = ops.{op}(x, *args)
        assert out.shape == (2**40, 0) and out.dtype == np.float32, out.shape
        print("ok")
    """, timeout=20)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_rowwise_empty_rows_other_axis():
    r = _run_child("""
        import numpy as np
        from pyllm import ops
        # the reduced axis (0) is empty, the other one huge
        x = np.broadcast_to(np.empty((0, 1), np.float32), (0, 2**40))
        assert ops.softmax(x, axis=0).shape == (0, 2**40)
        assert ops.log_softmax(np.zeros((0, 3, 0)), axis=1).shape == (0, 3, 0)
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_rope_empty():
    assert ops.rope(np.zeros((2, 0, 4))).shape == (2, 0, 4)
    assert ops.rope(np.zeros((2, 3, 0))).shape == (2, 3, 0)
    assert ops.rope(np.zeros((0, 3, 4)), positions=np.arange(3)).shape == (0, 3, 4)
    r = _run_child("""
        import numpy as np
        from pyllm import ops
        x = np.lib.stride_tricks.as_strided(np.empty(1, np.float32), (2**40, 1, 0), (0, 0, 4))
        assert ops.rope(x).shape == (2**40, 1, 0)
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.parametrize(
    "qs, ks",
    [
        ((1, 0, 3, 4), (1, 2, 3, 4)),  # no query heads (was SIGFPE)
        ((1, 0, 3, 4), (1, 0, 5, 4)),  # no heads at all
        ((0, 2, 3, 4), (0, 2, 3, 4)),  # no batch
        ((1, 2, 0, 4), (1, 2, 3, 4)),  # no queries
        ((1, 2, 3, 4), (1, 2, 0, 4)),  # no keys: zeros
        ((1, 2, 3, 0), (1, 2, 5, 0)),  # head size 0
        ((2, 3, 4), (2, 0, 4)),  # 3-D, no keys
    ],
)
def test_sdpa_zero_size_matches_torch(qs, ks):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    q = rng.standard_normal(qs).astype(np.float32)
    k = rng.standard_normal(ks).astype(np.float32)
    v = rng.standard_normal(ks).astype(np.float32)
    r = _run_child(f"""
        import numpy as np
        from pyllm import ops
        q, k, v = np.ones({qs}, np.float32), np.ones({ks}, np.float32), np.ones({ks}, np.float32)
        print(ops.scaled_dot_product_attention(q, k, v).shape)
    """)
    assert r.returncode == 0, f"child died with {r.returncode}: {r.stderr[-2000:]}"
    ours = ops.scaled_dot_product_attention(q, k, v)
    tq, tk, tv = torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v)
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, enable_gqa=True).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_sdpa_zero_size_with_mask_and_causal():
    q, k = np.zeros((1, 2, 0, 4), np.float32), np.ones((1, 2, 3, 4), np.float32)
    assert ops.scaled_dot_product_attention(q, k, k, attn_mask=np.ones((0, 3), bool)).shape == (1, 2, 0, 4)
    assert ops.scaled_dot_product_attention(q, k, k, is_causal=True).shape == (1, 2, 0, 4)
    with pytest.raises(ValueError, match="attn_mask"):
        ops.scaled_dot_product_attention(q, k, k, attn_mask=np.ones((2, 3), bool))


def test_sdpa_query_heads_without_key_heads_is_refused():
    q, k = np.ones((1, 2, 3, 4)), np.ones((1, 0, 5, 4))
    with pytest.raises(ValueError, match="key/value heads"):
        ops.scaled_dot_product_attention(q, k, k)


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((4, 2, 0), (4, 0, 3)),
        ((0,), (2, 0, 3)),
        ((2, 0), (0,)),
        ((0, 2, 3), (1, 3, 4)),
        ((3, 1, 2, 3), (1, 5, 3, 0)),
        ((2, 3, 0), (0, 4)),
        ((1, 0, 3), (7, 3, 2)),
        ((5, 0, 2, 3), (3, 4)),
    ],
)
def test_matmul_zero_size_matches_numpy(sa, sb):
    a, b = np.ones(sa), np.ones(sb)
    ref = a @ b
    ours = ops.matmul(a, b)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((1, 5, 7), (6, 7, 3)),
        ((6, 5, 7), (1, 7, 3)),
        ((2, 1, 5, 7), (3, 7, 3)),
        ((4, 1, 2, 3), (1, 5, 3, 2)),
        ((5, 7), (2, 3, 7, 4)),
        ((7,), (2, 3, 7, 4)),
        ((2, 3, 5, 7), (7,)),
    ],
)
def test_matmul_broadcast_matches_numpy(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
    np.testing.assert_allclose(ops.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    # broadcast views with zero strides in their batch axes give the same
    big = (3,) + sa if len(sa) > 1 else sa
    av = np.broadcast_to(a, big)
    np.testing.assert_allclose(ops.matmul(av, b), av @ b, rtol=1e-5, atol=1e-5)


def test_matmul_broadcast_batch_is_not_materialised():
    # a (1, 256, 256) against 4096 small b: numpy needs the 4 MB output and
    # the inputs; copying a per batch would take 1 GB, over the 700 MB cap
    r = _run_child("""
        import numpy as np
        from pyllm import ops
        a = np.ones((1, 256, 256), np.float32)
        b = np.ones((4096, 256, 1), np.float32)
        out = ops.matmul(a, b)
        assert out.shape == (4096, 256, 1) and float(out[4095, 255, 0]) == 256.0
        bv = np.broadcast_to(np.ones((256, 1), np.float32), (4096, 256, 1))
        out = ops.matmul(a, bv)
        assert out.shape == (4096, 256, 1) and float(out[17, 3, 0]) == 256.0
        av = np.broadcast_to(np.ones((256, 256), np.float32), (4096, 256, 256))
        out = ops.matmul(av, np.ones((256, 2), np.float32))
        assert out.shape == (4096, 256, 2) and float(out[4000, 0, 1]) == 256.0
        print("ok")
    """, timeout=60, mem_mb=700)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_matmul_broadcast_bad_shapes():
    with pytest.raises(ValueError, match="do not broadcast"):
        ops.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match="last dimension of a"):
        ops.matmul(np.ones((2, 3, 4)), np.ones((2, 5, 5)))
