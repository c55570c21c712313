"""GPT-2 training and inference against numbers recorded from PyTorch/transformers
(scripts/record_gpt2_refs.py), the numpy float64 reference and finite differences,
plus checkpoints, generation and bad input. Needs no torch (see test_gpt2_live.py)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import gpt2_ref
import numpy as np
import pytest

import pyllm
from pyllm import AdamW, GPT2Config, GPT2LMHeadModel, clip_grad_norm_

DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "gpt2_tiny"


@pytest.fixture(scope="module")
def rec():
    with np.load(DATA / "gpt2_reference.npz") as f:
        return {k: f[k] for k in f.files}


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference entry."""
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def random_model(cfg: GPT2Config, seed: int = 0, noise: float = 0.1) -> GPT2LMHeadModel:
    """A model whose biases and norm weights are away from 0 and 1 as well."""
    model = GPT2LMHeadModel(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for _, p in model.named_parameters():
        if p.ndim < 2:
            p += noise * rng.standard_normal(p.shape).astype(np.float32)
    return model


# ---- against PyTorch (recorded)


def test_loss_and_every_gradient_match_pytorch(rec):
    model = GPT2LMHeadModel.from_pretrained(TINY)
    loss = model.forward_backward(rec["ids"], rec["labels"])
    assert abs(loss - rec["loss"]) <= 1e-4 * abs(rec["loss"])
    grads = dict(model.named_gradients())
    want = {k[len("grad/"):]: v for k, v in rec.items() if k.startswith("grad/")}
    assert set(grads) == set(want)
    errs = {name: rel_err(grads[name], want[name]) for name in want}
    assert max(errs.values()) <= 1e-3, sorted(errs.items(), key=lambda kv: -kv[1])[:3]


def test_logits_match_transformers(rec):
    model = GPT2LMHeadModel.from_pretrained(TINY)
    logits = model(rec["ids"]).logits
    assert logits.shape == rec["logits"].shape and logits.dtype == np.float32
    assert rel_err(logits, rec["logits"]) <= 1e-4
    assert abs(model.loss(rec["ids"], rec["labels"]) - rec["loss"]) <= 1e-4 * rec["loss"]


def test_weights_after_clipped_adamw_steps_match_pytorch(rec):
    lr, wd, b1, b2, eps, max_norm = rec["hparams"].tolist()
    model = GPT2LMHeadModel.from_pretrained(TINY)
    before = model.state_dict()
    opt = AdamW(model, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for k in range(len(rec["step_losses"])):
        opt.zero_grad()
        loss = model.forward_backward(rec[f"step{k}/ids"], rec[f"step{k}/labels"])
        norm = clip_grad_norm_(model, max_norm)
        opt.step()
        assert abs(loss - rec["step_losses"][k]) <= 1e-4 * rec["step_losses"][k]
        assert abs(norm - rec["step_norms"][k]) <= 1e-3 * rec["step_norms"][k]
    assert opt.step_count == 3
    for name, p in model.named_parameters():
        want = rec["after/" + name]
        assert rel_err(p, want) <= 1e-3, name
        # the updates themselves (a few lr in size), not only the weights, agree
        assert rel_err(p - before[name], want - before[name]) <= 1e-2, name


# ---- against the numpy float64 reference and finite differences


@pytest.mark.parametrize("shape", [dict(B=3, T=7, n_embd=24, n_head=3, n_inner=None),
                                   dict(B=1, T=19, n_embd=32, n_head=4, n_inner=40)])
def test_forward_backward_matches_numpy_reference(isa, shape):
    cfg = GPT2Config(vocab_size=37, n_positions=19, n_embd=shape["n_embd"], n_layer=2, n_head=shape["n_head"],
                     n_inner=shape["n_inner"])
    model = random_model(cfg, seed=3)
    rng = np.random.default_rng(5)
    B, T = shape["B"], shape["T"]
    ids = rng.integers(0, 37, size=(B, T))
    labels = rng.integers(0, 37, size=(B, T))
    labels[0, ::3] = -100
    loss = model.forward_backward(ids, labels)
    W = {n: p.astype(np.float64) for n, p in model.named_parameters()}
    want_loss, want_logits, want_grads = gpt2_ref.forward_backward(W, asdict(cfg), ids, labels)
    assert abs(loss - want_loss) <= 1e-5 * want_loss
    for name, g in model.named_gradients():
        assert rel_err(g, want_grads[name]) <= 1e-4, name
    assert rel_err(model(ids).logits, want_logits) <= 1e-5
    # gradients accumulate until zero_grad
    model.forward_backward(ids, labels)
    assert rel_err(model.grads["transformer.wte.weight"], 2 * want_grads["transformer.wte.weight"]) <= 1e-4
    model.zero_grad()
    assert not any(g.any() for _, g in model.named_gradients())


def test_whole_model_gradient_against_finite_differences():
    cfg = GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    model = random_model(cfg, seed=7, noise=0.3)
    for _, p in model.named_parameters():
        if p.ndim == 2:
            p *= 10  # larger weights: a gradient well above float32 noise
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 11, size=(2, 6))
    labels = rng.integers(0, 11, size=(2, 6))
    labels[1, 0] = -100
    model.forward_backward(ids, labels)
    params, grads, _ = model.flat_buffers()
    g = grads.astype(np.float64).copy()
    w0 = params.copy()

    def loss_at(w: np.ndarray) -> float:
        params[...] = w
        return model.loss(ids, labels)

    # the directional derivative along the gradient is -|g|
    d = -g / np.linalg.norm(g)
    h = 1e-2
    fd = (loss_at(w0 + h * d) - loss_at(w0 - h * d)) / (2 * h)
    assert abs(fd + np.linalg.norm(g)) <= 2e-3 * np.linalg.norm(g)
    # and single entries: the largest gradient entry of every tensor
    for name, off, shape in model.flat_buffers()[2]:
        i = off + int(np.abs(g[off:off + int(np.prod(shape))]).argmax())
        e = np.zeros_like(w0)
        e[i] = h
        fd = (loss_at(w0 + e) - loss_at(w0 - e)) / (2 * h)
        assert abs(fd - g[i]) <= 1e-2 * abs(g[i]) + 2e-4, (name, fd, g[i])
    params[...] = w0


# ---- checkpoints


def test_save_and_load_round_trip(tmp_path):
    model = random_model(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2), seed=2)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"] and cfg["n_embd"] == 16
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "ckpt")
    assert back.config == model.config
    assert len(model.params) == len(back.params)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), back.named_parameters()):  # noqa: B905 (3.9)
        assert n1 == n2 and np.array_equal(p1, p2)
    # saving again over the same directory replaces the files
    model.params["transformer.ln_f.bias"][0] = 7.0
    model.save_pretrained(tmp_path / "ckpt")
    assert GPT2LMHeadModel.from_pretrained(tmp_path / "ckpt").params["transformer.ln_f.bias"][0] == 7.0


