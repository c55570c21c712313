"""`pyllm train` end to end on a small text, then `pyllm generate --model DIR`,
resume through the command line, fine-tuning and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pyllm import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, cli
from pyllm.tokenizers import BPETokenizer, CharTokenizer

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n") * 60
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
         "--warmup", "2", "--lr", "3e-3", "--log-every", "5", "--eval-every", "10", "--eval-batches", "2",
         "--no-progress"]


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    (d / "play.txt").write_text(TEXT, encoding="utf-8")
    out = d / "model"
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(out), "--max-steps", "20"] + SMALL) == 0
    return d, out


def test_train_writes_a_model_directory(trained, capsys):
    d, out = trained
    for name in ("config.json", "model.safetensors", "char_tokenizer.json", "log.jsonl", "checkpoint-20"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    log = _log(out)
    losses = [e["loss"] for e in log if "loss" in e]
    assert [e["step"] for e in log if "loss" in e] == [5, 10, 15, 20]
    assert losses[-1] < losses[0]
    assert [e["step"] for e in log if "eval_loss" in e] == [10, 20]


def test_generate_from_the_trained_directory(trained, capsys):
    _, out = trained
    assert cli.main(["generate", "--model", str(out), "ROMEO", "-n", "24", "--do-sample", "--seed", "3", "-q"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO") and len(text.rstrip("\n")) == len("ROMEO") + 24
    assert set(text) <= set(TEXT)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert isinstance(model, GPT2LMHeadModel) and isinstance(tok, CharTokenizer)
    ids = tok.encode("ROMEO")
    a = model.generate(ids, max_new_tokens=24, do_sample=True, seed=3)
    assert tok.decode(a[0]) == text.rstrip("\n")


def test_resume_through_the_cli_is_bit_exact(trained):
    d, out = trained
    again = d / "again"
    args = ["train", "--data", str(d / "play.txt"), "--out", str(again), "--max-steps", "20", "--save-every", "10"]
    assert cli.main(args + SMALL) == 0
    shutil.rmtree(again / "checkpoint-20")  # as if the run had died after step 10's checkpoint
    assert cli.main(args + SMALL + ["--resume"]) == 0
    strip = lambda log: [{k: v for k, v in e.items() if k != "tokens_per_second"} for e in log]  # noqa: E731
    assert strip(_log(again)) == strip(_log(out))


def test_fine_tune_and_bpe(trained, tmp_path):
    d, out = trained
    tuned = tmp_path / "tuned"
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(tuned), "--init-from", str(out),
                     "--max-steps", "4", "--eval-every", "0", "--no-progress", "--batch-size", "2",
                     "--block-size", "32"]) == 0
    assert CharTokenizer.from_pretrained(tuned) == CharTokenizer.from_pretrained(out)
    bpe = tmp_path / "bpe"
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(bpe), "--tokenizer", "bpe",
                     "--vocab-size", "300", "--max-steps", "3"] + SMALL) == 0
    tok = AutoTokenizer.from_pretrained(bpe)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 300
    assert json.loads((bpe / "config.json").read_text())["vocab_size"] == 300


def test_fine_tune_a_transformers_directory_with_a_given_tokenizer(trained, tmp_path):
    d, out = trained
    src = Path(__file__).parent / "data" / "gpt2_tiny"  # written by transformers, no tokenizer files
    ft = tmp_path / "ft"
    args = ["train", "--data", str(d / "play.txt"), "--out", str(ft), "--init-from", str(src), "--max-steps", "3",
            "--block-size", "32", "--eval-every", "0", "--no-progress"]
    assert cli.main(args) == 1  # no tokenizer to go with it
    assert cli.main(args + ["--tokenizer", str(out)]) == 0
    assert json.loads((ft / "config.json").read_text())["n_embd"] == 48
    assert CharTokenizer.from_pretrained(ft) == CharTokenizer.from_pretrained(out)


def test_bad_input(trained, tmp_path, capsys):
    d, out = trained
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    assert cli.main(["train", "--data", str(tmp_path / "short.txt"), "--out", str(tmp_path / "o")] + SMALL) == 1
    assert "too few for one block: block_size=32" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(tmp_path / "none"), "--resume"] + SMALL) == 1
    assert "holds no checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(tmp_path / "x"), "--init-from", str(out),
                     "--tokenizer", "bpe"] + SMALL) == 1
    assert "brings its own tokenizer" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "y")] + SMALL) == 1
    assert "is not a file, a directory" in capsys.readouterr().err


def test_the_readme_pair_works_as_written(trained, capsys, monkeypatch):
    # README: `pyllm train --data play.txt --out my-model` then
    # `pyllm generate --model my-model "ROMEO:" --do-sample` (trained here with a 32-token context)
    d, out = trained
    monkeypatch.chdir(d)
    shutil.copytree(out, d / "my-model", dirs_exist_ok=True)
    assert cli.main(["generate", "--model", "my-model", "ROMEO:", "--do-sample"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ROMEO:")
    # the default of 128 new tokens is clamped to what the context leaves after the prompt, and said
    assert "[generating up to 26 tokens: the 6-token prompt leaves 26 of the context's 32]" in captured.err
    assert len(captured.out.rstrip("\n")) <= 32
    # a prompt that fills the context is a clear error, as is asking for more than fits
    assert cli.main(["generate", "--model", "my-model", "ROMEO: " * 6, "--do-sample"]) == 1
    assert "no room for new tokens" in capsys.readouterr().err
    assert cli.main(["generate", "--model", "my-model", "ROMEO:", "-n", "40"]) == 1
    assert "exceeds the context n_ctx=32" in capsys.readouterr().err
    # --n-ctx beyond the trained context warns and uses the trained one
    assert cli.main(["generate", "--model", "my-model", "ROMEO:", "--n-ctx", "4096", "-n", "4", "-q"]) == 0
    assert "pyllm: warning: --n-ctx 4096 is above the context the model was trained for (32 tokens); using 32" \
        in capsys.readouterr().err
