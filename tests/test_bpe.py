"""BPETokenizer against ids recorded from transformers (tests/data), against the pure-Python
reference on random text, and its API. Needs neither transformers nor the GGUF file."""

from __future__ import annotations

import gzip
import json
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyllm.tokenizers import BPETokenizer, _bpe, bpe_ref
from pyllm.tokenizers.bytelevel import bytes_to_unicode, decode_bytelevel, encode_bytelevel_ref

DATA = Path(__file__).parent / "data"
REFS = json.loads((DATA / "tokenizer_refs.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def metadata():
    with gzip.open(DATA / "smollm2_tokenizer.json.gz") as f:
        return json.loads(f.read())


@pytest.fixture(scope="module")
def tok(metadata):
    return BPETokenizer.from_gguf_metadata(metadata)


@pytest.fixture(scope="module")
def ref(tok, metadata):
    return bpe_ref.ReferenceBPE(tok.get_vocab(), metadata["tokenizer.ggml.merges"], specials=list(tok._added))


def _mismatches(pairs):
    return [(text[:60], want[:12], got[:12]) for text, want, got in pairs if want != got]


# ---- against transformers (recorded by scripts/record_tokenizer_refs.py)

def test_refs_were_recorded_from_the_expected_pipeline():
    src = REFS["source"]
    assert src["pre_tokenizer"] == "ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)"
    assert src["normalizer"] == "None"
    assert len(REFS["encode"]) > 500


def test_encode_matches_transformers(tok):
    bad = _mismatches((r["text"], r["ids"], tok.encode(r["text"])) for r in REFS["encode"])
    assert not bad, f"{len(bad)} texts differ from transformers, e.g. {bad[:3]}"


def test_reference_matches_transformers(ref):
    bad = _mismatches((r["text"], r["ids"], ref.encode(r["text"])) for r in REFS["encode"])
    assert not bad, f"{len(bad)} texts differ from transformers, e.g. {bad[:3]}"


def test_pretokenize_matches_transformers():
    def sym(pieces):
        return [encode_bytelevel_ref(p.encode("utf-8")) for p in pieces]

    for r in REFS["pretokenize"]:
        assert sym(_bpe.pretokenize(r["text"])) == r["pieces"], repr(r["text"])
        assert sym(bpe_ref.pretokenize_ref(r["text"])) == r["pieces"], repr(r["text"])


def test_decode_matches_transformers(tok):
    for r in REFS["decode"]:
        assert tok.decode(r["ids"]) == r["text"], r["ids"]
        assert tok.decode(r["ids"], skip_special_tokens=True) == r["text_skip"], r["ids"]


def test_chat_template_matches_transformers(tok):
    for r in REFS["chat"]:
        kw = dict(add_generation_prompt=r["add_generation_prompt"])
        assert tok.apply_chat_template(r["messages"], tokenize=False, **kw) == r["text"]
        assert tok.apply_chat_template(r["messages"], **kw) == r["ids"]
        assert tok.apply_chat_template(r["messages"], return_dict=True, **kw) == {
            "input_ids": r["ids"], "attention_mask": [1] * len(r["ids"])}


def test_special_tokens_match_transformers(tok):
    sp = REFS["special"]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (
        sp["bos_token_id"], sp["eos_token_id"], sp["pad_token_id"], sp["unk_token_id"])
    assert tok.all_special_ids == sp["all_special_ids"]
    assert len(tok) == tok.vocab_size == sp["len"]
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")


# ---- the code point classes

def test_class_table_agrees_with_unicodedata_where_python_knows_the_character():
    # the recorded table is HF's (Unicode 16.0); Python's own database must agree wherever it
    # has the character assigned, so only characters newer than it may differ
    space = {c for lo, hi in bpe_ref.class_ranges()["W"] for c in range(lo, hi + 1)}
    assert space == {*range(9, 14), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                     0x202F, 0x205F, 0x3000}  # Unicode White_Space; not str.isspace's U+001C..U+001F
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        if cat in ("Cn", "Cs"):
            continue
        want = 1 if cat[0] == "L" else 2 if cat[0] == "N" else 3 if cp in space else 0
        assert _bpe.code_point_class(cp) == want, hex(cp)


def test_fast_class_table_equals_reference_ranges():
    codes = {"O": 0, "L": 1, "N": 2, "W": 3}
    for cls, ranges in bpe_ref.class_ranges().items():
        for lo, hi in ranges:
            for cp in {lo, hi, (lo + hi) // 2}:
                assert _bpe.code_point_class(cp) == codes[cls], hex(cp)


# ---- fast path against the reference on random text

PIECES = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'", " ", "  ", "\t", "\n", "\r\n", "\u00a0",
          "\u3000", "x", "hello", " world", "123", "4567890", "٣", "!", "...", "é", "e\u0301", "中文", "😀", "👍🏽",
          "\u200d", "\x00", "\x04", "\U00050000", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<filename>"]
texty = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map("".join)
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(texty, any_text))
def test_fast_equals_reference(tok, ref, text):
    assert _bpe.pretokenize(text) == bpe_ref.pretokenize_ref(text)
    assert tok.encode(text) == ref.encode(text)


# bytes SmolLM2's vocabulary has no token for; HF drops them, so text holding them does not round-trip
def _lossless(ch: str) -> bool:
    return ch not in "\x04\x06\x13\x14\x16\x1d" and not 0x40000 <= ord(ch) <= 0xBFFFF


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(texty, any_text).map(lambda s: "".join(c for c in s if _lossless(c))))
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_bytes_without_a_token_are_dropped_like_transformers(tok):
    assert tok.encode("\x04") == []
    assert tok.encode("!\x04!") == tok.encode("!!")  # the neighbours then merge, as in HF
    assert "\x04" not in tok.decode(tok.encode("a\x04b"))


@pytest.mark.parametrize("text", ["1" * 3000, " " * 2000, "\n" * 700 + "x", "ab" * 400, "é" * 500, "😀" * 200,
                                  "a" * 257, "a" * 256])
def test_long_pieces_match_reference(tok, ref, text):
    # long pieces bypass the word cache (over 256 bytes) and exercise the merge heap
    assert tok.encode(text) == ref.encode(text)
    assert tok.encode(text) == ref.encode(text)  # a second time, from the cache if cached


def test_merge_rebuilds_every_normal_token(tok, metadata):
    # BPE of a token's own bytes gives the token back (what tiktoken's shortcut assumes)
    for i, (t, ty) in enumerate(zip(metadata["tokenizer.ggml.tokens"], metadata["tokenizer.ggml.token_type"])):
        if ty == 1 and i % 7 == 0:
            assert tok._core.merge(decode_bytelevel(t)) == [i], t


# ---- API

def test_empty_text(tok, metadata):
    assert tok.encode("") == [] and tok("")["input_ids"] == []
    md = dict(metadata, **{"tokenizer.ggml.add_bos_token": True})
    with_bos = BPETokenizer.from_gguf_metadata(md)
    assert with_bos.encode("") == [1]
    assert with_bos.encode("", add_special_tokens=False) == []
    assert with_bos.encode("Hi") == [1] + tok.encode("Hi")


def test_special_tokens_in_text_are_single_ids(tok):
    assert tok.encode("<|im_start|>user\nHi<|im_end|>") == [1, 4093, 198, 26843, 2]
    assert tok.encode("<|im_start|>", add_special_tokens=False) == [1]
    assert tok.encode("<|im_start") == tok._core.encode("<|im_start")  # incomplete: plain text


def test_call_and_batch(tok):
    texts = ["Hello world", "", "<|im_start|>x", "中文 😀"] * 8
    out = tok(texts)
    assert out["input_ids"] == [tok.encode(t) for t in texts]
    assert [len(m) for m in out["attention_mask"]] == [len(i) for i in out["input_ids"]]
    assert tok("Hello world") == {"input_ids": [19556, 905], "attention_mask": [1, 1]}
    assert tok.encode_batch(texts, num_threads=4) == tok.encode_batch(texts, num_threads=1)
    with pytest.raises(TypeError, match="encode_batch"):
        tok.encode(["a list"])


def test_threads_share_the_core_safely(tok):
    # more concurrent callers than cache slots: the extra ones encode uncached, same ids
    texts = [REFS["encode"][i]["text"] * 3 for i in range(len(REFS["encode"]))]
    want = [tok.encode(t) for t in texts]
    with ThreadPoolExecutor(max_workers=24) as pool:
        got = list(pool.map(tok.encode, texts))
    assert got == want


def test_decode_errors_name_the_id(tok):
    for bad in (49152, -1, 10**20):
        with pytest.raises(ValueError, match=str(bad)):
            tok.decode([5, bad])
    with pytest.raises(ValueError, match="49152"):
        tok.convert_ids_to_tokens([49152])


def test_decode_accepts_ints_and_numpy(tok):
    import numpy as np

    ids = tok.encode("Hello world")
    assert tok.decode(np.array(ids)) == "Hello world" == tok.decode(ids)
    assert tok.decode(ids[0]) == "Hello"
    assert tok.batch_decode([ids, [2]], skip_special_tokens=True) == ["Hello world", ""]


def test_token_lookups(tok):
    assert tok.convert_ids_to_tokens([19556, 905]) == ["Hello", "Ġworld"]
    assert tok.convert_ids_to_tokens(905) == "Ġworld"
    assert tok.convert_tokens_to_ids(["Hello", "Ġworld", "<|im_end|>"]) == [19556, 905, 2]
    assert tok.convert_tokens_to_ids("no such token") == tok.unk_token_id


def test_chat_template_sandbox_and_raise_exception(tok):
    t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}"
    out = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, chat_template=t)
    assert out == "<|im_start|>"
    import jinja2

    with pytest.raises(jinja2.exceptions.TemplateError, match="first must be user"):
        tok.apply_chat_template([{"role": "system", "content": "x"}], chat_template=t)
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.apply_chat_template([], tokenize=False, chat_template="{{ ''.__class__.__mro__ }}")


