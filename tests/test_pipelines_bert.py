"""pipeline("text-classification" / "sentiment-analysis" / "feature-extraction") against what
transformers' pipelines returned for the same calls: recorded by scripts/record_pipeline_refs.py
(tests/data/pipeline_refs.npz) and live (transformers and torch are in the test extra), on
all-MiniLM-L6-v2 with a fixed random classifier head that both libraries load; plus the results'
shapes, the older return_all_scores spelling and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pyllm import hub, pipeline
from pyllm.models.bert import BertForSequenceClassification, BertModel
from pyllm.pipelines import FeatureExtractionPipeline, TextClassificationPipeline

REF = Path(__file__).parent / "data" / "pipeline_refs.npz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
SCORE_ATOL = 2e-5  # logits agree with transformers' to ~1e-6; scores are at most as far apart
HIDDEN_ATOL = 1e-4  # as tests/test_bert.py's hidden states


@pytest.fixture(scope="module")
def ref():
    data = dict(np.load(REF))
    meta = json.loads(str(data.pop("meta")))
    return meta, data


@pytest.fixture(scope="module")
def minilm_dir():
    return hub.resolve_model_dir("all-MiniLM-L6-v2")


def _classifier_dir(out: Path, minilm: Path, name: str, weights, labels) -> Path:
    """The directory scripts/record_pipeline_refs.py built: all-MiniLM-L6-v2 with the recorded head,
    saved by pyllm as configuration ``name``, plus the tokenizer files."""
    kw = {"id2label": {int(k): v for k, v in labels.items()}}
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


@pytest.fixture(scope="module")
def dirs(ref, minilm_dir, tmp_path_factory):
    meta, data = ref
    weights = {k: data[k] for k in ("classifier.weight", "classifier.bias")}
    out = tmp_path_factory.mktemp("classifiers")
    return {name: _classifier_dir(out, minilm_dir, name, weights, meta["labels"])
            for name in ("labels3", "multilabel", "regression")}


@pytest.fixture(scope="module")
def pipes(dirs):
    return {name: pipeline("text-classification", model=str(d)) for name, d in dirs.items()}


@pytest.fixture(scope="module")
def features(minilm_dir):
    return pipeline("feature-extraction", model=str(minilm_dir))


def assert_same_result(got, want, where=""):
    """Same nesting, same labels in the same order, scores within SCORE_ATOL."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_result(g, w, f"{where}[{i}]")
        return
    assert isinstance(got, dict) and set(got) == {"label", "score"}, f"{where}: {got!r}"
    assert got["label"] == want["label"], f"{where}: {got!r} vs {want!r}"
    assert isinstance(got["score"], float)
    assert abs(got["score"] - want["score"]) <= SCORE_ATOL, f"{where}: {got!r} vs {want!r}"


def _cases(meta, task):
    return [c for c in meta["cases"] if c["task"] == task]


# ---- recorded

def test_the_recording_covers_the_result_shapes(ref):
    meta, _ = ref
    cases = _cases(meta, "text-classification")
    shapes = {(isinstance(c["inputs"], str), "top_k" in c["kwargs"], type(c["result"][0]).__name__
               if isinstance(c["result"], list) else "dict") for c in cases}
    # one text: [dict]; one text with top_k: [dict, ...]; texts: [dict, ...]; texts with top_k: [[...], ...]
    assert {(True, False, "dict"), (True, True, "dict"), (False, False, "dict"), (False, True, "list")} <= shapes
    assert any(isinstance(c["inputs"], dict) and isinstance(c["result"], dict) for c in cases)  # a pair, no top_k


def test_text_classification_matches_recorded_transformers(ref, pipes):
    meta, _ = ref
    for i, c in enumerate(_cases(meta, "text-classification")):
        got = pipes[c["config"]](c["inputs"], **c["kwargs"])
        assert_same_result(got, c["result"], f"case {i} ({c['config']}, {c['kwargs']})")


