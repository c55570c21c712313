"""Byte-level BPE with Llama 3's and Qwen2's pre-tokenizers: the Cython scanners against the
reference regexes (stdlib re over the recorded Unicode classes), ignore_merges against the
reference BPE, the tokenizer.ggml.pre names and their errors. Needs neither transformers nor the hub."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_cases import TEXTS, bytelevel_dir, smollm2_metadata

from pyllm.tokenizers import BPETokenizer, _bpe, bpe_ref, load_tokenizer, tokenizer_from_gguf_metadata
from pyllm.tokenizers.bpe import PRE_TOKENIZERS

KINDS = {"gpt2": 0, "llama3": 1, "qwen2": 2}
# every branch of the regexes: contractions in both cases (and the long s that folds to s),
# newlines and other whitespace, digits, letters, marks, symbols
POOL = " \t\n\r\x0b\x0c\u00a0\u3000\u2028\u0085'sStTmMdDrReEvVlLxX19\u0663\u00b2\u00bd!?.,-_\u017f\u212a\u0301\u00e9" \
       "\u4e2d\U0001f600\u01c5\u00ad"


@pytest.mark.parametrize("kind", KINDS)
def test_scanner_matches_reference_on_fixture_texts(kind):
    for text in TEXTS:
        assert _bpe.pretokenize(text, KINDS[kind]) == bpe_ref.pretokenize_ref(text, kind), repr(text[:60])


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=POOL, max_size=24), st.sampled_from(sorted(KINDS)))
def test_scanner_matches_reference_on_random_text(text, kind):
    pieces = _bpe.pretokenize(text, KINDS[kind])
    assert pieces == bpe_ref.pretokenize_ref(text, kind)
    assert "".join(pieces) == text


def test_llama3_and_qwen2_splits():
    text = "I'LL pay 1234567 now!!\n\n  Don'T"
    assert _bpe.pretokenize(text, 1) == ["I", "'LL", " pay", " ", "123", "456", "7", " now", "!!\n\n", " ", " Don",
                                         "'T"]
    assert _bpe.pretokenize("x 1234", 2) == ["x", " ", "1", "2", "3", "4"]
    assert _bpe.pretokenize("x 1234", 0) == ["x", " 1234"]
    # 3: SmolLM's Digits(individual_digits) then GPT-2's regex, each digit ending the text before it
    assert _bpe.pretokenize("x 1234  y\t5 '6", 3) == ["x", " ", "1", "2", "3", "4", " ", " y", "\t", "5", " '",
                                                       "6"]
    with pytest.raises(ValueError, match="kind must be 0, 1, 2 or 3"):
        _bpe.pretokenize("x", 4)


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    return load_tokenizer(bytelevel_dir("llama3", tmp_path_factory.mktemp("llama3")))


def test_llama3_directory_has_the_file_pipeline(llama3):
    assert isinstance(llama3, BPETokenizer)
    assert (llama3.split, llama3.ignore_merges, llama3.add_bos_token, llama3.normalizer) == ("llama3", True, True, None)


@pytest.fixture(scope="module")
def llama3_ref(llama3):
    return bpe_ref.ReferenceBPE(llama3.get_vocab(), smollm2_metadata()["tokenizer.ggml.merges"],
                                specials=list(llama3._added), kind="llama3", ignore_merges=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=POOL + "abcdefghij the and of", max_size=40))
def test_ignore_merges_matches_reference(llama3, llama3_ref, text):
    assert llama3.encode(text, add_special_tokens=False) == llama3_ref.encode(text)


def test_pre_names():
    md = smollm2_metadata()
    for name, split in PRE_TOKENIZERS.items():
        tok = tokenizer_from_gguf_metadata(dict(md, **{"tokenizer.ggml.pre": name}))
        assert tok.split == split
    assert {"llama-bpe", "qwen2", "gpt-2", "gpt2", "smollm", "default"} <= set(PRE_TOKENIZERS)
    with pytest.raises(ValueError, match=r"unsupported pre-tokenizer 'qwen35'; supported: .*deepseek-r1-qwen.*"
                                         r"llama-bpe.*qwen2.*smollm"):
        tokenizer_from_gguf_metadata(dict(md, **{"tokenizer.ggml.pre": "qwen35"}))


def test_qwen2_normalizes_to_nfc(tmp_path):
    tok = load_tokenizer(bytelevel_dir("qwen2", tmp_path / "q"))
    assert tok.normalizer == "NFC"
    assert tok.encode("e\u0301") == tok.encode("\u00e9")
    gguf = tokenizer_from_gguf_metadata(dict(smollm2_metadata(), **{"tokenizer.ggml.pre": "qwen2"}))
    assert gguf.normalizer is None and gguf.encode("e\u0301") != gguf.encode("\u00e9")  # as transformers