def test_loads_names_without_prefix_and_with_tied_lm_head(tmp_path):
    from safetensors.numpy import save_file

    model = GPT2LMHeadModel.from_pretrained(TINY)
    tensors = {n[len("transformer."):]: p.copy() for n, p in model.named_parameters()}
    tensors["lm_head.weight"] = model.params["transformer.wte.weight"].copy()
    tensors["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))  # old checkpoints' mask buffer
    (tmp_path / "config.json").write_text((TINY / "config.json").read_text())
    save_file(tensors, str(tmp_path / "model.safetensors"))
    other = GPT2LMHeadModel.from_pretrained(tmp_path)
    for name, p in model.named_parameters():
        assert np.array_equal(other.params[name], p)


def _checkpoint(tmp_path, edit_tensors=None, edit_config=None):
    from safetensors.numpy import save_file

    model = GPT2LMHeadModel.from_pretrained(TINY)
    tensors = {n: p.copy() for n, p in model.named_parameters()}
    cfg = json.loads((TINY / "config.json").read_text())
    if edit_tensors:
        edit_tensors(tensors)
    if edit_config:
        edit_config(cfg)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(tmp_path / "model.safetensors"))
    return tmp_path


@pytest.mark.parametrize("edit_tensors, edit_config, message", [
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), None, "lacks transformer.h.1.mlp.c_fc.bias"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(48, np.float32)}), None, "unexpected tensor"),
    (None, lambda c: c.update(n_embd=64), "has shape"),
    (None, lambda c: c.update(n_layer=3), "lacks transformer.h.2"),
    (None, lambda c: c.update(vocab_size=66), "transformer.wte.weight has shape"),
    (lambda t: t.update({"lm_head.weight": np.zeros((65, 48), np.float32)}), None, "untied"),
    (None, lambda c: c.update(n_head=5), "not a multiple of n_head"),
    (None, lambda c: c.update(activation_function="relu"), "activation_function"),
    (None, lambda c: c.update(model_type="llama"), "not a GPT-2 config"),
])
def test_mismatched_checkpoint_is_a_clear_error(tmp_path, edit_tensors, edit_config, message):
    path = _checkpoint(tmp_path, edit_tensors, edit_config)
    with pytest.raises(ValueError, match=message):
        GPT2LMHeadModel.from_pretrained(path)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        GPT2LMHeadModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="config"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((TINY / "config.json").read_text())
    with pytest.raises(ValueError, match="no model.safetensors"):
        GPT2LMHeadModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read"):
        GPT2LMHeadModel.from_pretrained(tmp_path)