def test_constructor_errors(metadata):
    with pytest.raises(ValueError, match="pre-tokenizer 'tekken'; supported: .*llama-bpe.*qwen2"):
        BPETokenizer.from_gguf_metadata(dict(metadata, **{"tokenizer.ggml.pre": "tekken"}))
    with pytest.raises(ValueError, match="merge 0"):
        BPETokenizer(["a", "b"], ["a c"])
    with pytest.raises(ValueError, match="bos_token_id=5"):
        BPETokenizer(["a"], [], bos_token_id=5)
    with pytest.raises(ValueError, match="'llama'"):
        BPETokenizer.from_gguf_metadata(dict(metadata, **{"tokenizer.ggml.model": "llama"}))


def test_lone_surrogate_is_an_error(tok):
    with pytest.raises(UnicodeEncodeError):
        tok.encode("a\ud800b")


def _small(**kw):
    alphabet = [bytes_to_unicode()[b] for b in range(256)]  # ids 0..255 are the bytes
    return BPETokenizer(alphabet + ["ab", "<s>", "<think>", "\u2603"], ["a b"],
                        token_types=[1] * 257 + [3, 4, 1], bos_token_id=257, eos_token_id=257, **kw)


def test_user_defined_tokens_split_but_are_not_special():
    tok = _small()
    assert tok.encode("ab<think>b") == [256, 258, 98]
    assert tok.decode([256, 258, 257], skip_special_tokens=True) == "ab<think>"
    assert tok.all_special_ids == [257]


def test_token_outside_the_alphabet_is_respelled_like_transformers():
    tok = _small(add_eos_token=True)
    assert tok.convert_ids_to_tokens(259) == "".join(bytes_to_unicode()[b] for b in "\u2603".encode())
    assert tok.decode([259]) == "\u2603"
    assert tok.encode("\u2603") == list("\u2603".encode()) + [257]  # no merge builds it


def test_docstring_examples():
    import doctest

    from pyllm.tokenizers import bpe

    for module in (bpe, bpe_ref):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
