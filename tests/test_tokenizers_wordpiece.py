"""BertTokenizerFast against what transformers' BertTokenizerFast gave, recorded by
scripts/record_wordpiece_refs.py (multilingual texts, pairs, truncation and padding, under five
normalizer settings), plus its API: tensors, threads, files, padding of collated features, bad input;
and the Cython core against the readable reference, wordpiece_ref.py."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wordpiece_cases import REFS, model_dir, plain, variant_dir

import pyllm
from pyllm import AutoTokenizer, BertTokenizerFast
from pyllm.tokenizers import _wordpiece
from pyllm.tokenizers.wordpiece import BertTokenizer, TextInputError, char_mapping
from pyllm.tokenizers.wordpiece_ref import wordpiece_ref

TEXTS = REFS["texts"]
PAIRS = REFS["pairs"]
VARIANTS = sorted(REFS["variants"])


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wordpiece")
    return {name: BertTokenizerFast.from_pretrained(variant_dir(tmp / name, REFS["variants"][name]["normalizer"]))
            for name in VARIANTS}


@pytest.fixture(scope="module")
def tok():
    return BertTokenizerFast.from_pretrained("all-MiniLM-L6-v2")


@pytest.mark.parametrize("name", VARIANTS)
def test_ids_offsets_and_decoding_match_transformers(toks, name):
    t, ref = toks[name], REFS["variants"][name]
    got = plain(t(TEXTS, return_offsets_mapping=True))
    for key in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping"):
        for i, text in enumerate(TEXTS):
            assert got[key][i] == ref["single"][key][i], (key, text)
    ids = ref["single"]["input_ids"]
    assert [t.convert_ids_to_tokens(r) for r in ids] == ref["tokens"]
    assert [t.decode(r) for r in ids] == ref["decode"]
    assert [t.decode(r, skip_special_tokens=True) for r in ids] == ref["decode_skip"]
    assert [t.decode(r, clean_up_tokenization_spaces=True) for r in ids] == ref["decode_clean"]
    assert t.batch_decode(ids, skip_special_tokens=True) == ref["decode_skip"]


@pytest.mark.parametrize("name", VARIANTS)
def test_each_text_alone_matches_the_batch(toks, name):
    t, ref = toks[name], REFS["variants"][name]["single"]
    for i, text in enumerate(TEXTS):
        enc = t(text, return_offsets_mapping=True)
        assert enc["input_ids"] == ref["input_ids"][i]
        assert [list(p) for p in enc["offset_mapping"]] == ref["offset_mapping"][i]
        assert t.encode(text) == ref["input_ids"][i]


def _check_call(t, got_fn, want):
    if "error" in want:
        with pytest.raises(ValueError, match="truncation"):
            got_fn()
    else:
        assert plain(got_fn()) == want


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("k", range(len(REFS["calls"])))
def test_pairs_truncation_and_padding_match_transformers(toks, name, k):
    t, ref, kw = toks[name], REFS["variants"][name], REFS["calls"][k]
    _check_call(t, lambda: t([a for a, _ in PAIRS], [b for _, b in PAIRS], **kw), ref["calls"][k])
    for (a, b), want in zip(PAIRS, ref["pair_calls"][k]):
        _check_call(t, lambda a=a, b=b: t([a], [b], **kw), want)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("k", range(len(REFS["single_calls"])))
def test_single_calls_match_transformers(toks, name, k):
    t = toks[name]
    _check_call(t, lambda: t(TEXTS, **REFS["single_calls"][k]), REFS["variants"][name]["single_calls"][k])


def test_classes_of_the_table():
    # spot checks of the recorded table (the table itself comes from tokenizers)
    cls = _wordpiece.code_point_class
    assert [cls(ord(c)) for c in "a \t\x00,中$"] == [0, 2, 2, 1, 4, 3, 4]
    with pytest.raises(ValueError):
        cls(0x110000)


def test_tensors(tok):
    enc = tok(["Hello world", "a b c d e f"], padding=True, return_tensors="np", return_offsets_mapping=True)
    assert enc["input_ids"].shape == enc["attention_mask"].shape == enc["token_type_ids"].shape == (2, 8)
    assert enc["input_ids"].dtype == np.int64 and enc["offset_mapping"].shape == (2, 8, 2)
    assert enc["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    torch = pytest.importorskip("torch")
    pt = tok(["Hello world", "a b c d e f"], padding=True, return_tensors="pt")
    assert isinstance(pt.input_ids, torch.Tensor) and pt.input_ids.tolist() == enc["input_ids"].tolist()
    assert tok.encode("Hello world", return_tensors="np").tolist() == [tok.encode("Hello world")]
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "b c"], return_tensors="np")


def test_threads_give_the_same_ids(tok):
    texts = TEXTS * 20
    one = tok(texts, num_threads=1)["input_ids"]
    assert tok(texts, num_threads=2)["input_ids"] == one
    assert tok.encode_batch(texts, num_threads=2) == one
    assert [tok.encode(t) for t in texts[:200]] == one[:200]
    entries, used = tok._core.cache_size()
    assert entries > 0 and used > 0
    tok.clear_cache()
    assert tok._core.cache_size() == (0, 0)
    assert tok(texts, num_threads=2)["input_ids"] == one  # refilled


def test_files_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "saved")
    again = BertTokenizerFast.from_pretrained(tmp_path / "saved")
    want = tok(TEXTS)["input_ids"]
    assert again(TEXTS)["input_ids"] == want
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path / "saved"), BertTokenizerFast)
    # vocab.txt + tokenizer_config.json alone (a slow-tokenizer directory) load the same tokenizer
    only = tmp_path / "vocab_only"
    only.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(model_dir() / name, only / name)
    from_vocab = AutoTokenizer.from_pretrained(only)
    assert isinstance(from_vocab, BertTokenizerFast) and from_vocab(TEXTS)["input_ids"] == want
    assert AutoTokenizer.from_pretrained("all-MiniLM-L6-v2")(TEXTS)["input_ids"] == want
    assert pyllm.BertTokenizerFast is BertTokenizerFast is BertTokenizer
    assert json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())["model_max_length"] == 512


def test_special_tokens_and_vocab(tok):
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token, tok.mask_token) == \
        ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.unk_token_id) == (101, 102, 0, 100)
    assert tok.vocab_size == len(tok) == 30522 and tok.model_max_length == 512
    vocab = tok.get_vocab()
    assert tok.convert_tokens_to_ids(["hello", "##ing", "not-a-token"]) == [vocab["hello"], vocab["##ing"], 100]
    ref = REFS["variants"]["uncased"]
    for text, tokens, decoded in zip(TEXTS, ref["tokens"], ref["decode"]):
        assert tok.tokenize(text) == tokens[1:-1]
        assert tok.convert_tokens_to_string(tokens) == decoded
    assert tok.convert_ids_to_tokens([101, vocab["hello"], 102], skip_special_tokens=True) == ["hello"]


def test_default_truncation_is_model_max_length(tok):
    long = "word " * 600
    assert len(tok(long)["input_ids"]) == 602  # no truncation unless asked, as transformers
    assert len(tok(long, truncation=True)["input_ids"]) == 512
    assert len(tok([long, "a"], truncation=True, padding="max_length", max_length=64)["input_ids"][1]) == 64


def test_pad_collated_features(tok):
    feats = [dict(tok("a short one"), label=1), dict(tok("a rather longer text than that"), label=0)]
    batch = tok.pad(feats, return_tensors="np")
    n0, n1 = len(feats[0]["input_ids"]), len(feats[1]["input_ids"])
    assert n0 < n1
    assert batch["input_ids"].shape == batch["token_type_ids"].shape == batch["attention_mask"].shape == (2, n1)
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (n1 - n0)
    assert batch["input_ids"][0].tolist() == feats[0]["input_ids"] + [tok.pad_token_id] * (n1 - n0)
    assert batch["label"].tolist() == [1, 0]
    assert tok.pad({"input_ids": [[101, 102], [101, 7592, 102]]})["input_ids"] == [[101, 102, 0], [101, 7592, 102]]


@pytest.mark.parametrize("text, match", [
    (None, "None"), (3, "int"), ([1, 2], r"text\[0\] is int"), (["a", None], r"text\[1\] is NoneType"),
    ({"a": 1}, "dict"), (b"bytes", "bytes")])
def test_texts_that_are_not_strings(tok, text, match):
    with pytest.raises(TextInputError, match=match):
        tok(text)
    with pytest.raises((TypeError, ValueError)):  # transformers raises one or the other
        tok.encode(text)


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="too short for the 2 special tokens"):
        tok("a b c", truncation=True, max_length=1)
    with pytest.raises(ValueError, match="too short for the 3 special tokens"):
        tok("a b c", "d", truncation=True, max_length=2)
    with pytest.raises(ValueError, match="needs a second sequence"):
        tok("a b c", truncation="only_second", max_length=4)
    with pytest.raises(ValueError, match="cannot fit max_length"):
        tok("a", "b c d e f g", truncation="only_first", max_length=5)
    with pytest.raises(ValueError, match="text_pair must match"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding="):
        tok("a", padding="sideways")
    with pytest.raises(ValueError, match="truncation="):
        tok("a", truncation="middle")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="tf")
    with pytest.raises(ValueError, match="max_length"):
        tok("a", max_length=-1, truncation=True)
    with pytest.raises(TypeError, match="unexpected arguments: colour"):
        tok("a", colour="red")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([30522])
    with pytest.raises(UnicodeEncodeError):
        tok("lone \ud800 surrogate")
    with pytest.raises(FileNotFoundError):
        BertTokenizerFast.from_pretrained("no-such-model-dir")


# ---- the Cython core against the readable reference (pyllm/tokenizers/wordpiece_ref.py)

REF_PIECES = ["unaffable", " ", "\t", "é", "e\u0301", "İ", "中", "😀", "\x00", ",", "x" * 101, "##", "Ω"]


@pytest.mark.parametrize("lower, strip", [(True, True), (False, False), (True, False), (False, True)])
def test_core_matches_the_reference_on_the_recorded_texts(lower, strip):
    tok = BertTokenizerFast.from_pretrained(model_dir(), do_lower_case=lower, strip_accents=strip)
    mapping = char_mapping(lower, strip)
    vocab = tok.get_vocab()
    for text in TEXTS:
        if "[" in text:  # added tokens are not the reference's business
            continue
        assert tok._core.encode(text)[0] == wordpiece_ref(text, vocab, mapping, tok.unk_token_id), text


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.one_of(st.sampled_from(REF_PIECES), st.text(st.characters(blacklist_categories=("Cs",)),
                                                                     max_size=6)), max_size=10).map("".join))
def test_core_matches_the_reference_on_random_text(text):
    tok = _uncased()
    assert tok._core.encode(text)[0] == wordpiece_ref(text, tok.get_vocab(), char_mapping(True, True), 100)


@functools.lru_cache(maxsize=1)
def _uncased():
    return BertTokenizerFast.from_pretrained(model_dir())


def test_one_tokenizer_from_several_python_threads(tok):
    from concurrent.futures import ThreadPoolExecutor

    texts = TEXTS * 5
    want = tok(texts, num_threads=1)["input_ids"]
    with ThreadPoolExecutor(max_workers=20) as pool:  # more callers than the core's 16 word caches
        results = list(pool.map(lambda k: tok(texts[k:] + texts[:k], num_threads=2)["input_ids"], range(40)))
    for k, got in enumerate(results):
        assert got == want[k:] + want[:k]
