"""The encoder's attention over sequences packed one after another: the one-region kernel
gives every sequence the bits that attention over that sequence alone gives, on every
ISA, and both agree with float64 softmax attention. Not the model around it
(tests/test_bert_padding.py, tests/test_bert*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm import _C


def packed_batch(rng, lengths, C, queries_only=()):
    """qkv (N,3C), the additive key mask (N) and the offsets (B+1): sequence b is lengths[b] rows,
    the last queries_only[b] of them queries that no row attends to (mask -inf)."""
    seq = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    qkv = (rng.standard_normal((int(seq[-1]), 3 * C)) * 2).astype(np.float32)
    kmask = np.zeros(int(seq[-1]), dtype=np.float32)
    for b, extra in enumerate(queries_only):
        if extra:
            kmask[seq[b + 1] - extra:seq[b + 1]] = -np.inf
    return qkv, kmask, seq


def reference(qkv, kmask, seq, heads):
    """float64 softmax(q k^T / sqrt(hs) + mask) v per sequence and head."""
    C = qkv.shape[1] // 3
    hs = C // heads
    out = np.zeros((qkv.shape[0], C))
    for b in range(len(seq) - 1):
        rows = qkv[seq[b]:seq[b + 1]].astype(np.float64)
        for h in range(heads):
            q, k, v = (rows[:, i * C + h * hs:i * C + (h + 1) * hs] for i in range(3))
            s = q @ k.T / np.sqrt(hs) + kmask[seq[b]:seq[b + 1]]
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[seq[b]:seq[b + 1], h * hs:(h + 1) * hs] = (p / p.sum(axis=1, keepdims=True)) @ v
    return out


@pytest.mark.parametrize("C,heads", [(384, 12), (64, 1), (128, 2), (32, 4), (36, 3), (24, 2)])
def test_packed_attention_is_each_sequence_alone(isa, C, heads):
    # head sizes 32, 64 (the kernel's own loops), 16 and 8, and 12 (not a multiple of 8: through
    # sgemm); lengths across the 8-key and 4-query blocks, and past one k block of keys (384)
    rng = np.random.default_rng(C * 7 + heads)
    lengths = [1, 3, 4, 5, 8, 9, 17, 31, 33, 64, 130] + ([400] if C <= 64 else [])
    qkv, kmask, seq = packed_batch(rng, lengths, C, queries_only=[0, 1, 0, 2, 0, 0, 3, 0, 1, 0, 5, 7][:len(lengths)])
    out, att = _C.encoder_attention(qkv, kmask, seq, heads, True)
    one_out, one_att = _C.encoder_attention(qkv, kmask, seq, heads, False)
    np.testing.assert_array_equal(out, one_out)
    np.testing.assert_array_equal(att, one_att)
    np.testing.assert_allclose(out, reference(qkv, kmask, seq, heads), rtol=1e-5, atol=2e-5)


def test_packed_attention_probabilities_layout(isa):
    # each sequence's (heads, n, n) in turn; masked keys get probability 0, rows sum to 1
    rng = np.random.default_rng(5)
    lengths, heads = [6, 2, 11], 2
    qkv, kmask, seq = packed_batch(rng, lengths, 16, queries_only=[2, 0, 4])
    _, att = _C.encoder_attention(qkv, kmask, seq, heads, True)
    assert att.size == sum(heads * n * n for n in lengths)
    off = 0
    for b, n in enumerate(lengths):
        p = att[off:off + heads * n * n].reshape(heads, n, n)
        off += heads * n * n
        np.testing.assert_allclose(p.sum(axis=2), 1.0, rtol=1e-6)
        assert (p[:, :, np.isinf(kmask[seq[b]:seq[b + 1]])] == 0).all()


def test_encoder_attention_rejects_bad_input():
    qkv, kmask, seq = packed_batch(np.random.default_rng(0), [3, 4], 16)
    with pytest.raises(ValueError, match="float32"):
        _C.encoder_attention(qkv.astype(np.float64), kmask, seq, 2, True)
    with pytest.raises(ValueError, match="multiple of heads"):
        _C.encoder_attention(qkv, kmask, seq, 3, True)
    with pytest.raises(ValueError, match="from 0 to the rows"):
        _C.encoder_attention(qkv, kmask, seq[:-1], 2, True)
    with pytest.raises(ValueError, match="increasing"):
        _C.encoder_attention(qkv, kmask, np.array([0, 3, 3, 7], dtype=np.int64), 2, True)
    with pytest.raises(ValueError, match="one value per row"):
        _C.encoder_attention(qkv, kmask[:-1], seq, 2, True)
