"""BERT against the numbers scripts/record_bert_refs.py recorded with transformers + torch on
all-MiniLM-L6-v2 (hidden states, pooler, logits, loss, gradients, AdamW steps, sentence
embeddings), plus dropout, thread safety and bad input on small random models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pyllm import AdamW
from pyllm.models.bert import BertConfig, BertForSequenceClassification, BertModel, pool_embeddings

REF = Path(__file__).parent / "data" / "bert_reference.npz"
# scripts/record_bert_refs.py's settings
LR, WEIGHT_DECAY, BETAS, EPS, STEPS = 1e-3, 0.01, (0.9, 0.999), 1e-8, 3


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REF))


@pytest.fixture(scope="module")
def minilm():
    return BertModel.from_pretrained("all-MiniLM-L6-v2")


def _inputs(ref):
    return ref["input_ids"], ref["attention_mask"], ref["token_type_ids"]


def _classifier(ref):
    model = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=3)
    for name in ("classifier.weight", "classifier.bias"):
        model.params[name][...] = ref["head." + name]
    return model


def tiny_config(**kw):
    c = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=24, type_vocab_size=2)
    c.update(kw)
    return BertConfig(**c)


# ---- recorded references

def test_hidden_states_match_transformers(ref, minilm):
    ids, mask, types = _inputs(ref)
    assert (mask == 0).any(), "the recorded batch must hold padding"
    out = minilm(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    assert len(out.hidden_states) == 7
    np.testing.assert_allclose(out.last_hidden_state, ref["last_hidden_state"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.pooler_output, ref["pooler_output"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.hidden_states[0], ref["hidden_state_0"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.hidden_states[3], ref["hidden_state_3"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)


def test_logits_loss_gradients_and_adamw_match_torch(ref):
    ids, mask, types = _inputs(ref)
    model = _classifier(ref)
    out = model(ids, attention_mask=mask, token_type_ids=types, labels=ref["labels"])
    np.testing.assert_allclose(out.logits, ref["logits"], atol=1e-4, rtol=0)
    assert abs(float(out.loss) - float(ref["loss"])) < 1e-5
    loss = model.forward_backward(ids, ref["labels"], attention_mask=mask, token_type_ids=types)
    assert abs(loss - float(ref["loss"])) < 1e-5
    grads = dict(model.named_gradients())
    names = [k[len("grad."):] for k in ref if k.startswith("grad.")]
    for name in names:
        want = ref["grad." + name]
        err = np.abs(grads[name] - want).max() / np.abs(want).max()
        assert err < 1e-3, f"{name}: relative error {err}"
    opt = AdamW(model, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    model.zero_grad()
    for _ in range(STEPS):
        model.forward_backward(ids, ref["labels"], attention_mask=mask, token_type_ids=types)
        opt.step()
        opt.zero_grad()
    for name in names:
        np.testing.assert_allclose(model.params[name], ref["stepped." + name], atol=2e-6, rtol=1e-4, err_msg=name)


def test_encode_matches_sentence_transformers_reference(ref, minilm):
    transformers = pytest.importorskip("transformers")
    from pyllm import hub

    tok = transformers.BertTokenizerFast.from_pretrained(hub.resolve_model_dir("all-MiniLM-L6-v2"))
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "Two men pushed carts through the woods.",
             "A monkey is playing drums.", "Someone in a gorilla costume is playing a set of drums.",
             "This sentence is rather long and it keeps going " + "on and on " * 40 + "until it is cut."]
    assert minilm.max_seq_length == 256 and minilm._pool_mode() == "mean"
    emb = minilm.encode(texts, normalize=True, tokenizer=tok, batch_size=3)
    assert emb.shape == (8, 384) and emb.dtype == np.float32
    cos = (emb * ref["embeddings"]).sum(axis=1) / np.linalg.norm(ref["embeddings"], axis=1)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one = minilm.encode(texts[0], normalize_embeddings=True, tokenizer=tok)
    np.testing.assert_allclose(one, emb[0], atol=1e-5)
    raw = minilm.encode(texts[:2], tokenizer=tok)
    assert abs(np.linalg.norm(raw[0]) - 1.0) > 1e-3  # unnormalised by default, as sentence-transformers


def test_pool_embeddings_modes():
    h = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(pool_embeddings(h, mask, "mean"), [[1, 2], [6, 7]])
    np.testing.assert_allclose(pool_embeddings(h, mask, "cls"), [[0, 1], [6, 7]])
    np.testing.assert_allclose(pool_embeddings(h, mask, "max"), [[2, 3], [6, 7]])
    np.testing.assert_allclose(pool_embeddings(h, mask, "mean_sqrt_len"), [[2 / np.sqrt(2), 4 / np.sqrt(2)], [6, 7]])
    n = pool_embeddings(h, mask, "mean", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=1e-6)


# ---- dropout

def test_dropout_only_in_training_mode_and_seeded():
    cfg = tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids = np.random.default_rng(0).integers(0, 60, size=(3, 10))
    a = BertForSequenceClassification(cfg, seed=5)
    b = BertForSequenceClassification(cfg, seed=5)
    assert a.training
    la, lb = a(ids).logits, b(ids).logits
    np.testing.assert_array_equal(la, lb)  # same seed, same masks
    assert not np.array_equal(a(ids).logits, la)  # a new mask every call
    a.eval()
    e1, e2 = a(ids).logits, a(ids).logits
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(e1, la)
    assert a.train() is a and a.training
    state = a.get_rng_state()
    first = a(ids).logits
    a.set_rng_state(state)
    np.testing.assert_array_equal(a(ids).logits, first)  # a checkpoint's generator state resumes the masks
    with pytest.raises(ValueError, match="generator state"):
        a.set_rng_state({"bit_generator": "nope"})


def test_dropout_backward_matches_finite_differences():
    # with the mask held fixed (the same seed each call) the loss is smooth in the weights:
    # the analytic directional derivative equals a central difference
    cfg = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, num_hidden_layers=1)
    model = BertForSequenceClassification(cfg, seed=3)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 60, size=(2, 9))
    mask = np.ones((2, 9), dtype=np.int64)
    mask[1, 6:] = 0
    labels = np.array([1, 0])

    def loss_with(seed):
        model._rng = np.random.default_rng(seed)
        model.zero_grad()
        return model.forward_backward(ids, labels, attention_mask=mask)

    loss_with(7)
    grad = model._grads.copy()
    direction = rng.standard_normal(grad.shape).astype(np.float32)
    base = model._params.copy()
    h = 1e-2
    model._params[...] = base + h * direction
    up = loss_with(7)
    model._params[...] = base - h * direction
    down = loss_with(7)
    model._params[...] = base
    numeric = (up - down) / (2 * h)
    analytic = float(grad.astype(np.float64) @ direction)
    assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-4, (numeric, analytic)


# ---- the three problem types

def test_problem_types_and_label_checks():
    ids = np.random.default_rng(0).integers(0, 60, size=(4, 6))
    m = BertForSequenceClassification(tiny_config(id2label={0: "neg", 1: "neu", 2: "pos"}), seed=0).eval()
    assert m.config.num_labels == 3 and m.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    out = m(ids, labels=np.array([0, 2, 1, -100]))
    assert m.config.problem_type == "single_label_classification"
    x = out.logits.astype(np.float64)[:3]
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert abs(float(out.loss) - -np.mean(logp[[0, 1, 2], [0, 2, 1]])) < 1e-6
    with pytest.raises(ValueError, match="outside"):
        m(ids, labels=np.array([0, 3, 1, 1]))
    with pytest.raises(TypeError, match="integer"):
        m(ids, labels=np.array([0.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        m(ids, labels=np.array([0, 1]))
    with pytest.raises(TypeError, match="numbers"):
        m(ids, labels=np.array(["a", "b", "c", "d"]))
    ml = BertForSequenceClassification(tiny_config(), seed=0).eval()
    y = np.array([[0, 1], [1, 1], [0, 0], [1, 0]], dtype=np.float32)
    out = ml(ids, labels=y)
    assert ml.config.problem_type == "multi_label_classification"
    x = out.logits.astype(np.float64)
    bce = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    assert abs(float(out.loss) - bce) < 1e-6
    reg = BertForSequenceClassification(tiny_config(id2label={0: "score"}), seed=0).eval()
    y = np.array([0.5, 1.0, -2.0, 0.0], dtype=np.float32)
    out = reg(ids, labels=y)
    assert reg.config.problem_type == "regression"
    assert abs(float(out.loss) - np.mean((out.logits[:, 0].astype(np.float64) - y) ** 2)) < 1e-6


# ---- bad input

def test_bad_input_raises_clear_errors():
    m = BertForSequenceClassification(tiny_config(), seed=0).eval()
    ids = np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="out of range"):
        m(np.array([[1, 60]]))
    with pytest.raises(ValueError, match="out of range"):
        m(np.array([[1, -1]]))
    with pytest.raises(TypeError, match="integer"):
        m(np.array([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="str"):
        m("some text")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m(np.zeros((1, 25), dtype=np.int64))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        m(ids, attention_mask=np.ones((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="0 and 1"):
        m(ids, attention_mask=np.full((2, 5), 2))
    with pytest.raises(ValueError, match="masks every position"):
        m(ids, attention_mask=np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="token_type_ids"):
        m(ids, token_type_ids=np.full((2, 5), 2))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        m(ids, token_type_ids=np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="3-D|1-D or 2-D"):
        m(np.zeros((1, 2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        m(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(TypeError, match="unexpected"):
        m(ids, foo=1)
    with pytest.raises(ValueError, match="hidden_act"):
        tiny_config(hidden_act="relu")
    with pytest.raises(ValueError, match="multiple"):
        tiny_config(hidden_size=30)
    with pytest.raises(TypeError, match="not a string"):
        BertModel(tiny_config()).encode(["ok", 3], tokenizer=lambda *a, **k: None)


def test_runtime_checks_its_buffers():
    # the binding checks what it is given even when the Python layer is bypassed
    m = BertModel(tiny_config())
    rt, p = m._rt, m._params
    ids = np.zeros((1, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="input_ids"):
        rt.forward(p, np.array([[60, 1, 2, 3]]), ids, np.ones_like(ids))
    with pytest.raises(ValueError, match="int64"):
        rt.forward(p, ids.astype(np.int32), ids, np.ones_like(ids))
    with pytest.raises(ValueError, match="parameters"):
        rt.forward(p[:-1], ids, ids, np.ones_like(ids))
    with pytest.raises(ValueError, match="max_position"):
        z = np.zeros((1, 30), dtype=np.int64)
        rt.forward(p, z, z, np.ones_like(z))
    with pytest.raises(ValueError, match="dlogits"):
        rt.forward(p, ids, ids, np.ones_like(ids))
        rt.backward(p, m._grads, dlogits=np.zeros((1, 2), np.float32))


def test_threads_share_a_model():
    m = BertModel(tiny_config(), seed=0).eval()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 60, size=(2, 3 + i)) for i in range(6)]
    want = [m(b).last_hidden_state for b in batches]
    got = [None] * len(batches)

    def run(i):
        for _ in range(5):
            got[i] = m(batches[i]).last_hidden_state

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_save_and_load_round_trip(tmp_path):
    m = BertForSequenceClassification(tiny_config(id2label={0: "a", 1: "b", 2: "c"}), seed=4).eval()
    ids = np.random.default_rng(0).integers(0, 60, size=(2, 7))
    m.save_pretrained(tmp_path)
    back = BertForSequenceClassification.from_pretrained(tmp_path)
    assert back.config.id2label == {0: "a", 1: "b", 2: "c"} and not back.training
    np.testing.assert_array_equal(back(ids).logits, m(ids).logits)
    # the encoder alone reads a classifier's directory; a classifier reads an encoder's with a new head
    enc = BertModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(enc(ids).pooler_output, m._rt.pooled())
    enc.save_pretrained(tmp_path / "enc")
    fresh = BertForSequenceClassification.from_pretrained(tmp_path / "enc", num_labels=5, seed=1)
    assert fresh(ids).logits.shape == (2, 5)
    assert np.all(fresh.params["classifier.bias"] == 0)
    assert 0.01 < fresh.params["classifier.weight"].std() < 0.03  # N(0, initializer_range)
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=4)


# ---- every ISA against a float64 numpy reference

def reference_forward(p, cfg, ids, types, mask):
    """A plain float64 BERT forward: (hidden states of every layer, logits)."""
    import math

    erf = np.vectorize(math.erf)
    P = {k: v.astype(np.float64) for k, v in p.items()}
    B, T = ids.shape
    C, NH = cfg.hidden_size, cfg.num_attention_heads
    HS = C // NH

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.layer_norm_eps) * P[name + ".weight"] + P[name + ".bias"]

    def lin(x, name):
        return x @ P[name + ".weight"].T + P[name + ".bias"]

    e = "bert.embeddings."
    h = ln(P[e + "word_embeddings.weight"][ids] + P[e + "token_type_embeddings.weight"][types]
           + P[e + "position_embeddings.weight"][:T], e + "LayerNorm")
    states = [h]
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)  # (B, 1, 1, T)
    for i in range(cfg.num_hidden_layers):
        a = f"bert.encoder.layer.{i}."
        q, k, v = (lin(h, a + "attention.self." + n).reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HS) + bias  # (B, NH, T, T)
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        ctx = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        a1 = ln(lin(ctx, a + "attention.output.dense") + h, a + "attention.output.LayerNorm")
        f = lin(a1, a + "intermediate.dense")
        h = ln(lin(0.5 * f * (1 + erf(f / math.sqrt(2))), a + "output.dense") + a1, a + "output.LayerNorm")
        states.append(h)
    pooled = np.tanh(lin(h[:, 0], "bert.pooler.dense"))
    return states, lin(pooled, "classifier")


def test_every_isa_matches_the_numpy_reference(isa):
    cfg = tiny_config(intermediate_size=50, num_attention_heads=2, hidden_size=36, type_vocab_size=3)
    model = BertForSequenceClassification(cfg, seed=11).eval()
    for v in model.params.values():  # biases and norms away from their init, so they are checked too
        v += np.random.default_rng(v.size).standard_normal(v.shape).astype(np.float32) * 0.05
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 60, size=(3, 13))
    types = rng.integers(0, 3, size=(3, 13))
    mask = np.ones_like(ids)
    mask[0, 9:] = 0
    mask[2, :4] = 0
    out = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    states, logits = reference_forward(model.params, cfg, ids, types, mask)
    for got, want in zip(out.hidden_states, states):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    np.testing.assert_allclose(out.logits, logits, atol=2e-5, rtol=0)


def test_gradients_agree_across_isas():
    import pyllm

    cfg = tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    ids = np.random.default_rng(3).integers(0, 60, size=(4, 11))
    grads = {}
    before = pyllm.cpu_info()["isa"]
    try:
        for isa in pyllm.cpu_info()["available_isas"]:
            pyllm.set_isa(isa)
            m = BertForSequenceClassification(cfg, seed=0)  # training mode: the same dropout masks
            m.forward_backward(ids, np.array([0, 1, 1, 0]))
            grads[isa] = m._grads.copy()
    finally:
        pyllm.set_isa(before)
    ref = grads["scalar"]
    for isa, g in grads.items():
        assert np.abs(g - ref).max() <= 1e-4 * np.abs(ref).max(), isa


def test_config_num_labels_as_transformers_builds_it():
    """BertConfig(num_labels=3) as transformers writes it: LABEL_0..LABEL_2 both ways (transformers'
    BertConfig(num_labels=3) gives the same maps), or the names id2label gives."""
    cfg = BertConfig(num_labels=3, vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32)
    assert cfg.num_labels == 3
    assert cfg.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert cfg.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert BertForSequenceClassification(cfg, seed=0).eval()(np.array([[1, 5, 6, 2]])).logits.shape == (1, 3)
    assert BertConfig(num_labels=2, id2label={0: "neg", 1: "pos"}).label2id == {"neg": 0, "pos": 1}
    assert BertConfig().num_labels == 2
    with pytest.raises(ValueError, match="num_labels must be a positive integer, got 0"):
        BertConfig(num_labels=0)
    with pytest.raises(ValueError, match="num_labels=3 but id2label names 2 labels"):
        BertConfig(num_labels=3, id2label={0: "a", 1: "b"})
