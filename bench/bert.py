"""BERT speed beside its peers in the same run, on all-MiniLM-L6-v2: sentence embeddings
(batch 32, length 128, mean pooling + L2 norm) against transformers + torch and, when
installed, CTranslate2 (its converter on the same HF directory, float32); and fine-tuning
steps (batch 16, length 128, BertForSequenceClassification with 2 labels, forward +
backward + AdamW, dropout as in training) against transformers + torch. Medians of
interleaved runs; ratios are peer time / pyllm time (above 1: pyllm faster).

    python bench/bert.py [--threads 2] [--repeats 7]

Not a correctness test (tests/test_bert*.py are).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import interleaved_medians  # noqa: E402


def batch(rng: np.random.Generator, B: int, T: int, vocab: int) -> Dict[str, np.ndarray]:
    """Random ids (B, T) framed as [CLS] ... [SEP] with a quarter of the rows padded to half length."""
    ids = rng.integers(1000, vocab, size=(B, T)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones((B, T), dtype=np.int64)
    for b in range(0, B, 4):
        ids[b, T // 2:] = 0
        ids[b, T // 2 - 1] = 102
        mask[b, T // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((B, T), dtype=np.int64)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-ct2", action="store_true")
    args = ap.parse_args()

    import torch
    import transformers

    import pyllm
    from pyllm import hub

    pyllm.set_num_threads(args.threads, adaptive=False)
    torch.set_num_threads(args.threads)
    d = hub.resolve_model_dir("all-MiniLM-L6-v2")
    rng = np.random.default_rng(0)

    # ---- inference: embeddings
    emb = batch(rng, 32, 128, 30522)
    ours = pyllm.BertModel.from_pretrained(d)
    ref = transformers.BertModel.from_pretrained(d, attn_implementation="sdpa").eval()
    t_in = {k: torch.from_numpy(v) for k, v in emb.items()}

    def pyllm_embed() -> Any:
        return ours.embed(emb["input_ids"], emb["attention_mask"], emb["token_type_ids"], normalize=True)

    def torch_embed() -> Any:
        with torch.inference_mode():
            h = ref(**t_in).last_hidden_state
            m = t_in["attention_mask"].unsqueeze(-1).to(h.dtype)
            return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)

    fns: Dict[str, Callable[[], Any]] = {"pyllm": pyllm_embed, "torch": torch_embed}
    a, b = pyllm_embed(), torch_embed().numpy()
    print(f"embeddings: min cosine pyllm vs torch {float((a * b).sum(1).min()):.6f}")
    if not args.skip_ct2:
        try:
            import ctranslate2

            out = Path(tempfile.mkdtemp()) / "ct2"
            subprocess.run(["ct2-transformers-converter", "--model", str(d), "--output_dir", str(out)], check=True,
                           capture_output=True)
            enc = ctranslate2.Encoder(str(out), device="cpu", compute_type="float32", intra_threads=args.threads)
            lengths = emb["attention_mask"].sum(1).astype(np.int32)
            ids_list = [row[:n].tolist() for row, n in zip(emb["input_ids"], lengths)]

            def ct2_embed() -> Any:
                h = np.asarray(enc.forward_batch(ids_list).last_hidden_state)
                m = emb["attention_mask"][:, :h.shape[1], None].astype(np.float32)
                v = (h * m).sum(1) / m.sum(1)
                return v / np.linalg.norm(v, axis=1, keepdims=True)

            c = ct2_embed()
            print(f"embeddings: min cosine ctranslate2 vs torch {float((c * b).sum(1).min()):.6f}")
            fns["ctranslate2"] = ct2_embed
        except Exception as e:  # a peer that cannot run is reported, not fatal
            print(f"ctranslate2 not measured: {type(e).__name__}: {e}")
    t = interleaved_medians(fns, repeats=args.repeats, warmup=1, min_time=0.5)
    sents = 32
    print(f"inference, batch 32 x 128, {args.threads} threads (sentences/s):")
    for name, sec in t.items():
        print(f"  {name:12s} {sents / sec:8.1f}/s  ({sec * 1e3:.1f} ms/batch)  peer/pyllm {sec / t['pyllm']:.2f}x")

    # ---- fine-tuning steps
    tr = batch(rng, 16, 128, 30522)
    labels = rng.integers(0, 2, size=16)
    clf = pyllm.BertForSequenceClassification.from_pretrained(d, num_labels=2, seed=0).train()
    opt = pyllm.AdamW(clf, lr=2e-5, weight_decay=0.01)
    with tempfile.TemporaryDirectory() as tmp:
        clf.save_pretrained(tmp)
        tclf = transformers.BertForSequenceClassification.from_pretrained(tmp, attn_implementation="sdpa").train()
    topt = torch.optim.AdamW(tclf.parameters(), lr=2e-5, weight_decay=0.01)
    tt = {k: torch.from_numpy(v) for k, v in tr.items()}
    tlab = torch.from_numpy(labels)

    def pyllm_step() -> Any:
        loss = clf.forward_backward(tr["input_ids"], labels, attention_mask=tr["attention_mask"],
                                    token_type_ids=tr["token_type_ids"])
        opt.step()
        opt.zero_grad()
        return loss

    def torch_step() -> Any:
        topt.zero_grad()
        loss = tclf(**tt, labels=tlab).loss
        loss.backward()
        topt.step()
        return loss

    t = interleaved_medians({"pyllm": pyllm_step, "torch": torch_step}, repeats=args.repeats, warmup=1,
                            min_time=0.0, prime=False)
    print(f"fine-tuning, batch 16 x 128, {args.threads} threads (steps/s):")
    for name, sec in t.items():
        print(f"  {name:12s} {1 / sec:8.2f}/s  ({sec * 1e3:.0f} ms/step)  peer/pyllm {sec / t['pyllm']:.2f}x")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
