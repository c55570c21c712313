"""Loading tokenizers from files: the registry of directory formats, GGUF files, tokenizer.model
parsing, pyllm.AutoTokenizer on tokenizer-only directories, the errors for what is not supported,
and that pyllm.tokenizers imports nothing from pyllm.models. Needs neither transformers nor the hub."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from tokenizer_cases import FIXTURES, REFS, TEXTS, bytelevel_dir, model_only_dir

import pyllm
from pyllm.tokenizers import BPETokenizer, SentencePieceBPETokenizer, load_hf_tokenizer, load_tokenizer
from pyllm.tokenizers.files import (
    TOKENIZER_FORMATS,
    find_tokenizer,
    read_sentencepiece_model,
    tokenizer_from_gguf_metadata,
    tokenizer_from_hf_json,
)

PACKAGE = Path(pyllm.__file__).parent


def test_tokenizers_do_not_import_models():
    for path in sorted((PACKAGE / "tokenizers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                name = ("." * node.level) + (node.module or "")
                assert not name.lstrip(".").startswith("models") and "pyllm.models" not in name, (path.name, name)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pyllm.models") for a in node.names), path.name


def test_registry_order_and_find(tmp_path):
    assert [f.marker for f in TOKENIZER_FORMATS] == ["char_tokenizer.json", "tokenizer.json", "tokenizer.model",
                                                     "vocab.json"]
    assert find_tokenizer(FIXTURES / "llama_tiny") == FIXTURES / "llama_tiny" / "tokenizer.json"
    assert find_tokenizer(model_only_dir("llama_tiny", tmp_path / "m")).name == "tokenizer.model"
    assert find_tokenizer(tmp_path) is None
    (tmp_path / "vocab.json").write_text("{}")
    assert find_tokenizer(tmp_path) is None  # vocab.json needs merges.txt


@pytest.mark.parametrize("name", ["llama_medium", "gemma_tiny", "mistral_tiny"])
def test_auto_tokenizer_on_tokenizer_only_directories(name, tmp_path):
    d = tmp_path / name
    shutil.copytree(FIXTURES / name, d, ignore=shutil.ignore_patterns("*.gguf"))
    tok = pyllm.AutoTokenizer.from_pretrained(str(d), padding_side="left")
    assert isinstance(tok, SentencePieceBPETokenizer) and tok.padding_side == "left"
    assert tok.encode(TEXTS[10]) == REFS[f"{name}/dir"]["ids"][10]


def test_gguf_files_and_directories_holding_one(tmp_path):
    tok = load_tokenizer(FIXTURES / "llama_tiny" / "llama.gguf")
    assert isinstance(tok, SentencePieceBPETokenizer)
    shutil.copy(FIXTURES / "gemma_tiny" / "gemma2.gguf", tmp_path / "model.gguf")
    assert load_tokenizer(tmp_path).bos_token == "<bos>"


def test_chat_template_from_jinja_file(tmp_path):
    d = tmp_path / "t"
    shutil.copytree(FIXTURES / "llama_tiny", d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template")
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!")
    assert load_hf_tokenizer(d).apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi!"


def test_read_sentencepiece_model():
    spm = read_sentencepiece_model((FIXTURES / "llama_tiny" / "tokenizer.model").read_bytes())
    vocab = json.loads((FIXTURES / "llama_tiny" / "tokenizer.json").read_text())["model"]["vocab"]
    assert [p for p, _, _ in spm.pieces] == sorted(vocab, key=vocab.get)
    assert (spm.model_type, spm.byte_fallback, spm.add_dummy_prefix) == (2, True, True)
    assert spm.special_ids == {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
    types = {p: t for p, _, t in spm.pieces}
    assert (types["<s>"], types["<unk>"], types["<0x0A>"], types["<tool>"], types["<ctrl>"]) == (3, 2, 6, 4, 3)
    gemma = read_sentencepiece_model((FIXTURES / "gemma_tiny" / "tokenizer.model").read_bytes())
    assert not gemma.add_dummy_prefix and gemma.special_ids["pad_id"] == 0
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        read_sentencepiece_model(b"\x0a\xff\xff")


def _tokenizer_json(name="llama_tiny"):
    return json.loads((FIXTURES / name / "tokenizer.json").read_text(encoding="utf-8"))


def test_unsupported_files_say_what_is_supported(tmp_path):
    obj = _tokenizer_json()
    with pytest.raises(ValueError, match="tokenizer_class 'BertTokenizer' is not supported; supported: "
                                         "PreTrainedTokenizerFast.*LlamaTokenizer"):
        tokenizer_from_hf_json(obj, {"tokenizer_class": "BertTokenizer"})
    with pytest.raises(ValueError, match="model type 'WordPiece' is not supported"):
        tokenizer_from_hf_json(dict(obj, model={"type": "WordPiece", "vocab": {}}), {})
    with pytest.raises(ValueError, match="normalizer .*Precompiled.* is not supported"):
        tokenizer_from_hf_json(dict(obj, normalizer={"type": "Precompiled", "precompiled_charsmap": ""}), {})
    with pytest.raises(ValueError, match="pre-tokenizer .*Whitespace.* is not supported"):
        tokenizer_from_hf_json(dict(obj, pre_tokenizer={"type": "Whitespace"}), {})
    with pytest.raises(ValueError, match="bos_token '<nope>' is not in the vocabulary"):
        tokenizer_from_hf_json(obj, {"bos_token": "<nope>"})
    byte_level = json.loads((bytelevel_dir("llama3", tmp_path / "b") / "tokenizer.json").read_text())
    odd = dict(byte_level, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{N}+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]})
    with pytest.raises(ValueError, match="byte-level pre-tokenizer .* is not supported; supported: ByteLevel"):
        tokenizer_from_hf_json(odd, {})
    with pytest.raises(ValueError, match=r"unsupported tokenizer model 'bert' \(tokenizer.ggml.model\); "
                                         r"supported: gpt2 \(byte-level BPE\), llama \(SentencePiece BPE\)"):
        tokenizer_from_gguf_metadata({"tokenizer.ggml.model": "bert"})
    with pytest.raises(FileNotFoundError, match="no tokenizer in .* tokenizer.model"):
        load_hf_tokenizer(tmp_path / "empty")


def test_the_post_processor_decides_bos_and_eos():
    # as transformers 5: with a tokenizer.json, the config's add_bos_token / add_eos_token are ignored
    obj = _tokenizer_json("spm_file_pipeline")  # its TemplateProcessing adds <s>
    for flags in ({}, {"add_bos_token": False, "add_eos_token": True}):
        tok = tokenizer_from_hf_json(obj, {"bos_token": "<s>", "eos_token": "</s>", **flags})
        assert tok.encode("a")[0] == 1 and tok.encode("a")[-1] != 2
    tok = tokenizer_from_hf_json(dict(obj, post_processor=None), {"bos_token": "<s>", "add_bos_token": True})
    assert tok.encode("a")[0] != 1
    # converting a tokenizer.model, they are used
    tok = tokenizer_from_hf_json(obj, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False,
                                       "add_eos_token": True}, use_config_flags=True)
    assert tok.encode("a")[0] != 1 and tok.encode("a")[-1] == 2


def test_byte_level_classes(tmp_path):
    for name, split in (("llama3", "llama3"), ("qwen2", "qwen2"), ("gpt2", "gpt2")):
        tok = load_tokenizer(bytelevel_dir(name, tmp_path / name))
        assert isinstance(tok, BPETokenizer) and tok.split == split


def test_a_template_naming_other_tokens_is_kept():
    # no bos_token in the config: transformers names none, yet the file's template still adds <s>
    tok = tokenizer_from_hf_json(_tokenizer_json("spm_file_pipeline"), {})
    assert tok.bos_token_id is None and tok.encode("a")[0] == 1 and tok.special_template == ([1], [])
    assert tok.encode("a", add_special_tokens=False)[0] != 1


@pytest.mark.parametrize("case", ["llama_medium/dir", "mistral_tiny/dir", "gemma_tiny/gemma2.gguf",
                                  "llama_tiny/phi3.gguf", "spm_file_pipeline/dir", "smollm2/llama3/dir",
                                  "smollm2/qwen2/dir", "smollm2/llama-bpe.gguf"])
def test_save_and_load_again(case, tmp_path):
    from tokenizer_cases import load_case

    from pyllm.tokenizers import save_tokenizer

    tok = load_case(case, tmp_path / "src")
    save_tokenizer(tok, tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert type(again) is type(tok)
    assert [again.encode(t) for t in TEXTS] == REFS[case]["ids"]
    assert again.chat_template == tok.chat_template
    assert (again.bos_token_id, again.eos_token_id, again.unk_token_id, again.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id)
