"""Record the PyTorch/transformers numbers the GPT-2 training tests compare
against: a tiny random GPT2LMHeadModel saved by transformers, its loss,
gradients and logits on a fixed batch, and its weights after three clipped
AdamW steps. Not run by the tests; rerun it to regenerate.

    python scripts/record_gpt2_refs.py

Needs torch and transformers. Writes tests/data/gpt2_tiny/ (config.json +
model.safetensors) and tests/data/gpt2_reference.npz.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"

CONFIG = dict(vocab_size=65, n_positions=32, n_embd=48, n_layer=2, n_head=4)
B, T = 4, 32
LR, WEIGHT_DECAY, BETAS, EPS = 1e-3, 0.1, (0.9, 0.95), 1e-8
MAX_NORM = 0.5  # below the gradient norms here, so every step clips
STEPS = 3
SEED = 1234


def batches(rng: np.random.Generator, n: int) -> List[Dict[str, np.ndarray]]:
    """n batches of ids (B, T) and labels (B, T): the next token, with the
    last position and a few others ignored (-100)."""
    out = []
    for _ in range(n):
        seq = rng.integers(0, CONFIG["vocab_size"], size=(B, T + 1))
        labels = seq[:, 1:].copy()
        labels[0, :5] = -100
        labels[2, -3:] = -100
        out.append({"ids": seq[:, :T].astype(np.int64), "labels": labels.astype(np.int64)})
    return out


def pyllm_loss(torch: Any, logits: Any, labels: Any) -> Any:
    """Mean cross-entropy of logits[b, t] against labels[b, t] (no shift), -100 ignored."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100)


def param_groups(model: Any) -> List[Dict[str, Any]]:
    """Decay for matrices and embeddings (ndim >= 2), none for biases and norms."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DATA))
    args = parser.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    cfg = GPT2Config(**CONFIG, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg).float()
    with torch.no_grad():  # biases and norms away from 0 and 1, so their gradients say something
        for p in model.parameters():
            if p.ndim < 2:
                p.add_(0.1 * torch.randn_like(p))
    model.train()
    out = Path(args.out)
    model.save_pretrained(out / "gpt2_tiny", safe_serialization=True)

    rng = np.random.default_rng(SEED)
    data = batches(rng, 1 + STEPS)
    rec: Dict[str, np.ndarray] = {}
    rec["ids"], rec["labels"] = data[0]["ids"], data[0]["labels"]

    # loss, gradients and logits on the first batch
    ids, labels = torch.from_numpy(data[0]["ids"]), torch.from_numpy(data[0]["labels"])
    logits = model(ids).logits
    loss = pyllm_loss(torch, logits, labels)
    loss.backward()
    rec["loss"] = np.float64(loss.item())
    rec["logits"] = logits.detach().numpy().astype(np.float32)
    for name, p in model.named_parameters():
        rec["grad/" + name] = p.grad.detach().numpy().copy()
    model.zero_grad()

    # three steps of forward, backward, clip, AdamW on the next batches
    opt = torch.optim.AdamW(param_groups(model), lr=LR, betas=BETAS, eps=EPS)
    losses, norms = [], []
    for k in range(STEPS):
        batch = data[1 + k]
        rec[f"step{k}/ids"], rec[f"step{k}/labels"] = batch["ids"], batch["labels"]
        opt.zero_grad()
        loss = pyllm_loss(torch, model(torch.from_numpy(batch["ids"])).logits, torch.from_numpy(batch["labels"]))
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)))
        opt.step()
        losses.append(loss.item())
    rec["step_losses"] = np.array(losses)
    rec["step_norms"] = np.array(norms)
    for name, p in model.named_parameters():
        rec["after/" + name] = p.detach().numpy().copy()
    rec["hparams"] = np.array([LR, WEIGHT_DECAY, BETAS[0], BETAS[1], EPS, MAX_NORM])
    np.savez_compressed(out / "gpt2_reference.npz", **rec)
    print(f"loss {rec['loss']:.6f}, step losses {losses}, grad norms {norms} (clipped above {MAX_NORM})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