def _check_features(got, case, data):
    single = isinstance(case["inputs"], str)
    outs = [got] if single else got
    assert len(outs) == len(case["arrays"])
    for out, key in zip(outs, case["arrays"]):
        want = data[key]
        if case["tensor"]:
            assert isinstance(out, np.ndarray) and out.dtype == np.float32
        else:
            assert isinstance(out, list) and isinstance(out[0][0][0], float)
        arr = np.asarray(out, dtype=np.float32)
        assert arr.shape == want.shape and arr.shape[0] == 1  # [1, T, C] per input
        np.testing.assert_allclose(arr, want, atol=HIDDEN_ATOL, rtol=0)


def test_feature_extraction_matches_recorded_transformers(ref, features):
    meta, data = ref
    for c in _cases(meta, "feature-extraction"):
        _check_features(features(c["inputs"], **c["kwargs"]), c, data)


# ---- live against transformers

@pytest.fixture(scope="module")
def hf_pipes(dirs):
    transformers = pytest.importorskip("transformers")
    return {name: transformers.pipeline("text-classification", model=str(d), device="cpu",
                                        model_kwargs={"attn_implementation": "eager"}) for name, d in dirs.items()}


LIVE_CALLS = [
    ("labels3", ["A great day.", "A terrible day.", "", "x " * 40], {"top_k": 3}),
    ("labels3", [{"text": "Is it?", "text_pair": "Yes."}, {"text": "No", "text_pair": "Maybe so."}], {}),
    ("labels3", "Words " * 600, {"truncation": True, "top_k": None}),
    ("labels3", ["one", "two", "three"], {"batch_size": 2, "function_to_apply": "none"}),
    ("multilabel", ["Sigmoid by default for multi-label."], {}),
    ("regression", "No function for regression.", {"top_k": None}),
]


def test_text_classification_matches_transformers_live(ref, pipes, hf_pipes):
    meta, _ = ref
    calls = [(c["config"], c["inputs"], c["kwargs"]) for c in _cases(meta, "text-classification")] + LIVE_CALLS
    for i, (name, inputs, kwargs) in enumerate(calls):
        want = json.loads(json.dumps(hf_pipes[name](inputs, **kwargs)))
        assert_same_result(pipes[name](inputs, **kwargs), want, f"call {i} ({name}, {kwargs})")


def test_defaults_given_to_pipeline_match_transformers_live(dirs, hf_pipes):
    transformers = pytest.importorskip("transformers")
    d = str(dirs["labels3"])
    hf = transformers.pipeline("text-classification", model=d, device="cpu", top_k=None,
                               model_kwargs={"attn_implementation": "eager"})
    ours = pipeline("text-classification", model=d, top_k=None)
    for inputs in ("one text", ["one text", "and another"], {"text": "a", "text_pair": "b"}):
        want = json.loads(json.dumps(hf(inputs)))
        assert_same_result(ours(inputs), want, repr(inputs))  # one text: [[...]], as transformers nests it


def test_feature_extraction_matches_transformers_live(ref, minilm_dir, features):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf = transformers.pipeline("feature-extraction", model=str(minilm_dir), device="cpu",
                               model_kwargs={"attn_implementation": "eager"})
    meta, _ = ref
    calls = [(c["inputs"], c["kwargs"]) for c in _cases(meta, "feature-extraction")]
    calls += [(["Words " * 600, "short"], {"truncation": True}), ("", {}), ("a b c", {"return_tensors": True})]
    for inputs, kwargs in calls:
        want = hf(inputs, **kwargs)
        got = features(inputs, **kwargs)
        outs_w = [want] if isinstance(inputs, str) else want
        outs_g = [got] if isinstance(inputs, str) else got
        assert len(outs_g) == len(outs_w)
        for g, w in zip(outs_g, outs_w):
            w = w.numpy() if isinstance(w, torch.Tensor) else np.asarray(w, dtype=np.float32)
            assert isinstance(g, np.ndarray) == bool(kwargs.get("return_tensors"))
            np.testing.assert_allclose(np.asarray(g, dtype=np.float32), w, atol=HIDDEN_ATOL, rtol=0)


# ---- semantics beyond the recording