# ---- config, init, parameters


def test_config_defaults_validation_and_json():
    c = GPT2Config()
    assert (c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head) == (50257, 1024, 768, 12, 12)
    assert c.activation_function == "gelu_new" and c.tie_word_embeddings and c.model_type == "gpt2"
    assert GPT2Config.from_dict(json.loads(c.to_json_string())) == c
    for bad in (dict(n_embd=10, n_head=3), dict(n_layer=0), dict(vocab_size=-1), dict(n_head=2.0),
                dict(layer_norm_epsilon=0.0), dict(n_inner=0), dict(tie_word_embeddings=False)):
        with pytest.raises(ValueError):
            GPT2Config(**bad)


def test_init_and_parameter_views():
    cfg = GPT2Config(vocab_size=65, n_positions=64, n_embd=64, n_layer=4, n_head=4)
    model = GPT2LMHeadModel(cfg, seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == 2 + 12 * 4 + 2 and "lm_head.weight" not in names
    C, L = 64, 4
    assert model.num_parameters() == 65 * C + 64 * C + L * (12 * C * C + 13 * C) + 2 * C
    p = model.params
    assert abs(p["transformer.h.0.mlp.c_fc.weight"].std() - 0.02) < 0.002
    assert abs(p["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(2 * L)) < 0.001
    assert (p["transformer.h.3.ln_2.weight"] == 1).all() and (p["transformer.h.3.attn.c_attn.bias"] == 0).all()
    assert p["transformer.h.0.attn.c_attn.weight"].shape == (C, 3 * C)
    assert p["transformer.h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    # same seed, same weights; views write through to the model
    assert np.array_equal(GPT2LMHeadModel(cfg, seed=0).params["transformer.wte.weight"], p["transformer.wte.weight"])
    ids = np.arange(8)[None] % 65
    before = model(ids).logits
    p["transformer.ln_f.bias"] += 1.0
    assert not np.allclose(model(ids).logits, before)


# ---- optimizer


def test_adamw_state_round_trip_resumes_bit_exactly():
    cfg = GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 20, size=(2, 8)) for _ in range(4)]

    def train(model, opt, steps):
        for ids in steps:
            opt.zero_grad()
            model.forward_backward(ids, np.roll(ids, -1, axis=1))
            clip_grad_norm_(model, 1.0)
            opt.step()

    a = GPT2LMHeadModel(cfg, seed=4)
    opt_a = AdamW(a, lr=1e-2, weight_decay=0.1)
    train(a, opt_a, batches)
    b = GPT2LMHeadModel(cfg, seed=4)
    opt_b = AdamW(b, lr=1e-2, weight_decay=0.1)
    train(b, opt_b, batches[:2])
    state, weights = opt_b.state_dict(), b.state_dict()
    c = GPT2LMHeadModel(cfg, seed=99)
    c.load_state_dict(weights)
    opt_c = AdamW(c, lr=1e-2, weight_decay=0.1)
    opt_c.load_state_dict(state)
    train(c, opt_c, batches[2:])
    for name, p in a.named_parameters():
        assert np.array_equal(p, c.params[name]), name
    with pytest.raises(ValueError, match="moments"):
        other = GPT2LMHeadModel(GPT2Config(vocab_size=21, n_positions=8, n_embd=16, n_layer=1, n_head=2))
        AdamW(other).load_state_dict(state)


def test_adamw_decays_only_matrices():
    cfg = GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    model = random_model(cfg)
    before = model.state_dict()
    opt = AdamW(model, lr=0.1, weight_decay=0.5)
    opt.step()  # zero gradients: only weight decay moves anything
    for name, p in model.named_parameters():
        want = before[name] * np.float32(1 - 0.1 * 0.5) if p.ndim >= 2 else before[name]
        assert np.allclose(p, want, rtol=1e-6, atol=0), name
    for bad in (dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(eps=float("nan")), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            AdamW(model, **bad)


def test_clip_grad_norm():
    cfg = GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    model = random_model(cfg)
    ids = np.arange(16).reshape(2, 8)
    model.forward_backward(ids, ids)
    _, grads, _ = model.flat_buffers()
    g0 = grads.copy()
    norm = float(np.linalg.norm(g0.astype(np.float64)))
    assert clip_grad_norm_(model, 10 * norm) == pytest.approx(norm, rel=1e-6)
    assert np.array_equal(grads, g0)  # below the bound: untouched
    assert clip_grad_norm_(model, norm / 4) == pytest.approx(norm, rel=1e-6)
    assert np.linalg.norm(grads.astype(np.float64)) == pytest.approx(norm / 4, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(model, 0.0)


# ---- generation with the KV cache


def test_generate_equals_argmax_of_full_recomputation():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=24, n_embd=32, n_layer=2, n_head=4), seed=12)
    for _, p in model.named_parameters():
        if p.ndim == 2:
            p *= 20  # sharp distributions: greedy decoding then wanders instead of repeating one token
    prompt = [3, 17, 5, 9]
    out = model.generate(prompt, max_new_tokens=12)
    assert out.shape == (1, 16) and out[0, :4].tolist() == prompt
    seq = list(prompt)
    for _ in range(12):
        seq.append(int(model(np.array([seq])).logits[0, -1].argmax()))
    assert out[0].tolist() == seq
    assert len(set(seq[4:])) > 1  # not a degenerate repetition
    # the cache reuses a shared prefix; step / reset follow it
    model.reset()
    full = model(np.array([seq])).logits[0]
    assert np.allclose(model.step(seq[:10], all_logits=True), full[:10], atol=1e-5)
    assert model.n_past == 10
    assert np.allclose(model.step(seq[10:11]), full[10], atol=1e-5)
    assert np.allclose(model._prefill(seq[:6]), full[5], atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        model.generate(prompt, max_new_tokens=30)


def test_score_matches_full_forward():
    model = random_model(GPT2Config(vocab_size=30, n_positions=16, n_embd=16, n_layer=2, n_head=2), seed=5)
    ids = np.random.default_rng(6).integers(0, 30, size=40)  # longer than the context: sliding windows
    res = model.score(ids, stride=8)
    logits = model(ids[None, :16]).logits[0].astype(np.float64)
    lp = logits - logits.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    want = lp[np.arange(15), ids[1:16]]  # the first window scores tokens 1..15
    assert res.logprobs.shape == (39,) and np.allclose(res.logprobs[:15], want, atol=1e-4)
    assert np.isfinite(res.perplexity)


def test_generate_needs_a_tokenizer_only_for_text():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=24, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="tokenizer"):
        _ = model.tokenizer
    model.tokenizer = "anything"
    assert model.tokenizer == "anything"


# ---- bad input


def test_bad_inputs_raise_value_errors():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    ids = np.zeros((2, 4), np.int64)
    cases = [
        (lambda: model.forward_backward(ids + 20, ids), "out of range"),
        (lambda: model.forward_backward(ids - 1, ids), "out of range"),
        (lambda: model(np.array([[1, 2, 25]])), "out of range"),
        (lambda: model.forward_backward(np.zeros((1, 9), np.int64), np.zeros((1, 9), np.int64)), "n_positions"),
        (lambda: model.forward_backward(ids, ids[:, :3]), "shape"),
        (lambda: model.forward_backward(ids, ids + 20), "labels"),
        (lambda: model.forward_backward(ids, np.full_like(ids, -100)), "-100"),
        (lambda: model.forward_backward(np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64)), "empty"),
        (lambda: model.step([1, 2, 99]), "out of range"),
        (lambda: model.generate([1, 2, 20], max_new_tokens=2), "out of range"),
        (lambda: GPT2LMHeadModel("config"), "GPT2Config"),
    ]
    # ids of the wrong type (floats are never truncated to ids) raise TypeError naming the argument
    cases += [
        (lambda: model.forward_backward(ids.astype(np.float32), ids), "input_ids must hold integer"),
        (lambda: model.forward_backward(ids, ids.astype(np.float64)), "labels must be an integer"),
        (lambda: model(np.array([[1.0, 2.0]])), "input_ids must hold integer"),
    ]
    for fn, message in cases:
        with pytest.raises((TypeError, ValueError), match=message) as e:
            fn()
        assert e.type is (TypeError if "must" in message else ValueError)
    assert not any(g.any() for _, g in model.named_gradients())  # nothing half-done


def test_batch_shape_changes_reuse_and_reallocate_activations():
    model = random_model(GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    a = np.arange(16).reshape(2, 8) % 20
    la = model.loss(a, a)
    lb = model.loss(a[:1, :5], a[:1, :5])
    assert model.loss(a, a) == la and np.isfinite(lb)
    assert pyllm.GPT2LMHeadModel is GPT2LMHeadModel


def test_runtime_logits_equal_the_training_forward():
    # generation runs on the decoder runtime, training on the forward/backward kernels: the same logits
    cfg = GPT2Config(vocab_size=50, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    model = random_model(cfg, seed=5, noise=0.3)
    ids = np.random.default_rng(2).integers(0, 50, size=(1, 24))
    train = model(ids).logits[0]
    model.reset()
    run = model.step(ids[0], all_logits=True)
    np.testing.assert_allclose(run, train, atol=1e-5 * np.abs(train).max())
    # one token at a time: the same bits as the runtime's prefill
    model.reset()
    steps = np.stack([model.step([int(t)]) for t in ids[0]])
    assert np.array_equal(steps, run)
    # after a training step the runtime follows the new parameters
    opt = AdamW(model, lr=1e-2)
    model.forward_backward(ids[:, :-1], ids[:, 1:])
    opt.step()
    after = model(ids).logits[0]
    assert not np.allclose(after, train)
    # no reset: the runtime notices the changed parameters itself
    np.testing.assert_allclose(model._prefill([int(t) for t in ids[0]]), after[-1], atol=1e-5 * np.abs(after).max())
    model.reset()
    np.testing.assert_allclose(model.step(ids[0], all_logits=True), after, atol=1e-5 * np.abs(after).max())
    changed = GPT2LMHeadModel(cfg, seed=6)
    changed.load_state_dict(model.state_dict())
    np.testing.assert_allclose(changed.step(ids[0], all_logits=True), after, atol=1e-5 * np.abs(after).max())
