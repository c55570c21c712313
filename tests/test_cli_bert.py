"""`pyllm classify` and `pyllm embed`: their output equals the pipeline's and the model's encode()
for the same texts (arguments, stdin lines, --top-k, --json, --normalize, --out), and bad input
(a missing model, a model without a classifier, empty input) ends with a clear error."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from pyllm import cli, hub, pipeline
from pyllm.models.bert import BertForSequenceClassification, BertModel

TEXTS = ["I love this.", "This is awful.", "Ünïcödé and 数字"]


@pytest.fixture(scope="module")
def minilm_dir():
    return hub.resolve_model_dir("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def classifier_dir(minilm_dir, tmp_path_factory):
    """all-MiniLM-L6-v2 with a seeded 3-label head (initialised as transformers does) and named labels."""
    model = BertForSequenceClassification.from_pretrained(
        minilm_dir, id2label={0: "negative", 1: "neutral", 2: "positive"}, seed=7)
    model.params["classifier.weight"][...] *= 10  # scores far from uniform: the order is not rounding
    d = tmp_path_factory.mktemp("clf") / "model"
    model.tokenizer = model.tokenizer  # saved beside the weights
    model.save_pretrained(d)
    return d


def run(argv, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_prints_label_and_score_per_text(classifier_dir, capsys):
    code, out, _ = run(["classify", "--model", str(classifier_dir), *TEXTS], capsys)
    assert code == 0
    want = pipeline("text-classification", model=str(classifier_dir))(TEXTS, top_k=1)
    lines = out.splitlines()
    assert len(lines) == len(TEXTS)
    for line, text, [best] in zip(lines, TEXTS, want):
        assert line == f"{best['label']} {best['score']:.4f}\t{text}"


def test_classify_top_k_json_and_stdin(classifier_dir, capsys, monkeypatch):
    code, out, _ = run(["classify", "-m", str(classifier_dir), "--top-k", "3", "--json"], capsys,
                       stdin="\n".join(TEXTS) + "\n\n", monkeypatch=monkeypatch)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    want = pipeline("text-classification", model=str(classifier_dir))(TEXTS, top_k=3)
    assert [r["text"] for r in rows] == TEXTS  # the blank line skipped
    for r, w in zip(rows, want):
        assert [d["label"] for d in r["labels"]] == [d["label"] for d in w]
        np.testing.assert_allclose([d["score"] for d in r["labels"]], [d["score"] for d in w], atol=1e-6)


def test_classify_errors(classifier_dir, minilm_dir, tmp_path, capsys, monkeypatch):
    code, _, err = run(["classify", "--model", str(minilm_dir), "hello"], capsys)
    assert code == 1 and "has no classifier" in err
    code, _, err = run(["classify", "--model", str(tmp_path / "missing"), "hello"], capsys)
    assert code == 1 and "not a directory or a registered model" in err
    code, _, err = run(["classify", "--model", str(classifier_dir), ""], capsys)
    assert code == 1 and "text 1 is empty" in err
    code, _, err = run(["classify", "--model", str(classifier_dir)], capsys, stdin="\n \n", monkeypatch=monkeypatch)
    assert code == 1 and "no input" in err
    code, _, err = run(["classify", "--model", str(classifier_dir), "--top-k", "0", "x"], capsys)
    assert code == 1 and "--top-k must be positive" in err


def test_classify_truncates_long_texts(classifier_dir, capsys):
    long = "word " * 700
    code, out, _ = run(["classify", "--model", str(classifier_dir), "--json", long], capsys)
    assert code == 0
    want = pipeline("text-classification", model=str(classifier_dir))(long, truncation=True, top_k=1)
    got = json.loads(out)["labels"]
    assert got[0]["label"] == want[0]["label"] and abs(got[0]["score"] - want[0]["score"]) < 1e-6


def test_embed_json_lines_equal_encode(minilm_dir, capsys):
    model = BertModel.from_pretrained(minilm_dir)
    code, out, _ = run(["embed", "--model", "all-MiniLM-L6-v2", *TEXTS], capsys)
    assert code == 0
    got = np.array([json.loads(line) for line in out.splitlines()], dtype=np.float32)
    np.testing.assert_array_equal(got, model.encode(TEXTS))
    code, out, _ = run(["embed", "--normalize", *TEXTS], capsys)
    got = np.array([json.loads(line) for line in out.splitlines()], dtype=np.float32)
    np.testing.assert_array_equal(got, model.encode(TEXTS, normalize=True))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_embed_npy_out_and_stdin(minilm_dir, tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "vectors.npy"
    code, out, err = run(["embed", "--normalize", "--out", str(out_file)], capsys, stdin="\n".join(TEXTS) + "\n",
                         monkeypatch=monkeypatch)
    assert code == 0 and out == "" and "3 x 384" in err
    arr = np.load(out_file)
    assert arr.dtype == np.float32 and arr.shape == (3, 384)
    np.testing.assert_array_equal(arr, BertModel.from_pretrained(minilm_dir).encode(TEXTS, normalize=True))


def test_embed_errors(tmp_path, capsys):
    code, _, err = run(["embed", "--out", str(tmp_path / "v.txt"), "x"], capsys)
    assert code == 1 and "must end in .npy" in err
    code, _, err = run(["embed", "--model", str(tmp_path / "missing"), "x"], capsys)
    assert code == 1 and "not a directory" in err
    code, _, err = run(["embed", "  "], capsys)
    assert code == 1 and "text 1 is empty" in err


def test_commands_run_from_the_entry_point(classifier_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyllm.cli", "classify", "--model", str(classifier_dir)],
                         input="good\nbad\n", capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[1] for line in out.stdout.splitlines()] == ["good", "bad"]
    helped = subprocess.run([sys.executable, "-m", "pyllm.cli", "embed", "--help"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert helped.returncode == 0 and "--normalize" in helped.stdout and "--out" in helped.stdout
