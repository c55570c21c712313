"""BertTokenizerFast against transformers' BertTokenizerFast (Rust tokenizers) run now: every text of
the 38,158-text sentiment corpus (alone, with offsets, and as truncated pairs), random Unicode text from
hypothesis, and directories written by save_pretrained. The recorded comparisons are in
test_tokenizers_wordpiece.py; this one also catches a drift of the installed transformers."""

from __future__ import annotations

import os

import pytest
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wordpiece_cases import model_dir, plain, variant_dir

from pyllm import BertTokenizerFast
from pyllm.data import read_sentiment_corpus

EXAMPLES = int(os.environ.get("PYLLM_FUZZ_EXAMPLES", "100"))
NORMS = {"uncased": None, "cased": {"lowercase": False, "strip_accents": None, "handle_chinese_chars": True},
         "lower_keep_accents": {"lowercase": True, "strip_accents": False, "handle_chinese_chars": True}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return BertTokenizerFast.from_pretrained(model_dir()), transformers.AutoTokenizer.from_pretrained(str(model_dir()))


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    out = {}
    for name, norm in NORMS.items():
        d = variant_dir(tmp / name, norm)
        out[name] = (BertTokenizerFast.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d)))
    return out


@pytest.fixture(scope="module")
def corpus():
    return [r.text for r in read_sentiment_corpus()]


def test_corpus_has_every_row(corpus):
    assert len(corpus) == 38158


def test_every_corpus_text_matches(pair, corpus):
    ours, ref = pair
    want = ref(corpus)
    got = ours(corpus, num_threads=2)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        bad = [i for i, (a, b) in enumerate(zip(got[key], want[key])) if a != b]
        assert not bad, (key, len(bad), corpus[bad[0]])


def test_every_corpus_text_offsets_and_decode(pair, corpus):
    ours, ref = pair
    want = ref(corpus, return_offsets_mapping=True)
    got = ours(corpus, return_offsets_mapping=True)
    bad = [i for i, (a, b) in enumerate(zip(got["offset_mapping"], want["offset_mapping"])) if list(a) != list(b)]
    assert not bad, (len(bad), corpus[bad[0]])
    sample = want["input_ids"][::37]
    assert ours.batch_decode(sample, skip_special_tokens=True) == ref.batch_decode(sample, skip_special_tokens=True)


@pytest.mark.parametrize("kw", [{"truncation": True, "max_length": 32, "padding": True},
                                {"truncation": "only_second", "max_length": 64, "padding": "max_length"}])
def test_corpus_pairs_truncated(pair, corpus, kw):
    ours, ref = pair
    a, b = corpus[0:4000:2], corpus[1:4000:2]
    try:
        want = plain(ref(a, b, **kw))
    except Exception as e:  # tokenizers refuses the batch when one pair cannot be cut that way
        with pytest.raises(ValueError, match="truncation"):
            ours(a, b, **kw)
        assert "Truncation error" in str(e)
        return
    assert plain(ours(a, b, **kw)) == want


# texts hypothesis makes up: any code point but lone surrogates, with BERT-relevant pieces mixed in
PIECES = ["[MASK]", "[CLS]", " ", "\t", "\n", "##", "'s", "中", "é", "e\u0301", "İ", "ß", "😀", "\x00", "\u200b",
          "\ufffd", "unaffable", "x" * 101, "."]
text_strategy = st.lists(st.one_of(st.sampled_from(PIECES), st.text(st.characters(blacklist_categories=("Cs",)),
                                                                     max_size=8)), max_size=12).map("".join)


@pytest.mark.parametrize("name", sorted(NORMS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=text_strategy, second=text_strategy)
def test_random_unicode_matches(variants, name, text, second):
    ours, ref = variants[name]
    assert plain(ours([text], return_offsets_mapping=True)) == plain(ref([text], return_offsets_mapping=True))
    kw = {"truncation": True, "max_length": 12}
    assert plain(ours([text], [second], **kw)) == plain(ref([text], [second], **kw))
    ids = ref(text)["input_ids"]
    assert ours.decode(ids) == ref.decode(ids)


def test_saved_directory_loads_in_transformers(pair, tmp_path, corpus):
    ours, _ = pair
    ours.save_pretrained(tmp_path)
    back = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts = corpus[:2000]
    assert back(texts)["input_ids"] == ours(texts)["input_ids"]
    assert back.model_max_length == ours.model_max_length


def test_pad_matches_transformers(pair, corpus):
    ours, ref = pair
    feats = [dict(ref(t), label=i % 2) for i, t in enumerate(corpus[:16])]
    want, got = ref.pad(feats, return_tensors="np"), ours.pad(feats, return_tensors="np")
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].tolist() == want[key].tolist(), key


@pytest.mark.parametrize("kw", [{"padding": True, "max_length": 4}, {"max_length": 4}, {"return_length": True},
                                {"padding": "max_length", "max_length": 12, "return_length": True},
                                {"padding": "max_length", "max_length": 4}, {"padding": True, "pad_to_multiple_of": 8},
                                {"return_special_tokens_mask": True, "truncation": True, "max_length": 6}])
def test_argument_combinations(pair, kw):
    ours, ref = pair
    texts = ["a b c d e f g", "x", "naïve [MASK] 中文"]
    assert dict(ours(texts, **kw)) == dict(ref(texts, **kw))
    assert dict(ours(texts[2], **kw)) == dict(ref(texts[2], **kw))
