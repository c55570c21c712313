"""The fused attention kernel against torch.nn.functional.scaled_dot_product_attention."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _ref(q, k, v, **kw):
    qt, kt, vt = (torch.from_numpy(a).double() for a in (q, k, v))
    mask = kw.pop("attn_mask", None)
    if mask is not None:
        mask = torch.from_numpy(np.array(mask))
        if mask.dtype != torch.bool:
            mask = mask.double()
    gqa = qt.shape[-3] != kt.shape[-3]
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=gqa, **kw).numpy()


def _qkv(rng, B, NH, NKV, T, S, HS):
    q = rng.standard_normal((B, NH, T, HS)).astype(np.float32)
    k = rng.standard_normal((B, NKV, S, HS)).astype(np.float32)
    v = rng.standard_normal((B, NKV, S, HS)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize(
    "B,NH,NKV,T,S,HS",
    [(1, 1, 1, 1, 1, 1), (2, 3, 3, 7, 9, 8), (1, 9, 3, 33, 33, 64), (2, 4, 1, 5, 130, 17),
     (1, 2, 2, 1, 1023, 64), (1, 6, 2, 65, 65, 33),
     # several blocks of 48 queries x 256 keys, partial last ones
     (1, 3, 1, 100, 600, 64), (2, 2, 2, 130, 130, 32),
     # heads sharing a key/value head stacked into one block: 5 heads x 28
     # steps; more heads per kv head than a block holds (160 = 144 + 16)
     (1, 10, 2, 65, 300, 16), (1, 160, 1, 3, 20, 8),
     # causal rows that reach into a second block of keys
     (1, 2, 1, 300, 300, 16)],
)
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_torch(isa, rng, B, NH, NKV, T, S, HS, causal):
    q, k, v = _qkv(rng, B, NH, NKV, T, S, HS)
    out = ops.scaled_dot_product_attention(q, k, v, is_causal=causal)
    np.testing.assert_allclose(out, _ref(q, k, v, is_causal=causal), rtol=1e-5, atol=2e-6)


def test_sdpa_causal_with_more_keys_than_queries_is_top_left(isa, rng):
    # torch's is_causal aligns the mask top-left: query t sees keys s <= t
    q, k, v = _qkv(rng, 1, 2, 2, 4, 10, 16)
    out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(out, _ref(q, k, v, is_causal=True), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mshape", [(1, 1, 7, 70), (2, 1, 1, 70), (7, 70), (70,), (2, 6, 7, 70)])
def test_sdpa_masks(isa, rng, kind, mshape):
    q, k, v = _qkv(rng, 2, 6, 3, 7, 70, 24)
    if kind == "bool":
        mask = rng.random(mshape) < 0.7
        mask[..., 0] = True  # every query keeps at least one key
    else:
        mask = (rng.standard_normal(mshape) * 2).astype(np.float32)
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    full = np.ascontiguousarray(np.broadcast_to(mask, (2, 6, 7, 70)))
    np.testing.assert_allclose(out, _ref(q, k, v, attn_mask=full), rtol=1e-5, atol=2e-6)


def test_sdpa_scale_and_3d(isa, rng):
    q, k, v = (a[:, 0] for a in _qkv(rng, 3, 1, 1, 5, 6, 8))
    out = ops.scaled_dot_product_attention(q, k, v, scale=0.3)
    assert out.shape == (3, 5, 8)
    np.testing.assert_allclose(out, _ref(q, k, v, scale=0.3), rtol=1e-5, atol=2e-6)


def test_sdpa_mask_hiding_whole_key_blocks(isa, rng):
    # keys come in blocks of 256: rows whose first visible key sits in a later
    # block, rows that see only the first block, and a row that sees one key
    q, k, v = _qkv(rng, 1, 2, 1, 60, 700, 16)
    mask = rng.random((60, 700)) < 0.5
    mask[:20, :256] = False
    mask[20:40, 256:] = False
    mask[40] = False
    mask[40, 699] = True
    for row in mask:
        row[rng.integers(0, 700)] |= not row.any()
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(out, _ref(q, k, v, attn_mask=mask), rtol=1e-5, atol=2e-6)
    # large scores (the running maximum jumps block after block): fp32 scores
    # are off by ~1e-5 here, so the bar is torch's own float32 error
    q *= 30
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = _ref(q, k, v, attn_mask=mask)
    torch32 = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)),
                                             attn_mask=torch.from_numpy(mask)).numpy()
    assert np.abs(out - ref).max() <= 4 * np.abs(torch32 - ref).max() + 2e-6


@pytest.mark.parametrize("q_offset", [0, 5, 400])
def test_causal_with_cached_keys(isa, rng, q_offset):
    # prefill after a cache: query t sits at position q_offset + t and sees
    # keys s <= q_offset + t (the kernel's q_offset, used by the llama runtime)
    from pyllm import _C

    T, S = 300, 300 + q_offset
    q, k, v = _qkv(rng, 1, 6, 2, T, S, 32)
    allowed = np.arange(S)[None, :] <= (q_offset + np.arange(T))[:, None]
    out = _C.attention(q, k, v, None, True, 32 ** -0.5, q_offset)
    np.testing.assert_allclose(out, _ref(q, k, v, attn_mask=allowed), rtol=1e-5, atol=2e-6)


def test_sdpa_nan_scores_give_nan_rows_like_torch(isa, rng):
    q, k, v = _qkv(rng, 1, 1, 1, 3, 300, 8)
    k[0, 0, 280] = np.nan  # in the second key block: rows see it after a finite first block
    q[0, 0, 1] = np.nan
    out = ops.scaled_dot_product_attention(q, k, v)
    assert np.isnan(out).all()


def test_sdpa_fully_masked_row_is_zero_like_torch(isa, rng):
    q, k, v = _qkv(rng, 1, 1, 1, 2, 4, 8)
    mask = np.ones((2, 4), dtype=bool)
    mask[1] = False
    out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = _ref(q, k, v, attn_mask=mask)
    np.testing.assert_allclose(out[0, 0, 0], ref[0, 0, 0], rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(ref[0, 0, 1], 0.0)
    np.testing.assert_array_equal(out[0, 0, 1], ref[0, 0, 1])


def test_sdpa_bad_input(rng):
    q, k, v = _qkv(rng, 1, 4, 3, 2, 5, 8)
    with pytest.raises(ValueError, match="multiple"):
        ops.scaled_dot_product_attention(q, k, v)
    q, k, v = _qkv(rng, 1, 2, 2, 2, 5, 8)
    with pytest.raises(ValueError, match="value"):
        ops.scaled_dot_product_attention(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="broadcast"):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 5), dtype=bool))
    with pytest.raises(ValueError, match="not both"):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((2, 5), dtype=bool), is_causal=True)
    with pytest.raises(ValueError, match="dropout"):
        ops.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match="bool or floating"):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((2, 5), dtype=np.int32))
    with pytest.raises(ValueError, match="4-D"):
        ops.scaled_dot_product_attention(q[0], k, v)
