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


CHAT_TEMPLATE_INPUTS = _files("corpus", "chat_template") + _files("regressions", "chat_template")


@pytest.mark.parametrize("path", CHAT_TEMPLATE_INPUTS, ids=os.path.basename)
def test_chat_template_inputs(path):
    _load("fuzz_chat_template").check_template(_read(path))


def test_chat_template_check_can_fail(monkeypatch):
    # a renderer that leaks Python's own error is a finding
    harness = _load("fuzz_chat_template")
    with pytest.raises(ZeroDivisionError):
        monkeypatch.setattr(harness.ct, "render_chat_template", lambda source, **kw: 1 / 0)
        harness.check_template(b"{{ 1 }}")


def test_hfdir_seeds_and_regressions():
    harness = _load("fuzz_hfdir")
    found = harness.seeds()
    assert len(found) == 9
    for data in found.values():
        harness.check_dir(data)
    for path in _files("regressions", "hfdir"):
        harness.check_dir(_read(path))


def test_hfdir_check_loads_the_whole_seeds():
    # the untouched seeds load and reach the forward pass
    from pyllm import AutoModelForCausalLM

    harness = _load("fuzz_hfdir")
    calls = []
    real = AutoModelForCausalLM.from_pretrained
    try:
        AutoModelForCausalLM.from_pretrained = staticmethod(lambda d, **k: calls.append(real(d, **k)) or calls[-1])
        for arch in ("llama3", "qwen3", "gpt2"):
            harness.check_dir(harness.seeds()[arch])
    finally:
        AutoModelForCausalLM.from_pretrained = staticmethod(real)
    assert len(calls) == 3
