"""Replays the fuzzers' seed corpora and every saved finding (fuzz/regressions/)
through the fuzz harnesses' checks. Not the fuzzing itself (fuzz/, CONTRIBUTING.md)."""

import importlib.util
import os
import sys
from types import ModuleType

import pytest

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, os.path.join(FUZZ, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _files(*parts: str) -> list:
    folder = os.path.join(FUZZ, *parts)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if not f.startswith("."))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


TOKENIZER_INPUTS = _files("corpus", "tokenizer") + _files("regressions", "tokenizer")


@pytest.mark.parametrize("path", TOKENIZER_INPUTS, ids=os.path.basename)
def test_tokenizer_inputs(path, smollm_path):
    _load("fuzz_tokenizer").check_tokenizer(_read(path))


def test_tokenizer_check_can_fail(smollm_path, monkeypatch):
    # the differential check notices a fast encoder that disagrees with the reference
    harness = _load("fuzz_tokenizer")
    tok, ref, known = harness._tokenizers()
    monkeypatch.setattr(tok, "encode", lambda text: tok._core.encode(text)[:-1])
    with pytest.raises(AssertionError):
        harness.check_text("hello world")


def test_gguf_seeds_and_regressions(tmp_path, smollm_path):
    harness = _load("fuzz_gguf")
    seeds = _load("make_corpus").seeds(str(tmp_path))
    assert len(seeds) >= 15
    for data in seeds.values():
        harness.check_gguf(data)
    for path in _files("regressions", "gguf"):
        harness.check_gguf(_read(path))


def test_gguf_check_reads_tensors(tmp_path, smollm_path):
    # the well-formed seeds parse and reach the tensor and tokenizer checks
    import pyllm

    seeds = _load("make_corpus").seeds(str(tmp_path))
    path = tmp_path / "types.gguf"
    g = pyllm.GGUFFile(str(path))
    assert {t.type_name for t in g.tensors.values()} == {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"}
    g = pyllm.GGUFFile(str(tmp_path / "tokenizer.gguf"))
    assert g.metadata["tokenizer.ggml.model"] == "gpt2"
    assert seeds["types"] == path.read_bytes()
