"""The server's text side: deltas of a streamed choice add up to the decoded text cut before the first stop
string, whatever the stops and wherever tokens split characters; token bytes for logprobs."""

from __future__ import annotations

import pytest

from pyllm import AutoTokenizer

pytest.importorskip("fastapi")

from pyllm.serve.text import TextAssembler, TokenTexts  # noqa: E402

TEXTS = [
    "Hello world. This is a test.\n\nSecond paragraph!",
    "naïve café — 日本語のテキスト 🙂 emoji and ümlauts",
    "a.b.c.d",
    "stop STOP stop",
]
STOPS = [[], ["."], ["\n\n"], ["test", "world"], ["日本"], ["🙂"], ["STOP", "stop"], ["d"], ["zzz"]]


@pytest.fixture(scope="module")
def tok(smollm_path):
    return AutoTokenizer.from_pretrained(smollm_path)


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("stops", STOPS)
def test_deltas_add_up_to_the_cut_text(tok, text, stops):
    ids = list(tok.encode(text, add_special_tokens=False))
    full = tok.decode(ids, skip_special_tokens=True)
    cuts = [full.find(s) for s in stops if s in full]
    want = full[: min(cuts)] if cuts else full
    a = TextAssembler(tok, stops)
    deltas = [a.push(t) for t in ids]
    deltas.append(a.finish())
    assert "".join(deltas) == want
    assert all("\ufffd" not in d for d in deltas) or "\ufffd" in full
    for s in stops:  # no delta hands out a stop string, even split over two deltas
        sent = ""
        for d in deltas:
            sent += d
            assert s not in sent


def test_token_texts_are_the_tokens_bytes(tok):
    texts = TokenTexts(tok)
    ids = list(tok.encode("日本🙂 hello", add_special_tokens=False))
    raw = b"".join(bytes(texts(i)[1]) for i in ids)
    assert raw.decode("utf-8") == "日本🙂 hello"
    assert texts(ids[-1])[0] == tok.decode([ids[-1]])
