# Inputs of the wrong kind or size that the adversarial suite (test_adversarial.py) found reaching
# code that never checked them; each refused now with a message naming the argument.

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pyllm import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, cli
from pyllm.tokenizers import CharTokenizer

TINY = Path(__file__).parent / "data" / "tiny"


@pytest.fixture(scope="module")
def toks():
    return [CharTokenizer.from_text("abc"), AutoTokenizer.from_pretrained(TINY / "gpt2" / "hf"),
            AutoTokenizer.from_pretrained(TINY / "llama2" / "hf")]


@pytest.fixture(scope="module")
def tiny():
    return AutoModelForCausalLM.from_pretrained(TINY / "llama3" / "llama3-f32.gguf", n_ctx=32)


@pytest.mark.parametrize("ids", [[1.5], 1.5, [True], True, [1 + 2j], ["a"], "ab"])
def test_convert_ids_to_tokens_refuses_non_integers(toks, ids):
    for tok in toks:  # [1.5] and True used to give token 1
        with pytest.raises(TypeError, match="ids must"):
            tok.convert_ids_to_tokens(ids)
        with pytest.raises(TypeError, match="token_ids must|token ids"):
            tok.decode(ids)


def test_convert_ids_to_tokens_takes_integers(toks):
    for tok in toks:
        one = tok.convert_ids_to_tokens(1)
        assert tok.convert_ids_to_tokens(np.int64(1)) == one
        assert tok.convert_ids_to_tokens([1, 2]) == [one, tok.convert_ids_to_tokens(2)]
        with pytest.raises(ValueError, match="out of range"):
            tok.convert_ids_to_tokens([tok.vocab_size])


def test_batch_decode_refuses_a_string(toks):
    for tok in toks:
        for bad in ("", b"", 5):
            with pytest.raises(TypeError, match="sequences must be a batch"):
                tok.batch_decode(bad)


def test_tokenizer_call_refuses_unhashable_options(toks):
    for tok in toks:
        with pytest.raises(ValueError, match="padding="):
            tok("abc", padding=[])
        with pytest.raises(ValueError, match="truncation="):
            tok("abc", truncation={})


def test_generate_refuses_bad_stop_strings_and_huge_ids(tiny):
    with pytest.raises(ValueError, match="stop_strings must be a string or a list"):
        tiny.generate([1, 2], max_new_tokens=2, stop_strings=False)
    with pytest.raises(ValueError, match="out of range"):
        tiny.generate(2**63, max_new_tokens=2)


@pytest.mark.parametrize("stride,error", [("0", TypeError), (1.0, TypeError), (True, TypeError), (0, ValueError),
                                          (-1, ValueError), (33, ValueError)])
def test_score_checks_its_stride(tiny, stride, error):
    with pytest.raises(error, match="stride"):
        tiny.score([1, 2, 3, 4], stride=stride)


def _llama_dir(tmp_path: Path, edit=None, drop=None) -> Path:
    d = tmp_path / "m"
    shutil.copytree(TINY / "llama3" / "hf", d)
    if edit:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(edit)
        (d / "config.json").write_text(json.dumps(cfg))
    if drop:
        from safetensors.numpy import load_file, save_file

        t = load_file(str(d / "model.safetensors"))
        t.pop(drop)
        save_file(t, str(d / "model.safetensors"))
    return d


def test_config_layer_count_must_match_the_weights(tmp_path):
    # 602314304 layers used to build per-layer lists before any check (16 GB in the probe)
    d = _llama_dir(tmp_path, {"num_hidden_layers": 602314304})
    with pytest.raises(ValueError, match="num_hidden_layers=602314304 but the weights hold 2 layers"):
        AutoModelForCausalLM.from_pretrained(d)


def test_a_directory_without_token_embedding(tmp_path):
    d = _llama_dir(tmp_path, drop="model.embed_tokens.weight")
    with pytest.raises(ValueError, match="no token embedding"):
        AutoModelForCausalLM.from_pretrained(d)


def test_a_model_larger_than_memory_is_refused_before_allocating():
    with pytest.raises(ValueError, match="more than this machine's"):
        GPT2LMHeadModel(GPT2Config(vocab_size=10, n_positions=8, n_embd=8, n_layer=99999999999, n_head=2))
    model = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="training activations for batch"):  # (a 2**40 x 8 batch of ids)
        model._activations(2**40, 8)
    assert model._activations(2, 8).logits.shape == (16, 10)


@pytest.mark.parametrize("argv,message", [
    (["train", "--n-layer", "99999999999"], "more than this machine's"),
    (["train", "--threads", "99999999999"], "--threads must be a positive number"),
    (["generate", "hi", "--threads", "0"], "--threads must be a positive number"),
    (["bench", "--prompt-tokens", "99999999999"], "do not fit the context"),
    (["bench", "--repeats", "0"], "--repeats must be at least 1"),
])
def test_cli_refuses_impossible_sizes(tmp_path, capsys, argv, message):
    text = tmp_path / "t.txt"
    text.write_text("hello world, " * 200, encoding="utf-8")
    if argv[0] == "train":
        argv = argv + ["--data", str(text), "--out", str(tmp_path / "o"), "--max-steps", "1", "--no-progress"]
    else:
        argv = argv + ["--model", str(TINY / "llama3" / "llama3-f32.gguf"), "-n", "2"] if argv[0] == "generate" \
            else argv + ["--model", str(TINY / "llama3" / "llama3-f32.gguf")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "pyllm: error: " in err and message in err and "Traceback" not in err, err
