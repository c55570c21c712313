# The tiny per-architecture fixtures (scripts/make_tiny_models.py) agree with their manifest.
# Checks files, GGUF headers and recorded references against each other; runs no model.

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

TINY = Path(__file__).resolve().parent / "data" / "tiny"
MANIFEST = json.loads((TINY / "manifest.json").read_text())
ARCHS = sorted(MANIFEST["archs"])

# general.architecture the converter writes per fixture (Mistral is converted as llama)
GGUF_ARCH = {"llama2": "llama", "llama3": "llama", "mistral": "llama"}
# llama.cpp's default sliding-window pattern, which the converter does not write: n means layers
# n-1, 2n-1, ... are global and the others slide
SWA_PATTERN = {"gemma2": 2, "gemma3": 6}
WEIGHT_TYPE = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}


def field(reader, key):
    return reader.fields[key].contents()


@pytest.fixture(scope="module", params=ARCHS)
def arch(request):
    return request.param, MANIFEST["archs"][request.param]


def test_every_architecture_is_there():
    assert ARCHS == sorted(["llama2", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2"])
    assert MANIFEST["outtypes"] == ["f32", "f16", "q8_0"]


def test_size_budget():
    total = sum(p.stat().st_size for p in TINY.rglob("*") if p.is_file())
    assert total < 12.5 * 2**20, f"tests/data/tiny holds {total / 2**20:.1f} MiB; shrink the models"


def test_hf_directory(arch):
    name, entry = arch
    hf = TINY / entry["hf_dir"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (hf / f).is_file(), f"{name}: {f} missing"
    assert (hf / "tokenizer.model").is_file() == (entry["tokenizer"]["kind"] == "sentencepiece")
    config = json.loads((hf / "config.json").read_text())
    assert config["architectures"] == [entry["hf_class"]]
    assert config.get("dtype", config.get("torch_dtype")) == "float32"
    tok_config = json.loads((hf / "tokenizer_config.json").read_text())
    assert "vocab_file" not in tok_config  # no path of the machine it was made on
    if name != "gpt2":
        assert tok_config["chat_template"]


def test_gguf_files(arch):
    name, entry = arch
    config = json.loads((TINY / entry["hf_dir"] / "config.json").read_text())
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    for outtype, info in entry["gguf"].items():
        path = TINY / info["path"]
        reader = gguf.GGUFReader(str(path))
        a = field(reader, "general.architecture")
        assert a == info["architecture"] == GGUF_ARCH.get(name, name)
        assert field(reader, f"{a}.block_count") == layers
        assert len(reader.tensors) == info["tensors"] and path.stat().st_size == info["bytes"]
        tensors = {t.name: t for t in reader.tensors}
        assert tensors["token_embd.weight"].tensor_type.name == WEIGHT_TYPE[outtype]
        assert int(tensors["token_embd.weight"].shape[1]) == config["vocab_size"]
        assert len(field(reader, "tokenizer.ggml.tokens")) == config["vocab_size"]
        assert tensors["blk.0.ffn_down.weight"].tensor_type.name == WEIGHT_TYPE[outtype]
        assert all(t.tensor_type.name == "F32" for t in reader.tensors if len(t.shape) == 1)
        assert ("output.weight" in tensors) == (not config["tie_word_embeddings"])
        assert ("rope_freqs.weight" in tensors) == (name == "llama3")
        if name in ("gemma2", "gemma3"):
            assert field(reader, f"{a}.attention.sliding_window") == config["sliding_window"]


@pytest.mark.parametrize("name", sorted(SWA_PATTERN))
def test_sliding_pattern_matches_llama_cpp_default(name):
    entry = MANIFEST["archs"][name]
    n = SWA_PATTERN[name]
    config = json.loads((TINY / entry["hf_dir"] / "config.json").read_text())
    layers = len(config["layer_types"])
    expected = ["full_attention" if (i + 1) % n == 0 else "sliding_attention" for i in range(layers)]
    assert config["layer_types"] == expected
    assert "full_attention" in expected and "sliding_attention" in expected
    assert max(len(p) for p in entry["prompts"]["ids"]) > config["sliding_window"]


def test_references(arch):
    name, entry = arch
    config = json.loads((TINY / entry["hf_dir"] / "config.json").read_text())
    ref = np.load(TINY / entry["npz"])
    margin = np.inf
    for i, ids in enumerate(entry["prompts"]["ids"]):
        assert ref[f"prompt{i}_ids"].tolist() == ids
        logits = ref[f"prompt{i}_logits"]
        assert logits.dtype == np.float32 and logits.shape == (len(ids), config["vocab_size"])
        assert np.isfinite(logits).all()
        top2 = np.sort(logits, axis=-1)[:, -2:]
        margin = min(margin, float((top2[:, 1] - top2[:, 0]).min()))
    assert margin == pytest.approx(entry["min_top1_margin"]["prompt_positions"])
    greedy = entry["greedy"]
    assert ref["greedy_ids"].tolist() == greedy["ids"]
    assert len(greedy["ids"]) == greedy["new_tokens"] and max(greedy["ids"]) < config["vocab_size"]
    assert entry["min_top1_margin"]["greedy_steps"] >= 0.05
    # the greedy run's first pick is the argmax of the prompt's last logits
    assert greedy["ids"][0] == int(ref[f"prompt{greedy['prompt']}_logits"][-1].argmax())
