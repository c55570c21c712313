"""GPT-2 checkpoints moving both ways between pyllm and transformers, and a
training step against live PyTorch on a shape the recorded test does not cover.
Needs torch and transformers (test extras)."""

from __future__ import annotations

import numpy as np
import pytest

from pyllm import AdamW, GPT2Config, GPT2LMHeadModel, clip_grad_norm_

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def test_pyllm_checkpoint_loads_in_transformers_with_equal_logits(tmp_path):
    cfg = GPT2Config(vocab_size=70, n_positions=40, n_embd=40, n_layer=3, n_head=5, n_inner=72,
                     bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(cfg, seed=3)
    rng = np.random.default_rng(0)
    for _, p in model.named_parameters():
        p += 0.05 * rng.standard_normal(p.shape).astype(np.float32)
    model.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied
    ids = rng.integers(0, 70, size=(2, 33))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
    assert rel_err(model(ids).logits, want) <= 1e-4
    # hidden states: the embeddings, each block's output but the last, then ln_f's; padded rows too
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    with torch.no_grad():
        full = hf(torch.from_numpy(ids[:1]), output_hidden_states=True).hidden_states
        cut = hf(torch.from_numpy(ids[1:, 4:]), output_hidden_states=True).hidden_states
    assert len(out.hidden_states) == len(full) == 4
    for got, w0, w1 in zip(out.hidden_states, full, cut):
        assert rel_err(got[0], w0[0].numpy()) <= 1e-5 and rel_err(got[1, 4:], w1[0].numpy()) <= 1e-5
        assert not got[1, :4].any()
    np.testing.assert_allclose(model.embed(ids[1:, 4:])[0], cut[-1][0].numpy().mean(0), atol=1e-5, rtol=0)


def test_transformers_checkpoint_trains_like_pytorch(tmp_path):
    torch.manual_seed(0)
    hcfg = transformers.GPT2Config(vocab_size=53, n_positions=24, n_embd=36, n_layer=2, n_head=6,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                   bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(hcfg).float()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(str(tmp_path))
    hf.train()
    model = GPT2LMHeadModel.from_pretrained(tmp_path)

    rng = np.random.default_rng(1)
    opt_t = torch.optim.AdamW([{"params": [p for p in hf.parameters() if p.ndim >= 2], "weight_decay": 0.05},
                               {"params": [p for p in hf.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                              lr=3e-3, betas=(0.8, 0.99), eps=1e-6)
    opt_p = AdamW(model, lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    for step in range(2):
        ids = rng.integers(0, 53, size=(3, 21))
        labels = rng.integers(0, 53, size=(3, 21))
        labels[1, 4:9] = -100
        opt_t.zero_grad()
        logits = hf(torch.from_numpy(ids)).logits
        loss_t = torch.nn.functional.cross_entropy(logits.reshape(-1, 53), torch.from_numpy(labels).reshape(-1))
        loss_t.backward()
        opt_p.zero_grad()
        loss_p = model.forward_backward(ids, labels)
        assert abs(loss_p - loss_t.item()) <= 1e-4 * loss_t.item()
        if step == 0:
            for name, p in hf.named_parameters():
                assert rel_err(model.grads[name], p.grad.numpy()) <= 1e-3, name
        norm_t = float(torch.nn.utils.clip_grad_norm_(hf.parameters(), 0.3))
        norm_p = clip_grad_norm_(model, 0.3)
        assert abs(norm_p - norm_t) <= 1e-4 * norm_t
        opt_t.step()
        opt_p.step()
    for name, p in hf.named_parameters():
        assert rel_err(model.params[name], p.detach().numpy()) <= 1e-3, name
