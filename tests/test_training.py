"""Training front end: tokenizers for training, token files, schedules (against
transformers/torch live), the Trainer's loop, checkpoints and bit-exact resume
(on a numpy bigram model and on GPT-2)."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import numpy as np
import pytest
from training_toy import BigramConfig, BigramLM

from pyllm.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer
from pyllm.training import (
    TokenDataset,
    Trainer,
    TrainingArguments,
    TrainingDivergedError,
    get_scheduler,
    load_splits,
    prepare_data,
    read_text,
    train_bpe,
)
from pyllm.training import checkpoint as ckpt
from pyllm.training.data import read_meta, token_dtype

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 40
UNICODE = "naïve café — ½ 東京 emoji 🎉 tab\tnew\nline  spaces   end"


# ---- tokenizers

def test_char_tokenizer_round_trip_and_files(tmp_path):
    tok = CharTokenizer.from_text(TEXT + UNICODE)
    ids = tok.encode(UNICODE)
    assert tok.decode(ids) == UNICODE
    assert tok.chars == sorted(set(TEXT + UNICODE))
    assert np.array_equal(tok.encode_array(TEXT), np.array([tok.chars.index(c) for c in TEXT]))
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again == tok
    with pytest.raises(ValueError, match="'Z' at index 1 is not in"):
        CharTokenizer.from_text("abc").encode("aZ")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_bpe_trainer_deterministic_round_trip_and_limits():
    tok = train_bpe(TEXT, vocab_size=300)
    again = train_bpe(TEXT, vocab_size=300)
    assert tok._merges == again._merges and tok._tokens == again._tokens
    assert tok.vocab_size == 300 and tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 299
    for text in (TEXT, UNICODE, "unseen words: zyzzyva 12345!"):
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(TEXT)) < len(TEXT.encode()) / 2  # merges actually compress the training text
    # the first merge is the most frequent pair: count it by hand over the pre-tokenized pieces
    from pyllm.tokenizers import _bpe
    from pyllm.tokenizers.bytelevel import encode_bytelevel

    counts = {}
    for piece in _bpe.pretokenize(TEXT):
        sym = encode_bytelevel(piece.encode())
        for a, b in zip(sym, sym[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    best = max(counts.values())
    assert tok._merges[0] == " ".join(min(p for p, c in counts.items() if c == best))
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 257"):
        train_bpe(TEXT, vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        train_bpe("", vocab_size=300)


def test_bpe_files_load_in_hf_tokenizers(tmp_path):
    tok = train_bpe(TEXT + UNICODE, vocab_size=320)
    save_tokenizer(tok, tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, BPETokenizer) and again.eos_token_id == tok.eos_token_id
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in (TEXT[:500], UNICODE, "Resolved<|endoftext|>All:"):
        assert again.encode(text) == tok.encode(text) == hf.encode(text).ids
        assert hf.decode(hf.encode(text).ids, skip_special_tokens=False) == text


def test_bpe_trainer_on_a_megabyte_of_shakespeare_is_a_round_trip():
    text = read_text("shakespeare")[:1_000_000]
    tok = train_bpe(text, vocab_size=2048)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.vocab_size == 2048 and len(ids) < len(text) / 2.5  # about 2.8 characters per token


# ---- token files

def test_prepare_data_memmap_dtype_split_and_sidecar(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text(TEXT, encoding="utf-8")
    tok = CharTokenizer.from_text(TEXT)
    meta = prepare_data(src, tok, tmp_path / "tokens.bin", val_fraction=0.25)
    assert meta["dtype"] == "uint16" and meta["n_tokens"] == len(TEXT)
    assert (tmp_path / "tokens.bin").stat().st_size == 2 * len(TEXT)
    train, val = load_splits(tmp_path / "tokens.bin", block_size=16)
    assert isinstance(train.tokens, np.memmap)
    assert len(train) + len(val) == len(TEXT) and len(val) == int(len(TEXT) * 0.25)
    assert tok.decode(np.concatenate([train.tokens, val.tokens])) == TEXT
    x, y = train.get_batch(5, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 16) and x.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all()
    starts = [TEXT.find(tok.decode(row)) for row in x]  # each row is a contiguous stretch of the text
    assert all(s >= 0 for s in starts)
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


class WideTokenizer:
    """ids beyond uint16: each character maps to 70000 + its index."""

    vocab_size = 70_100

    def encode(self, text, add_special_tokens=True):
        return [70_000 + (ord(c) % 100) for c in text]


def test_prepare_data_uses_uint32_for_large_vocabularies(tmp_path):
    meta = prepare_data("mem", WideTokenizer(), tmp_path / "t.bin", val_fraction=0.0, text="hello world")
    assert meta["dtype"] == "uint32"
    train, val = load_splits(tmp_path / "t.bin", block_size=4)
    assert val is None and int(train.tokens[0]) == 70_000 + ord("h") % 100


def test_bad_data_raises_clear_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("tiny", encoding="utf-8")
    tok = CharTokenizer.from_text("tiny")
    prepare_data(short, tok, tmp_path / "s.bin", val_fraction=0.0)
    with pytest.raises(ValueError, match="4 tokens, too few for one block: block_size=8"):
        load_splits(tmp_path / "s.bin", block_size=8)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        prepare_data(tmp_path / "empty.txt", tok, tmp_path / "e.bin")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match="not UTF-8 text: byte 3"):
        read_text(tmp_path / "latin1.txt")
    with open(tmp_path / "s.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ValueError, match="Prepare the data again"):
        read_meta(tmp_path / "s.bin")
    # ids beyond the model's vocabulary
    ds = TokenDataset(np.arange(100, dtype=np.uint16), block_size=8)
    with pytest.raises(ValueError, match="token id 99, beyond the model's vocab_size=50"):
        Trainer(BigramLM(BigramConfig(vocab_size=50)), TrainingArguments(str(tmp_path / "o"), max_steps=1), ds)


# ---- schedules against transformers' (driving torch's LambdaLR)

@pytest.mark.parametrize("name", ["linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup"])
def test_schedules_match_transformers(name):
    import torch
    import transformers

    warmup, total, base = 7, 50, 3e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    kwargs = {"min_lr_rate": 0.1} if name == "cosine_with_min_lr" else {}
    sched = transformers.get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total,
                                       scheduler_specific_kwargs=kwargs)
    f = get_scheduler(name, warmup, total, **kwargs)
    for step in range(total + 3):
        assert base * f(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), step
        opt.step()
        sched.step()


def test_linear_schedule_matches_torch_linear_lr():
    import torch

    total, base = 20, 1.0
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=total)
    f = get_scheduler("linear", 0, total)
    for step in range(total + 1):
        assert f(step) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        sched.step()


# ---- the Trainer on the bigram model

def _data(block=16):
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode_array(TEXT).astype(np.uint16)
    cut = int(len(ids) * 0.9)
    train = TokenDataset(ids[:cut], block, tok.vocab_size)
    return tok, train, TokenDataset(ids[cut:], block, tok.vocab_size, "validation")


def _args(out, **kw):
    base = dict(max_steps=20, per_device_train_batch_size=4, learning_rate=0.1, warmup_steps=3,
                lr_scheduler_type="cosine", logging_steps=1, save_steps=5, seed=7, disable_tqdm=True,
                weight_decay=0.01, eval_strategy="steps", eval_steps=10, max_eval_batches=4)
    base.update(kw)
    return TrainingArguments(str(out), **base)


def _losses(out):
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["learning_rate"], r["grad_norm"]) for r in rows if "loss" in r]


def test_trainer_loss_decreases_and_logs(tmp_path, capsys):
    tok, train, val = _data()
    model = BigramLM(BigramConfig(vocab_size=tok.vocab_size))
    trainer = Trainer(model, _args(tmp_path, max_steps=60, eval_steps=30), train, val, tokenizer=tok)
    before = trainer.evaluate()["eval_loss"]
    out = trainer.train()
    after = trainer.evaluate()
    assert out.global_step == 60
    assert before == pytest.approx(math.log(tok.vocab_size), abs=0.05)
    assert after["eval_loss"] < before - 1.0 and after["perplexity"] == pytest.approx(math.exp(after["eval_loss"]))
    logged = _losses(tmp_path)
    assert [r[0] for r in logged] == list(range(1, 61))
    lrs = [r[2] for r in logged]
    f = get_scheduler("cosine", 3, 60)
    assert lrs == [0.1 * f(s) for s in range(60)]  # the lr each optimizer step ran with
    evals = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert [e["step"] for e in evals] == [30, 60] and evals[-1]["eval_loss"] == after["eval_loss"]
    err = capsys.readouterr().err
    assert "step 60/60  loss" in err and "tok/s" in err and "eval loss" in err and "perplexity" in err


@pytest.mark.parametrize("accum", [1, 3])
def test_resume_is_bit_exact(tmp_path, accum):
    tok, train, val = _data()
    full = tmp_path / "full"
    Trainer(BigramLM(BigramConfig(vocab_size=tok.vocab_size)), _args(full, gradient_accumulation_steps=accum),
            train, val, tokenizer=tok).train()

    part = tmp_path / "part"
    model = BigramLM(BigramConfig(vocab_size=tok.vocab_size))
    real = model.forward_backward

    def interrupted(x, y):
        if model.calls == 12 * accum:  # the first micro-batch of step 13: after checkpoint-10 and 2 more log lines
            raise KeyboardInterrupt
        return real(x, y)

    model.forward_backward = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, _args(part, gradient_accumulation_steps=accum), train, val, tokenizer=tok).train()
    assert [r[0] for r in _losses(part)][-1] == 12
    assert ckpt.last_checkpoint(part).name == "checkpoint-10"

    fresh = BigramLM(BigramConfig(vocab_size=tok.vocab_size), seed=99)  # other weights: the checkpoint must win
    Trainer(fresh, _args(part, gradient_accumulation_steps=accum), train, val, tokenizer=tok).train(
        resume_from_checkpoint=True)
    assert _losses(part) == _losses(full)
    evals = lambda d: [line for line in (d / "log.jsonl").read_text().splitlines() if "eval_loss" in line]  # noqa: E731
    assert evals(part) == evals(full)
    a, b = BigramLM.from_pretrained(full / "checkpoint-20"), BigramLM.from_pretrained(part / "checkpoint-20")
    assert np.array_equal(a._params, b._params)


def test_failed_save_leaves_previous_checkpoint_latest(tmp_path, monkeypatch):
    tok, train, val = _data()
    real = ckpt.save_optimizer_state
    saves = []

    def disk_full(state, directory):
        saves.append(directory)
        if len(saves) == 2:
            real(state, directory)  # part of the files are written, then the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        real(state, directory)

    monkeypatch.setattr(ckpt, "save_optimizer_state", disk_full)
    trainer = Trainer(BigramLM(BigramConfig(vocab_size=tok.vocab_size)), _args(tmp_path), train, val, tokenizer=tok)
    with pytest.raises(OSError,
                       match="checkpoint of step 10.*No space left.*last complete checkpoint is .*checkpoint-5"):
        trainer.train()
    assert [p.name for _, p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-5"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    assert json.loads((tmp_path / "checkpoint-5" / "trainer_state.json").read_text())["global_step"] == 5
    monkeypatch.setattr(ckpt, "save_optimizer_state", real)
    out = Trainer(BigramLM(BigramConfig(vocab_size=tok.vocab_size)), _args(tmp_path), train, val,
                  tokenizer=tok).train(resume_from_checkpoint=True)
    assert out.global_step == 20


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    tok, train, val = _data()
    model = BigramLM(BigramConfig(vocab_size=tok.vocab_size))
    real = model.forward_backward

    def counted(x, y):
        return float("nan") if model.calls == 7 else real(x, y)  # step 8

    model.forward_backward = counted  # type: ignore[method-assign]
    trainer = Trainer(model, _args(tmp_path), train, val, tokenizer=tok)
    with pytest.raises(TrainingDivergedError, match="stopped at step 8: the loss is nan.*checkpoint-5"):
        trainer.train()
    assert [p.name for _, p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-5"]
    assert trainer.state.global_step == 7


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # clipping by an infinite norm
def test_inf_gradient_norm_stops(tmp_path):
    tok, train, val = _data()
    model = BigramLM(BigramConfig(vocab_size=tok.vocab_size))
    real = model.forward_backward

    def poisoned(x, y):
        loss = real(x, y)
        if model.calls == 3:
            model._grads[0] = np.inf
        return loss

    model.forward_backward = poisoned  # type: ignore[method-assign]
    with pytest.raises(TrainingDivergedError, match="step 3: the gradient norm is inf"):
        Trainer(model, _args(tmp_path), train, val).train()


def test_save_total_limit_keeps_the_newest(tmp_path):
    tok, train, val = _data()
    Trainer(BigramLM(BigramConfig(vocab_size=tok.vocab_size)), _args(tmp_path, max_steps=12, save_steps=2,
            save_total_limit=2, eval_strategy="no"), train, tokenizer=tok).train()
    assert [p.name for _, p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-12"]
    assert isinstance(load_tokenizer(tmp_path / "checkpoint-12"), CharTokenizer)


def test_mismatched_checkpoint_and_bad_arguments(tmp_path):
    tok, train, val = _data()
    Trainer(BigramLM(BigramConfig(vocab_size=tok.vocab_size)), _args(tmp_path, max_steps=5), train, val).train()
    bigger = BigramLM(BigramConfig(vocab_size=tok.vocab_size + 1))
    with pytest.raises(ValueError, match="mismatched config/checkpoint"):
        Trainer(bigger, _args(tmp_path, max_steps=10), train, val).train(resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="holds no checkpoint"):
        Trainer(bigger, _args(tmp_path / "empty"), train, val).train(resume_from_checkpoint=True)
    with pytest.raises(ValueError, match="lr_scheduler_type 'cosine_restarts' is not supported"):
        TrainingArguments(str(tmp_path), lr_scheduler_type="cosine_restarts")
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be a positive integer"):
        TrainingArguments(str(tmp_path), gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="needs an eval_dataset"):
        Trainer(bigger, TrainingArguments(str(tmp_path), eval_strategy="steps"), train)


# ---- GPT-2

def _gpt2(vocab, seed=0):
    from pyllm import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=16, n_embd=32, n_layer=2, n_head=2), seed=seed)


def test_gpt2_resume_is_bit_exact(tmp_path):
    tok, train, val = _data(block=16)
    kw = dict(max_steps=8, save_steps=4, eval_steps=4, max_eval_batches=2, learning_rate=3e-3,
              gradient_accumulation_steps=2)
    full = tmp_path / "full"
    Trainer(_gpt2(tok.vocab_size), _args(full, **kw), train, val, tokenizer=tok).train()
    part = tmp_path / "part"
    model = _gpt2(tok.vocab_size)
    real = model.forward_backward
    calls = []

    def interrupted(x, y):
        calls.append(1)
        if len(calls) == 2 * 6 + 1:  # step 7
            raise KeyboardInterrupt
        return real(x, y)

    model.forward_backward = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, _args(part, **kw), train, val, tokenizer=tok).train()
    Trainer(_gpt2(tok.vocab_size, seed=5), _args(part, **kw), train, val, tokenizer=tok).train(
        resume_from_checkpoint=True)
    full_losses = _losses(full)
    assert _losses(part) == full_losses
    assert full_losses[-1][1] < full_losses[0][1]


def test_gpt2_vocab_and_merges_files_load(tmp_path):
    # GPT-2's original pair of files: vocab.json (with <|endoftext|>) and merges.txt with a version line
    tok = train_bpe(TEXT, vocab_size=290)
    (tmp_path / "vocab.json").write_text(json.dumps(tok.get_vocab()), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(tok._merges) + "\n", encoding="utf-8")
    again = load_tokenizer(tmp_path)
    assert again.encode(TEXT[:300] + "<|endoftext|>") == tok.encode(TEXT[:300] + "<|endoftext|>")
    assert again.eos_token == again.bos_token == "<|endoftext|>"


def test_fine_tuning_starts_from_a_transformers_checkpoint(tmp_path):
    # tests/data/gpt2_tiny was written by transformers (V=65, n_positions=32): the first
    # logged loss of a fine-tuning run is transformers' loss on the same batch
    import torch
    import transformers

    from pyllm import GPT2LMHeadModel

    src = Path(__file__).parent / "data" / "gpt2_tiny"
    tok, train, val = _data(block=32)
    model = GPT2LMHeadModel.from_pretrained(src)
    Trainer(model, _args(tmp_path, max_steps=1, eval_strategy="no"), train, tokenizer=tok).train()
    x, y = train.get_batch(4, np.random.Generator(np.random.PCG64(7)))
    hf = transformers.GPT2LMHeadModel.from_pretrained(src).eval()
    with torch.no_grad():
        logits = hf(torch.from_numpy(x)).logits
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
    assert _losses(tmp_path)[0][1] == pytest.approx(float(ref), rel=1e-5)
