"""BERT speed beside its peers in the same run, on all-MiniLM-L6-v2: sentence embeddings
(batch 32, length 128, mean pooling + L2 norm) against transformers + torch and, when
installed, CTranslate2 (its converter on the same HF directory, float32); and fine-tuning
steps (batch 16, length 128, BertForSequenceClassification with 2 labels, forward +
backward + AdamW, dropout as in training) against transformers + torch. Two kinds of
batch: random ids with a quarter of the rows padded to half length, and texts of the
sentiment corpus (a seeded sample) padded to length 128 as `padding="max_length"` does;
the padding share of each is printed (pyllm computes only the real tokens; torch computes
every position; CTranslate2 takes the unpadded token lists). Medians of interleaved runs;
ratios are peer time / pyllm time (above 1: pyllm faster).

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


def corpus_batches(tok: Any, rng: np.random.Generator, n: int, B: int, T: int) -> list:
    """n batches (B, T) of corpus texts, a seeded sample, padded to T."""
    from pyllm.data.sentiment import read_sentiment_corpus

    texts = [r.text for r in read_sentiment_corpus()]
    pick = rng.choice(len(texts), size=n * B, replace=False)
    out = []
    for i in range(n):
        enc = tok([texts[j] for j in pick[i * B:(i + 1) * B]], padding="max_length", truncation=True, max_length=T,
                  return_tensors="np")
        out.append({k: np.ascontiguousarray(enc[k], dtype=np.int64)
                    for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def padding_share(batches: list) -> float:
    return 1.0 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].size for b in batches)


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
    ours = pyllm.BertModel.from_pretrained(d)
    ref = transformers.BertModel.from_pretrained(d, attn_implementation="sdpa").eval()
    tok = pyllm.BertTokenizerFast.from_pretrained(d)
    kinds = {"random": [batch(rng, 32, 128, 30522)], "corpus": corpus_batches(tok, rng, 4, 32, 128)}
    enc = None
    if not args.skip_ct2:
        try:
            import ctranslate2

            out = Path(tempfile.mkdtemp()) / "ct2"
            subprocess.run(["ct2-transformers-converter", "--model", str(d), "--output_dir", str(out)], check=True,
                           capture_output=True)
            enc = ctranslate2.Encoder(str(out), device="cpu", compute_type="float32", intra_threads=args.threads)
        except Exception as e:  # a peer that cannot run is reported, not fatal
            print(f"ctranslate2 not measured: {type(e).__name__}: {e}")
    for kind, batches in kinds.items():
        t_in = [{k: torch.from_numpy(v) for k, v in emb.items()} for emb in batches]

        def pyllm_embed(batches: list = batches) -> Any:
            return np.concatenate([ours.embed(e["input_ids"], e["attention_mask"], e["token_type_ids"],
                                              normalize=True) for e in batches])

        def torch_embed(t_in: list = t_in) -> Any:
            vs = []
            with torch.inference_mode():
                for ti in t_in:
                    h = ref(**ti).last_hidden_state
                    m = ti["attention_mask"].unsqueeze(-1).to(h.dtype)
                    vs.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1))
            return torch.cat(vs)

        fns: Dict[str, Callable[[], Any]] = {"pyllm": pyllm_embed, "torch": torch_embed}
        a, b = pyllm_embed(), torch_embed().numpy()
        print(f"embeddings, {kind} batches: padding {padding_share(batches):.0%}; "
              f"min cosine pyllm vs torch {float((a * b).sum(1).min()):.6f}")
        if enc is not None:
            lists = [[row[:n].tolist() for row, n in zip(e["input_ids"], e["attention_mask"].sum(1))]
                     for e in batches]

            def ct2_embed(lists: list = lists, batches: list = batches) -> Any:
                vs = []
                for ids_list, e in zip(lists, batches):
                    h = np.asarray(enc.forward_batch(ids_list).last_hidden_state)
                    m = e["attention_mask"][:, :h.shape[1], None].astype(np.float32)
                    v = (h * m).sum(1) / m.sum(1)
                    vs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
                return np.concatenate(vs)

            c = ct2_embed()
            print(f"embeddings, {kind} batches: min cosine ctranslate2 vs torch {float((c * b).sum(1).min()):.6f}")
            fns["ctranslate2"] = ct2_embed
        t = interleaved_medians(fns, repeats=args.repeats, warmup=1, min_time=0.5)
        sents = 32 * len(batches)
        print(f"inference, {kind} batches 32 x 128, {args.threads} threads (sentences/s):")
        for name, sec in t.items():
            print(f"  {name:12s} {sents / sec:8.1f}/s  ({sec * 1e3 / len(batches):.1f} ms/batch)  "
                  f"peer/pyllm {sec / t['pyllm']:.2f}x")

    # ---- fine-tuning steps
    labels = rng.integers(0, 2, size=16)
    clf = pyllm.BertForSequenceClassification.from_pretrained(d, num_labels=2, seed=0).train()
    opt = pyllm.AdamW(clf, lr=2e-5, weight_decay=0.01)
    with tempfile.TemporaryDirectory() as tmp:
        clf.save_pretrained(tmp)
        tclf = transformers.BertForSequenceClassification.from_pretrained(tmp, attn_implementation="sdpa").train()
    topt = torch.optim.AdamW(tclf.parameters(), lr=2e-5, weight_decay=0.01)
    tlab = torch.from_numpy(labels)
    for kind, tr in {"random": batch(rng, 16, 128, 30522), "corpus": corpus_batches(tok, rng, 1, 16, 128)[0]}.items():
        tt = {k: torch.from_numpy(v) for k, v in tr.items()}

        def pyllm_step(tr: Dict[str, np.ndarray] = tr) -> Any:
            loss = clf.forward_backward(tr["input_ids"], labels, attention_mask=tr["attention_mask"],
                                        token_type_ids=tr["token_type_ids"])
            opt.step()
            opt.zero_grad()
            return loss

        def torch_step(tt: Dict[str, Any] = tt) -> Any:
            topt.zero_grad()
            loss = tclf(**tt, labels=tlab).loss
            loss.backward()
            topt.step()
            return loss

        t = interleaved_medians({"pyllm": pyllm_step, "torch": torch_step}, repeats=args.repeats, warmup=1,
                                min_time=0.0, prime=False)
        print(f"fine-tuning, {kind} batch 16 x 128 (padding {padding_share([tr]):.0%}), {args.threads} threads "
              "(steps/s):")
        for name, sec in t.items():
            print(f"  {name:12s} {1 / sec:8.2f}/s  ({sec * 1e3:.0f} ms/step)  peer/pyllm {sec / t['pyllm']:.2f}x")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
