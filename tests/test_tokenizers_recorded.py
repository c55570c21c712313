"""pyllm's tokenizers against the ids, texts and special tokens transformers gave for every fixture
of tests/data/tokenizers (recorded by scripts/make_tokenizer_fixtures.py): SentencePiece-style BPE
from GGUF files, directories and tokenizer.model alone; byte-level BPE with Llama 3's, Qwen2's and
GPT-2's pre-tokenizers from GGUF metadata and directories. Needs neither transformers nor the hub."""

from __future__ import annotations

import pytest
from tokenizer_cases import CASES, REFS, TEXTS, load_case

from pyllm.tokenizers import BPETokenizer, SentencePieceBPETokenizer

EXPECTED = {
    "llama_tiny/dir", "llama_tiny/model", "llama_tiny/llama.gguf", "llama_tiny/phi3.gguf",
    "llama_medium/dir", "llama_medium/model", "llama_medium/llama.gguf",
    "mistral_tiny/dir", "mistral_tiny/model", "mistral_tiny/llama.gguf",
    "gemma_tiny/dir", "gemma_tiny/model", "gemma_tiny/gemma2.gguf", "spm_file_pipeline/dir",
    "smollm2/llama-bpe.gguf", "smollm2/qwen2.gguf", "smollm2/gpt-2.gguf", "smollm2/default.gguf",
    "smollm2/llama3/dir", "smollm2/qwen2/dir", "smollm2/gpt2/dir",
}

@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cases")
    return {case: load_case(case, tmp) for case in CASES}


def _mismatches(tok, texts, wanted, **kw):
    return [(t[:50], w[:12], g[:12]) for t, w in zip(texts, wanted) if (g := tok.encode(t, **kw)) != w]


def test_every_fixture_was_recorded():
    assert set(CASES) == EXPECTED
    assert len(TEXTS) > 600 and all(len(REFS[c]["ids"]) == len(TEXTS) for c in CASES)
    assert {"", "<s>Hello", "12345678901234567890123", "\U0001f600\U0001f44d\U0001f3fd"} <= set(TEXTS)


def test_the_recorded_pipelines_are_the_expected_ones():
    # what transformers built: a change here means the references were recorded from something else
    assert "prepend_scheme=first" in REFS["llama_medium/dir"]["pre_tokenizer"]
    assert "prepend_scheme=always" in REFS["mistral_tiny/dir"]["pre_tokenizer"]
    assert REFS["gemma_tiny/dir"]["normalizer"].startswith("Replace")
    assert REFS["llama_tiny/phi3.gguf"]["normalizer"].startswith("Sequence(normalizers=[Prepend")
    assert "\\p{N}{1,3}" in REFS["smollm2/llama-bpe.gguf"]["pre_tokenizer"]
    assert REFS["smollm2/qwen2/dir"]["normalizer"] == "NFC()"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_encode_matches_transformers(tokenizers, case):
    tok, ref = tokenizers[case], REFS[case]
    bad = _mismatches(tok, TEXTS, ref["ids"])
    assert not bad, f"{case}: {len(bad)} of {len(TEXTS)} texts differ from transformers, e.g. {bad[:3]}"
    bad = _mismatches(tok, TEXTS, ref["ids_plain"], add_special_tokens=False)
    assert not bad, f"{case} (add_special_tokens=False): {bad[:3]}"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_decode_matches_transformers(tokenizers, case):
    tok = tokenizers[case]
    bad = [(d["ids"][:8], d["text"][:30], tok.decode(d["ids"])[:30]) for d in REFS[case]["decode"]
           if tok.decode(d["ids"]) != d["text"] or tok.decode(d["ids"], skip_special_tokens=True) != d["skip"]]
    assert not bad, f"{case}: {len(bad)} decodes differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_special_tokens_match_transformers(tokenizers, case):
    tok, sp = tokenizers[case], REFS[case]["special"]
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (
        sp["bos_token_id"], sp["eos_token_id"], sp["unk_token_id"], sp["pad_token_id"])
    assert len(tok) == sp["len"]
    want = SentencePieceBPETokenizer if case.split("/")[0] != "smollm2" else BPETokenizer
    assert isinstance(tok, want)


@pytest.mark.parametrize("case", sorted(c for c in EXPECTED if "chat" in REFS[c]))
def test_chat_template_matches_transformers(tokenizers, case):
    tok = tokenizers[case]
    for r in REFS[case]["chat"]:
        assert tok.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False) == r["text"]
        assert tok.apply_chat_template(r["messages"], add_generation_prompt=True) == r["ids"]

