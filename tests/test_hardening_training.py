# `pyllm train` on input that used to go wrong quietly: --resume with changed data or flags, a
# validation split shorter than a block, a write that fails. Not the training math (test_training.py).

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pyllm import cli
from pyllm.tokenizers import CharTokenizer
from pyllm.training import prepare_data

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n") * 40
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
         "--warmup", "2", "--log-every", "5", "--eval-every", "5", "--eval-batches", "2", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run stopped after its step-5 checkpoint (the step-10 one removed)."""
    d = tmp_path_factory.mktemp("resume")
    (d / "play.txt").write_text(TEXT, encoding="utf-8")
    out = d / "model"
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(out), "--max-steps", "10",
                     "--save-total-limit", "3"] + SMALL) == 0
    import shutil

    shutil.rmtree(out / "checkpoint-10")
    return d, out


def _copy(run, tmp_path):
    import shutil

    d, out = run
    dst = tmp_path / "model"
    shutil.copytree(out, dst)
    for name in ("char_tokenizer.json", "config.json", "model.safetensors"):  # only the checkpoint remains
        (dst / name).unlink()
    return d, dst


def test_resume_uses_the_checkpoints_tokenizer(run, tmp_path, capsys):
    d, out = _copy(run, tmp_path)
    saved = CharTokenizer.from_pretrained(out / "checkpoint-5")
    # without some characters: a vocabulary rebuilt from this text would renumber the ids
    subset = "".join(c for c in TEXT if c not in "JULIETwy")
    assert CharTokenizer.from_text(subset).chars != saved.chars
    (d / "subset.txt").write_text(subset, encoding="utf-8")
    assert cli.main(["train", "--data", str(d / "subset.txt"), "--out", str(out), "--max-steps", "10", "--resume",
                     "--no-progress", "--eval-every", "5", "--eval-batches", "2", "--batch-size", "4"]) == 0
    assert CharTokenizer.from_pretrained(out) == saved  # not the one subset.txt would give
    meta = json.loads((out / "data" / "tokens.json").read_text())
    tokens = np.fromfile(out / "data" / "tokens.bin", dtype=meta["dtype"])
    assert saved.decode(tokens.tolist()) == subset  # encoded with the saved ids
    capsys.readouterr()


def test_resume_refuses_text_the_tokenizer_cannot_encode(run, tmp_path, capsys):
    d, out = _copy(run, tmp_path)
    (d / "new.txt").write_text(TEXT + "Zebra!", encoding="utf-8")
    assert cli.main(["train", "--data", str(d / "new.txt"), "--out", str(out), "--max-steps", "10", "--resume",
                     "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "pyllm: error: --resume:" in err and "'Z'" in err and "checkpoint's tokenizer" in err


@pytest.mark.parametrize("flag,value,field", [("--n-head", "4", "n_head"), ("--n-layer", "2", "n_layer"),
                                              ("--n-embd", "64", "n_embd"), ("--block-size", "16", "block_size"),
                                              ("--tokenizer", "bpe", None)])
def test_resume_refuses_another_architecture(run, tmp_path, capsys, flag, value, field):
    d, out = _copy(run, tmp_path)
    assert cli.main(["train", "--data", str(d / "play.txt"), "--out", str(out), "--max-steps", "10", "--resume",
                     "--no-progress", flag, value]) == 1
    err = capsys.readouterr().err
    assert f"--resume: {flag} {value} differs from the checkpoint's" in err, err
    if field:
        assert f"{field}=" in err
    assert not (out / "checkpoint-10").exists()


def test_trainer_refuses_a_checkpoint_of_another_head_count(run, tmp_path):
    # the same parameter shapes, another attention: the Trainer itself refuses
    from pyllm import GPT2Config, GPT2LMHeadModel
    from pyllm.training import Trainer, TrainingArguments, load_splits

    d, out = _copy(run, tmp_path)
    train, _ = load_splits(out / "data" / "tokens.bin", 32)
    ckpt = GPT2Config.from_json_file(out / "checkpoint-5" / "config.json")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=ckpt.vocab_size, n_positions=32, n_embd=32, n_layer=1, n_head=4,
                                       bos_token_id=ckpt.bos_token_id, eos_token_id=ckpt.eos_token_id))
    t = Trainer(model, TrainingArguments(str(out), max_steps=10, disable_tqdm=True), train_dataset=train)
    with pytest.raises(ValueError, match="n_head=2 there, 4 here"):
        t.train(resume_from_checkpoint=str(out / "checkpoint-5"))


def test_short_validation_split_without_evaluation(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(TEXT[:1500], encoding="utf-8")  # 10% of it: 150 tokens < one block of 256
    args = ["train", "--data", str(tmp_path / "t.txt"), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "256", "--batch-size", "2", "--max-steps", "2", "--no-progress"]
    assert cli.main(args + ["--out", str(tmp_path / "a"), "--eval-every", "0"]) == 0
    assert (tmp_path / "a" / "model.safetensors").is_file()
    capsys.readouterr()
    assert cli.main(args + ["--out", str(tmp_path / "b"), "--eval-every", "1"]) == 1
    err = capsys.readouterr().err
    assert "validation split has 150 tokens, too few for one block" in err and "--eval-every 0" in err


def test_a_failed_token_write_says_so(tmp_path):
    # a file size limit makes the write fail part way (EFBIG), as a full disk does (ENOSPC)
    code = textwrap.dedent(f"""
        import resource
        from pyllm.tokenizers import CharTokenizer
        from pyllm.training import prepare_data
        text = "abcdefgh" * 100000
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        try:
            prepare_data("x", CharTokenizer.from_text(text), {str(tmp_path / "tokens.bin")!r}, text=text)
        except OSError as e:
            print("OSError", e.errno, e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("OSError 27 "), r.stdout
    assert "could not write the token file" in r.stdout and "800,000 tokens" in r.stdout
    assert sorted(os.listdir(tmp_path)) == []  # no partial or temporary file


def test_a_full_disk_while_writing_tokens(tmp_path, monkeypatch, capsys):
    import builtins
    import errno

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if "w" in mode and str(path).endswith(".tmp") and ".tokens.bin." in str(path) else f

    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(builtins, "open", fake_open)
    assert cli.main(["train", "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "o")] + SMALL) == 1
    err = capsys.readouterr().err
    assert "pyllm: error: [Errno 28] could not write the token file" in err and "No space left" in err
    assert not list((tmp_path / "o" / "data").iterdir())
    monkeypatch.undo()
    with pytest.raises(ValueError, match="empty"):
        prepare_data("x", CharTokenizer.from_text("a"), tmp_path / "e.bin", text="")
    assert Path(tmp_path / "o").is_dir()
