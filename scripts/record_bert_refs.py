"""Record the transformers/PyTorch numbers the BERT tests compare against, on the registered
all-MiniLM-L6-v2 directory: token ids of a padded batch (transformers' BertTokenizerFast),
the hidden states and pooler output of BertModel, a 3-label BertForSequenceClassification
(a classifier drawn from numpy's seeded generator) with its logits, loss, gradients and
weights after three AdamW steps (dropout off), and sentence embeddings computed as
sentence-transformers computes them for this model (mean pooling over the attention mask,
then L2 normalisation). Not run by the tests; rerun it to regenerate.

    python scripts/record_bert_refs.py

Needs torch and transformers. Writes tests/data/bert_reference.npz.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"

TEXTS = ["The cat sat on the mat.", "Completely unrelated: stock prices fell sharply on Tuesday!", "ok",
         "Ünïcödé àccents and 数字 123"]
LABELS = [2, 0, 1, 2]
NUM_LABELS = 3
HEAD_SEED = 0
LR, WEIGHT_DECAY, BETAS, EPS, STEPS = 1e-3, 0.01, (0.9, 0.999), 1e-8, 3
# the gradients and stepped weights stored (the live tests compare every parameter)
GRAD_NAMES = ["classifier.weight", "classifier.bias", "bert.pooler.dense.bias",
              "bert.encoder.layer.5.attention.self.query.bias", "bert.encoder.layer.5.output.LayerNorm.weight",
              "bert.encoder.layer.0.intermediate.dense.bias", "bert.encoder.layer.0.attention.self.value.bias",
              "bert.embeddings.LayerNorm.weight", "bert.embeddings.token_type_embeddings.weight"]
EMBED_TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
               "A man is riding a horse.", "Two men pushed carts through the woods.",
               "A monkey is playing drums.", "Someone in a gorilla costume is playing a set of drums.",
               "This sentence is rather long and it keeps going " + "on and on " * 40 + "until it is cut."]


def head_weights(hidden: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(HEAD_SEED)
    return {"classifier.weight": (rng.standard_normal((NUM_LABELS, hidden)) * 0.02).astype(np.float32),
            "classifier.bias": (rng.standard_normal(NUM_LABELS) * 0.02).astype(np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DATA / "bert_reference.npz"))
    args = ap.parse_args()

    import torch
    from transformers import BertForSequenceClassification, BertModel, BertTokenizerFast

    from pyllm import hub

    torch.manual_seed(0)
    d = hub.resolve_model_dir("all-MiniLM-L6-v2")
    tok = BertTokenizerFast.from_pretrained(d)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    out: Dict[str, np.ndarray] = {k: v.numpy() for k, v in enc.items()}
    base = BertModel.from_pretrained(d, attn_implementation="eager").eval()
    with torch.no_grad():
        r = base(**enc, output_hidden_states=True)
    out["last_hidden_state"] = r.last_hidden_state.numpy()
    out["pooler_output"] = r.pooler_output.numpy()
    out["hidden_state_0"] = r.hidden_states[0].numpy()
    out["hidden_state_3"] = r.hidden_states[3].numpy()

    model = BertForSequenceClassification.from_pretrained(d, num_labels=NUM_LABELS,
                                                          attn_implementation="eager").eval()
    head = head_weights(model.config.hidden_size)
    with torch.no_grad():
        for name, value in head.items():
            dict(model.named_parameters())[name].copy_(torch.from_numpy(value))
    for name, value in head.items():
        out["head." + name] = value
    labels = torch.tensor(LABELS)
    out["labels"] = labels.numpy()
    res = model(**enc, labels=labels)
    res.loss.backward()
    out["logits"] = res.logits.detach().numpy()
    out["loss"] = np.float32(res.loss.item())
    params = dict(model.named_parameters())
    for name in GRAD_NAMES:
        out["grad." + name] = params[name].grad.numpy().copy()
    # AdamW, ndim >= 2 decayed (pyllm.AdamW's groups), the same batch each step
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    for _ in range(STEPS):
        opt.zero_grad()
        model(**enc, labels=labels).loss.backward()
        opt.step()
    for name in GRAD_NAMES:
        out["stepped." + name] = params[name].detach().numpy().copy()

    # sentence embeddings: sentence-transformers' Transformer (max_seq_length 256) + Pooling (mean) + Normalize
    e = tok(EMBED_TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = base(**e).last_hidden_state
    m = e["attention_mask"].unsqueeze(-1).float()
    emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    out["embeddings"] = torch.nn.functional.normalize(emb, p=2, dim=1).numpy()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {sum(v.nbytes for v in out.values()) / 1e6:.2f} MB of arrays")


if __name__ == "__main__":
    main()
