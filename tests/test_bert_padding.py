"""The encoder computes only the unmasked tokens of a padded batch (plus the pooler's first
token): a batch with heavy padding must give each sequence what it gets alone, forward and
backward, on every ISA. Not the comparison with transformers (tests/test_bert*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm.models.bert import BertConfig, BertForSequenceClassification, BertModel

T = 20
LENGTHS = [20, 3, 9, 1, 14, 6]  # mostly padding: 53 of 120 positions are real


def tiny_config(**kw):
    c = dict(vocab_size=70, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=24, type_vocab_size=2, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)
    c.update(kw)
    return BertConfig(**c)


def _perturbed(model):
    for v in model.params.values():  # biases and norms away from their init, so they count too
        v += np.random.default_rng(v.size).standard_normal(v.shape).astype(np.float32) * 0.05
    return model


def right_padded(seed=0):
    rng = np.random.default_rng(seed)
    B = len(LENGTHS)
    ids = rng.integers(1, 70, size=(B, T))
    types = rng.integers(0, 2, size=(B, T))
    mask = np.zeros((B, T), dtype=np.int64)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = 0
        types[b, n:] = 0
    return ids, types, mask


def test_padded_batch_forward_equals_each_sequence_alone(isa):
    model = _perturbed(BertForSequenceClassification(tiny_config(init_num_labels=3), seed=5)).eval()
    ids, types, mask = right_padded()
    L = model.config.num_hidden_layers
    logits = model(ids, attention_mask=mask, token_type_ids=types).logits  # only the real tokens computed
    assert model._rt.rows == sum(LENGTHS)
    packed = [model._rt.hidden(i) for i in range(L + 1)]
    for got in packed:
        assert np.all(got[mask == 0] == 0)  # not computed
    whole = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    assert model._rt.rows == mask.size
    # computing the padded positions too changes the real ones by rounding at most (a softmax
    # row then sums over more, zero, entries)
    np.testing.assert_allclose(whole.logits, logits, atol=1e-6, rtol=0)
    for got, want in zip(packed, whole.hidden_states):
        np.testing.assert_allclose(got[mask == 1], want[mask == 1], atol=1e-6, rtol=0)
    for b, n in enumerate(LENGTHS):
        alone = model(ids[b:b + 1, :n], token_type_ids=types[b:b + 1, :n], output_hidden_states=True)
        # the GEMMs, norms and attention do the same arithmetic per row in the batch and alone,
        # except for a sequence of at most 4 tokens, whose GEMMs take the few-rows path alone
        # (as the pooler and classifier do for one sequence)
        tol = 0 if n > 4 else 2e-6
        for got, want in zip(packed, alone.hidden_states):
            np.testing.assert_allclose(got[b, :n], want[0], atol=tol, rtol=0)
        np.testing.assert_allclose(logits[b], alone.logits[0], atol=2e-6, rtol=0)


def test_padded_batch_gradients_equal_the_sequences_alone(isa):
    cfg = tiny_config(init_num_labels=3)
    ids, types, mask = right_padded(1)
    labels = np.array([0, 2, 1, 1, 0, 2])
    model = _perturbed(BertForSequenceClassification(cfg, seed=6)).eval()
    loss = model.forward_backward(ids, labels, attention_mask=mask, token_type_ids=types)
    batch_grads = model._grads.copy()
    gpos = model.grads["bert.embeddings.position_embeddings.weight"].copy()  # (24, C)
    # the batch loss is the mean of the sequences' losses, so its gradient is the mean of theirs
    total = np.zeros(batch_grads.shape, dtype=np.float64)
    losses = []
    for b, n in enumerate(LENGTHS):
        model.zero_grad()
        losses.append(model.forward_backward(ids[b:b + 1, :n], labels[b:b + 1], token_type_ids=types[b:b + 1, :n]))
        total += model._grads
    total /= len(LENGTHS)
    assert abs(loss - np.mean(losses)) <= 1e-6 * abs(loss)
    # summed in another order (over the packed rows of the batch vs per sequence): float32 rounding
    scale = np.abs(total).max()
    assert np.abs(batch_grads - total).max() <= 1e-5 * scale
    # no gradient reaches a position embedding that no token used
    assert np.all(gpos[T:] == 0) and np.all(np.any(gpos[:T] != 0, axis=1))


def test_left_padding_and_holes_match_the_padded_graph(isa):
    # masked positions anywhere (left padding, holes): positions stay absolute as in transformers, so
    # the check is against the padded batch computed whole (every position a query)
    cfg = tiny_config()
    model = _perturbed(BertForSequenceClassification(cfg, seed=7)).eval()
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 70, size=(4, 16))
    mask = np.ones_like(ids)
    mask[0, :10] = 0  # left padding: the pooler's first token is a padded position
    mask[1, 3:7] = 0
    mask[2, 1::2] = 0
    mask[3, 15] = 0
    whole = model(ids, attention_mask=mask, output_hidden_states=True)
    assert model._rt.rows == 4 * 16
    packed = model(ids, attention_mask=mask)
    assert model._rt.rows == int(mask.sum()) + 1  # the real tokens and row 0's first token
    np.testing.assert_allclose(packed.logits, whole.logits, atol=1e-6, rtol=0)
    enc = BertModel(cfg, seed=7).eval()
    for name, v in model.params.items():
        if name.startswith("bert."):
            enc.params[name[len("bert."):]][...] = v
    h = enc(ids, attention_mask=mask).last_hidden_state
    np.testing.assert_allclose(h, whole.hidden_states[-1], atol=0, rtol=0)
    emb = enc.embed(ids, attention_mask=mask)
    m = mask[:, :, None].astype(np.float32)
    np.testing.assert_allclose(emb, (h * m).sum(1) / m.sum(1), atol=1e-6, rtol=0)


def test_dropout_masks_do_not_depend_on_the_packing():
    # a dropout mask is a function of (seed, site, padded position): the same whether the padded
    # positions are computed or not, so training-mode outputs agree too
    cfg = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    ids, types, mask = right_padded(2)
    a = BertForSequenceClassification(cfg, seed=8)
    b = BertForSequenceClassification(cfg, seed=8)
    assert a.training
    la = a(ids, attention_mask=mask, token_type_ids=types).logits
    lb = b(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).logits
    np.testing.assert_allclose(la, lb, atol=1e-6, rtol=0)
    assert not np.array_equal(la, a.eval()(ids, attention_mask=mask, token_type_ids=types).logits)


@pytest.mark.parametrize("lengths", [[1], [5, 5], [24, 1, 1]])
def test_edge_lengths(lengths):
    cfg = tiny_config()
    model = _perturbed(BertModel(cfg, seed=9)).eval()
    rng = np.random.default_rng(4)
    Tm = max(lengths)
    ids = rng.integers(1, 70, size=(len(lengths), Tm))
    mask = (np.arange(Tm)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    emb = model.embed(ids, attention_mask=mask)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(emb[b], model.embed(ids[b:b + 1, :n])[0], atol=2e-6, rtol=0)


def test_training_gradients_with_dropout_do_not_depend_on_the_packing(isa):
    # the same dropout masks on the real tokens: the gradients of a step that skips the padded
    # positions equal those of one that computes them, to float32 rounding
    cfg = tiny_config(init_num_labels=2, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    model = _perturbed(BertForSequenceClassification(cfg, seed=10))
    ids, types, mask = right_padded(4)
    mask[2, :5] = 0  # left padding too: the pooler's first token is padded
    dlogits = np.random.default_rng(5).standard_normal((len(LENGTHS), 2)).astype(np.float32)
    grads = []
    for pad_rows in (False, True):
        model._rt.forward(model._params, ids, types, mask, 0.2, 0.2, 0.0, 77, pad_rows=pad_rows)
        g = np.zeros_like(model._grads)
        model._rt.backward(model._params, g, dlogits=dlogits)
        grads.append(g)
    scale = np.abs(grads[1]).max()
    assert np.abs(grads[0] - grads[1]).max() <= 1e-5 * scale
