# Model directories that lie: a config.json that does not fit its weights, impossible numbers in
# config.json, safetensors headers that do not describe their bytes; and the CLI on each. Not GGUF
# metadata ranges (test_gguf.py) and not the fuzzers (fuzz/, test_fuzz_corpus.py).

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from pyllm import AutoModelForCausalLM, GPT2LMHeadModel, cli
from pyllm.models.hfdir import HFCheckpoint

TINY = Path(__file__).parent / "data" / "tiny"


def _child(code: str, mem_mb: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, cwd=tempfile.gettempdir(),
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _dir(tmp_path: Path, arch: str, edit=None, name: str = "m") -> Path:
    d = tmp_path / name
    shutil.copytree(TINY / arch / "hf", d)
    if edit is not None:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_gpt2_config_is_checked_against_the_weights_before_building(tmp_path):
    # GPT-2 large's config over the tiny model's weights: 774M parameters (6 GB with gradients) were
    # allocated and initialised before the shapes were compared; now the header is read first
    d = _dir(tmp_path, "gpt2", lambda c: c.update(n_embd=1280, n_layer=36, n_head=20, vocab_size=50257))
    r = _child(f"""
        from pyllm import GPT2LMHeadModel
        try:
            GPT2LMHeadModel.from_pretrained({str(d)!r})
        except ValueError as e:
            print("ValueError", e)
        """, mem_mb=1024)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ValueError the checkpoint lacks transformer.h.2."), r.stdout + r.stderr[-2000:]


def test_gpt2_directory_loads_mapped_weights(tmp_path):
    d = _dir(tmp_path, "gpt2")
    model = GPT2LMHeadModel.from_pretrained(d)
    ckpt = HFCheckpoint(d)
    for name, value in model.named_parameters():
        key = name if name in ckpt else name[len("transformer."):]
        assert (value == ckpt.float32(key)).all(), name


def _safetensors(path: Path, header: object, payload: bytes = b"\0" * 16) -> None:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + payload)


LYING = {
    "negative dims": ({"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}, "malformed"),
    "float dims": ({"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]}, "malformed"),
    "bool dims": ({"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}, "malformed"),
    "wrapping product": ({"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}, "0 bytes for shape"),
    "float offsets": ({"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16]}, "malformed"),
    "dtype not a string": ({"dtype": 7, "shape": [4], "data_offsets": [0, 16]}, "malformed"),
    "past the end": ({"dtype": "F32", "shape": [4], "data_offsets": [0, 10**12]}, "outside the file"),
}


@pytest.mark.parametrize("case", sorted(LYING))
def test_lying_safetensors_headers_are_refused(tmp_path, case):
    entry, message = LYING[case]
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    _safetensors(d / "model.safetensors", {"model.norm.weight": entry})
    with pytest.raises(ValueError, match=message):
        HFCheckpoint(d)


BAD_CONFIG = {
    "negative layers": ("num_hidden_layers", -1, "num_hidden_layers must be an integer"),
    "string heads": ("num_attention_heads", "4", "num_attention_heads must be an integer"),
    "float size": ("hidden_size", 64.0, "hidden_size must be an integer"),
    "bool vocab": ("vocab_size", True, "vocab_size must be an integer"),
    "string eps": ("rms_norm_eps", "x", "rms_norm_eps must be a finite number > 0"),
    "nan eps": ("rms_norm_eps", float("nan"), "rms_norm_eps must be a finite number > 0"),
    "negative eps": ("rms_norm_eps", -1e-5, "rms_norm_eps must be a finite number > 0"),
    "zero theta": ("rope_theta", 0, "rope_theta must be a finite number > 0"),
    "huge heads": ("num_key_value_heads", 2**40, "num_key_value_heads must be an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_impossible_config_numbers_are_refused(tmp_path, case):
    key, value, message = BAD_CONFIG[case]

    def edit(cfg):
        cfg[key] = value
        cfg.pop("rope_parameters", None) if key == "rope_theta" else None

    d = _dir(tmp_path, "llama3", edit)
    with pytest.raises(ValueError, match=f"config.json: {message}"):
        AutoModelForCausalLM.from_pretrained(d)


def _malformed(tmp_path: Path) -> dict:
    """name -> a model path that cannot load."""
    g = (TINY / "llama3" / "llama3-f32.gguf").read_bytes()
    out = {}
    for name, data in (("truncated.gguf", g[: len(g) // 3]), ("header.gguf", g[:5000]),
                       ("garbage.gguf", bytes(range(256)) * 16), ("empty.gguf", b"")):
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt2", "n_embd": ')
    out["broken config.json"] = broken
    out["lying header"] = _dir(tmp_path, "gpt2", name="lying")
    _safetensors(out["lying header"] / "model.safetensors",
                 {"transformer.wte.weight": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}})
    out["bad config number"] = _dir(tmp_path, "llama3", lambda c: c.update(num_hidden_layers=-1), name="neg")
    out["mismatched config"] = _dir(tmp_path, "gpt2", lambda c: c.update(n_layer=5), name="layers")
    return out


@pytest.mark.parametrize("command", [["generate", "hi", "-n", "2", "-q"], ["perplexity", "FILE", "-q"],
                                     ["bench", "--prompt-tokens", "4", "--new-tokens", "2", "--repeats", "1"],
                                     ["info"]])
def test_cli_says_error_for_malformed_model_files(tmp_path, capsys, command):
    text = tmp_path / "t.txt"
    text.write_text("some text to score here", encoding="utf-8")
    for name, path in _malformed(tmp_path).items():
        if command == ["info"]:
            args = ["info", str(path)]
        else:
            args = [str(text) if a == "FILE" else a for a in command] + ["--model", str(path)]
        if name == "mismatched config" and command == ["info"]:
            continue  # info lists what the directory holds without building the model
        assert cli.main(args) == 1, (name, args)
        err = capsys.readouterr().err
        assert err.startswith("pyllm: error: ") and "Traceback" not in err, (name, err)