def test_sentiment_analysis_is_the_same_task(dirs, pipes):
    pipe = pipeline("sentiment-analysis", model=str(dirs["labels3"]))
    assert isinstance(pipe, TextClassificationPipeline)
    assert pipe(["nice", "awful"], top_k=None) == pipes["labels3"](["nice", "awful"], top_k=None)


def test_scores_are_the_models_softmax_and_labels_its_names(dirs, pipes):
    model = BertForSequenceClassification.from_pretrained(dirs["labels3"])
    enc = model.tokenizer("A sentence to score.", return_tensors="np")
    logits = model(**enc).logits[0].astype(np.float32)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    got = pipes["labels3"]("A sentence to score.", top_k=None)
    names = model.config.id2label
    assert got == sorted([{"label": names[i], "score": float(v)} for i, v in enumerate(p)],
                         key=lambda d: d["score"], reverse=True)
    assert {d["label"] for d in got} == {"negative", "neutral", "positive"}


def test_defaults_at_construction_and_return_all_scores(dirs, pipes):
    plain = pipes["labels3"]
    everything = plain(["good", "bad"], top_k=None)
    # transformers 4's return_all_scores=True: every label, in label order, nested even for one text
    legacy = plain(["good", "bad"], return_all_scores=True)
    for row, ranked in zip(legacy, everything):
        assert [d["label"] for d in row] == ["negative", "neutral", "positive"]
        assert sorted(row, key=lambda d: d["score"], reverse=True) == ranked
    assert_same_result(plain("good", return_all_scores=True), [legacy[0]])
    # keywords given to pipeline() are defaults of every call
    two = pipeline("text-classification", model=str(dirs["labels3"]), top_k=2, function_to_apply="sigmoid")
    assert two(["good"], top_k=2) == plain(["good"], top_k=2, function_to_apply="sigmoid")
    assert all(len(r) == 2 for r in two(["good", "bad"]))


def test_loaded_models_and_batching(dirs, pipes):
    model = BertForSequenceClassification.from_pretrained(dirs["labels3"]).train()  # dropout on
    pipe = pipeline("text-classification", model=model, batch_size=3)
    texts = [f"text number {i} " * (i % 5 + 1) for i in range(10)]
    got = pipe(texts, top_k=None)
    assert model.training  # the pipeline ran in eval mode and restored the mode
    one_by_one = [pipes["labels3"](t, top_k=None) for t in texts]
    for g, w in zip(got, one_by_one):
        assert_same_result(g, w)
    assert isinstance(pipeline("feature-extraction", model=BertModel.from_pretrained(dirs["labels3"])),
                      FeatureExtractionPipeline)


def test_bad_input(dirs, pipes, minilm_dir):
    pipe = pipes["labels3"]
    with pytest.raises(ValueError, match="max_position_embeddings"):
        pipe("word " * 600)  # too long without truncation
    with pytest.raises(ValueError, match="text_pair"):
        pipe([["a", "b"]])
    with pytest.raises(ValueError, match="'text' and optionally 'text_pair'"):
        pipe({"txt": "a"})
    with pytest.raises(TypeError, match="inputs\\[1\\]"):
        pipe(["a", 3])
    with pytest.raises(ValueError, match="function_to_apply"):
        pipe("a", function_to_apply="relu")
    with pytest.raises(ValueError, match="top_k"):
        pipe("a", top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        pipeline("text-classification", model=str(dirs["labels3"]), top_k=-1)
    with pytest.raises(ValueError, match="no classifier"):
        pipeline("text-classification", model=str(minilm_dir))
    with pytest.raises(ValueError, match="needs model="):
        pipeline("text-classification")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pipeline("text-classification", model="no-such-model-dir")
    with pytest.raises(ValueError, match="unsupported task"):
        pipeline("summarization", model=str(dirs["labels3"]))
    fe = pipeline("feature-extraction", model=str(minilm_dir))
    with pytest.raises(ValueError, match="truncation given twice"):
        fe("a", truncation=True, tokenize_kwargs={"truncation": True})
    with pytest.raises(TypeError, match="tokenize_kwargs"):
        fe("a", max_length=3)
