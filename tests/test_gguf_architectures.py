"""Every architecture from the files llama.cpp's own converter makes: the
tiny seeded models of tests/data/tiny (scripts/make_tiny_models.py: a
Hugging Face directory each, converted to GGUF F32, F16 and Q8_0) against
the references that script recorded from transformers fp32 on the source
model (not transformers' GGUF loader, which ignores Llama 3's rope_freqs
and cannot load every architecture here). F32 files and the directories
match within float32 error and give the same 32 greedy tokens; F16 and
Q8_0 files match transformers run on the same dequantized file where its
GGUF loader handles the architecture, and the source model within the
format's rounding elsewhere; tokenizers from both sources give the
recorded ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pyllm

TINY = Path(__file__).parent / "data" / "tiny"
MANIFEST = json.loads((TINY / "manifest.json").read_text())["archs"]
SOURCES = [(arch, "hf") for arch in sorted(MANIFEST)] + [
    (arch, t) for arch in sorted(MANIFEST) for t in sorted(MANIFEST[arch]["gguf"])]
# the largest logit error relative to the largest logit, by weight format
# (F16 / Q8_0: their rounding of the weights, measured 1e-3..3e-3 / 3e-2..1e-1)
BOUND = {"hf": 1e-5, "f32": 1e-5, "f16": 1e-2, "q8_0": 0.2}
# architectures transformers' GGUF loader dequantizes faithfully (the exact reference for F16 / Q8_0)
HF_GGUF_OK = ("llama2", "mistral", "qwen2")


def path_of(arch: str, source: str) -> Path:
    a = MANIFEST[arch]
    return TINY / (a["hf_dir"] if source == "hf" else a["gguf"][source]["path"])


_models: dict = {}


def model_of(arch: str, source: str):
    key = (arch, source)
    if key not in _models:
        _models[key] = pyllm.AutoModelForCausalLM.from_pretrained(path_of(arch, source))
    return _models[key]


@pytest.mark.parametrize("arch,source", SOURCES, ids=[f"{a}-{s}" for a, s in SOURCES])
def test_logits_match_the_source_model(arch, source):
    ref = np.load(TINY / MANIFEST[arch]["npz"])
    model = model_of(arch, source)
    for i in range(len(MANIFEST[arch]["prompts"]["ids"])):
        ids, want = ref[f"prompt{i}_ids"], ref[f"prompt{i}_logits"]
        got = model(ids[None]).logits[0]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= BOUND[source], f"{arch} {source} prompt {i} ({len(ids)} tokens): relative error {err:.2e}"


@pytest.mark.parametrize("arch,source", [s for s in SOURCES if s[1] in ("hf", "f32")],
                         ids=[f"{a}-{s}" for a, s in SOURCES if s in ("hf", "f32")])
def test_greedy_generation_matches_the_source_model(arch, source):
    g = MANIFEST[arch]["greedy"]
    prompt = MANIFEST[arch]["prompts"]["ids"][g["prompt"]]
    model = model_of(arch, source)
    model.reset()
    out = model.generate(prompt, max_new_tokens=g["new_tokens"], min_new_tokens=g["new_tokens"], do_sample=False)
    assert np.asarray(out).reshape(-1)[len(prompt):].tolist() == g["ids"]


@pytest.mark.parametrize("arch", HF_GGUF_OK)
@pytest.mark.parametrize("source", ["f16", "q8_0"])
def test_rounded_formats_match_transformers_on_the_same_file(arch, source):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    f = path_of(arch, source)
    hf = transformers.AutoModelForCausalLM.from_pretrained(f.parent, gguf_file=f.name, dtype=torch.float32).eval()
    ids = np.load(TINY / MANIFEST[arch]["npz"])["prompt2_ids"]
    with torch.no_grad():
        want = hf(torch.tensor(ids[None])).logits[0].numpy()
    got = model_of(arch, source)(ids[None]).logits[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("arch,source", [s for s in SOURCES if s[1] in ("hf", "f32")],
                         ids=[f"{a}-{s}" for a, s in SOURCES if s in ("hf", "f32")])
def test_tokenizers_give_the_recorded_ids(arch, source):
    tok = pyllm.AutoTokenizer.from_pretrained(path_of(arch, source))
    p = MANIFEST[arch]["prompts"]
    for text, ids in zip(p["texts"], p["ids"]):
        assert tok.encode(text)[:len(ids)] == ids, (arch, source, text[:40])


def test_every_architecture_is_covered():
    archs = {MANIFEST[a]["gguf"]["f32"]["architecture"] for a in MANIFEST}
    assert {"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2"} <= archs
    # Llama 3's frequency factors travel as a tensor, which the loader must use (not ignore)
    assert "llama3" in MANIFEST and MANIFEST["llama3"]["config"]["rope_parameters"]["rope_type"] == "llama3"
