"""Record what transformers' pipelines return, for tests/test_pipelines_bert.py: text-classification
over all-MiniLM-L6-v2 with a fixed random 3-label head (drawn from numpy's seeded generator and saved
by pyllm, so both libraries load one directory), in three configurations (3 named labels; the same
as multi-label; one regression output), and feature-extraction over the bare all-MiniLM-L6-v2.
Not run by the tests; rerun it to regenerate.

    python scripts/record_pipeline_refs.py

Needs torch and transformers. Writes tests/data/pipeline_refs.npz (the head, the calls and their
results; feature-extraction hidden states as arrays).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"

HEAD_SEED, HEAD_STD = 20240, 0.1  # logits of order 1: the labels' order is not decided by rounding
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
LONG = "This sentence is rather long and it keeps going " + "on and on " * 300 + "until it is cut."
TEXTS = ["I love this film, it is wonderful!", "The service was slow and the food was cold.", "ok",
         "Ünïcödé àccents, 数字 and emoji 🎉 in one line", "It is what it is."]
PAIRS = [{"text": "How old are you?", "text_pair": "I am twenty years old."},
         {"text": "Is it raining?", "text_pair": "No."}]
# (configuration, pipeline call inputs, call keywords)
CLASSIFY_CALLS: List[Any] = [
    ("labels3", TEXTS[0], {}),
    ("labels3", TEXTS, {}),
    ("labels3", TEXTS, {"top_k": None}),
    ("labels3", TEXTS, {"top_k": 2}),
    ("labels3", TEXTS[1], {"top_k": None}),
    ("labels3", TEXTS[1], {"top_k": 1}),
    ("labels3", TEXTS, {"function_to_apply": "sigmoid"}),
    ("labels3", TEXTS, {"function_to_apply": "none", "top_k": None}),
    ("labels3", PAIRS[0], {}),
    ("labels3", PAIRS, {"top_k": None}),
    ("labels3", [LONG, TEXTS[2]], {"truncation": True}),
    ("labels3", TEXTS, {"truncation": True, "max_length": 6, "top_k": None}),
    ("labels3", TEXTS, {"batch_size": 4, "top_k": None}),
    ("multilabel", TEXTS, {"top_k": None}),
    ("multilabel", TEXTS[0], {}),
    ("regression", TEXTS, {}),
    ("regression", TEXTS, {"top_k": None, "function_to_apply": "sigmoid"}),
]
# (inputs, call keywords); the hidden states are stored whole, so the texts stay few and short
FEATURE_CALLS: List[Any] = [
    (TEXTS[0], {}),
    (TEXTS[1:4], {}),
    (TEXTS[1], {"return_tensors": True}),
    (TEXTS[:2], {"tokenize_kwargs": {"max_length": 5, "truncation": True}}),
]


def head() -> Dict[str, np.ndarray]:
    """The fixed random classifier (3, 384) and bias (3,)."""
    rng = np.random.default_rng(HEAD_SEED)
    return {"classifier.weight": (rng.standard_normal((3, 384)) * HEAD_STD).astype(np.float32),
            "classifier.bias": (rng.standard_normal(3) * HEAD_STD).astype(np.float32)}


def classifier_dir(out: Path, minilm: Path, name: str, weights: Dict[str, np.ndarray]) -> Path:
    """all-MiniLM-L6-v2 with the head, saved by pyllm as configuration ``name``, plus the tokenizer files."""
    from pyllm.models.bert import BertForSequenceClassification

    kw: Dict[str, Any] = {"id2label": dict(LABELS)}
    if name == "multilabel":
        kw["problem_type"] = "multi_label_classification"
    if name == "regression":
        kw = {"num_labels": 1, "problem_type": "regression"}
    model = BertForSequenceClassification.from_pretrained(minilm, **kw)
    rows = model.config.num_labels
    for key, value in weights.items():
        model.params[key][...] = value[:rows]
    d = out / name
    model.save_pretrained(d)
    for f in TOKENIZER_FILES:
        if (minilm / f).is_file():
            shutil.copy(minilm / f, d / f)
    return d


def _plain(value: Any) -> Any:
    """A pipeline result as JSON (torch tensors should not occur in classification results)."""
    return json.loads(json.dumps(value))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DATA / "pipeline_refs.npz"))
    args = ap.parse_args()

    import torch
    import transformers

    from pyllm import hub

    torch.manual_seed(0)
    minilm = hub.resolve_model_dir("all-MiniLM-L6-v2")
    weights = head()
    arrays: Dict[str, np.ndarray] = {k: v for k, v in weights.items()}
    cases: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pipes = {}
        for name in ("labels3", "multilabel", "regression"):
            d = classifier_dir(Path(tmp), minilm, name, weights)
            pipes[name] = transformers.pipeline("text-classification", model=str(d), device="cpu",
                                                model_kwargs={"attn_implementation": "eager"})
        for name, inputs, kwargs in CLASSIFY_CALLS:
            result = pipes[name](inputs, **kwargs)
            cases.append({"task": "text-classification", "config": name, "inputs": inputs, "kwargs": kwargs,
                          "result": _plain(result)})
    fe = transformers.pipeline("feature-extraction", model=str(minilm), device="cpu",
                               model_kwargs={"attn_implementation": "eager"})
    for i, (inputs, kwargs) in enumerate(FEATURE_CALLS):
        result = fe(inputs, **kwargs)
        single = isinstance(inputs, str)
        outs = [result] if single else list(result)
        keys = []
        for j, r in enumerate(outs):
            a = r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r, dtype=np.float32)
            keys.append(f"fe{i}_{j}")
            arrays[keys[-1]] = a.astype(np.float32)
        cases.append({"task": "feature-extraction", "inputs": inputs, "kwargs": kwargs, "arrays": keys,
                      "tensor": isinstance(outs[0], torch.Tensor), "nested_list": isinstance(outs[0], list)})
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "labels": LABELS,
            "head_seed": HEAD_SEED, "cases": cases}
    arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(cases)} calls (transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
