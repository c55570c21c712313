"""A decoder's hidden states and sentence embeddings beyond the reference comparisons
(test_architectures.py, test_gpt2_live.py): encode() against embed() and the hidden states,
torch in and out, the argument checks, and the engine's between-steps calls the server runs
them with."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import pyllm
from pyllm.serve.engine import Engine, EngineStopped

TINY = Path(__file__).parent / "data" / "tiny" / "llama2" / "llama2-f32.gguf"


@pytest.fixture(scope="module")
def model():
    with pyllm.AutoModelForCausalLM.from_pretrained(TINY, n_ctx=48) as m:
        yield m


def test_encode_is_the_mean_of_the_last_hidden_state(model):
    texts = ["Hello there", "a", "The quick brown fox"]
    vecs = model.encode(texts)
    assert vecs.shape == (3, model.config.hidden_size) and vecs.dtype == np.float32
    for text, v in zip(texts, vecs):
        ids = model.tokenizer(text)["input_ids"]
        last = model(np.array([ids]), output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(v, last.mean(0), atol=1e-6, rtol=0)
    unit = model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(unit, vecs / np.linalg.norm(vecs, axis=1, keepdims=True), atol=1e-6, rtol=0)
    assert model.encode("a").shape == (model.config.hidden_size,)
    np.testing.assert_array_equal(model.encode("a"), vecs[1])
    assert model.encode([]).shape == (0, model.config.hidden_size)


def test_max_length_cuts_and_too_long_raises(model):
    long = "word " * 60
    with pytest.raises(ValueError, match="longer than the context n_ctx=48"):
        model.encode(long)
    ids = model.tokenizer(long)["input_ids"]
    np.testing.assert_array_equal(model.encode(long, max_length=10), model.embed([ids[:10]])[0])


@pytest.mark.parametrize("call,error,match", [
    (lambda m: m.encode([1, 2]), TypeError, r"sentences\[0\] is int"),
    (lambda m: m.encode("x", max_length=0), ValueError, "max_length must be a positive integer"),
    (lambda m: m.encode("x", pooling="cls"), ValueError, "pooling must be one of mean, last"),
    (lambda m: m.embed([[1, 2]], attention_mask=[[0, 0]]), ValueError, "row 0 has no tokens"),
    (lambda m: m.embed([[1, 10**6]]), ValueError, "out of range|not in"),
    (lambda m: m(np.array([[1, 2]]), output_hidden_states=True, output_attentions=True), TypeError,
     "output_attentions"),
])
def test_bad_arguments(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)


def test_hidden_states_follow_torch_input(model):
    torch = pytest.importorskip("torch")
    out = model(torch.tensor([[1, 5, 7]]), output_hidden_states=True)
    assert all(isinstance(h, torch.Tensor) and tuple(h.shape) == (1, 3, model.config.hidden_size)
               for h in out.hidden_states)
    assert out.keys() == ["logits", "hidden_states"] and out[1] is out.hidden_states
    assert model(np.array([[1, 5, 7]])).hidden_states is None


def test_embedding_after_generation_leaves_generation_unchanged(model):
    first = model.generate([[1, 5, 7]], max_new_tokens=6, do_sample=False)
    model.encode("something else entirely")
    np.testing.assert_array_equal(model.generate([[1, 5, 7]], max_new_tokens=6, do_sample=False), first)


def test_engine_calls_run_between_steps_and_report_errors(model):
    engine = Engine(model, "tiny", max_parallel=2)
    try:
        assert engine.call(lambda: model.encode("hi")).result(timeout=60).shape == (model.config.hidden_size,)
        with pytest.raises(ZeroDivisionError):
            engine.call(lambda: 1 / 0).result(timeout=60)
        assert engine.error is None  # the caller's error, not the engine's
        seen = []
        threads = [threading.Thread(target=lambda i=i: seen.append(engine.call(lambda: i).result(timeout=60)))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seen) == list(range(8))
    finally:
        engine.stop()
    with pytest.raises(EngineStopped):
        engine.call(lambda: 1)
