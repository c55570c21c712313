"""pyllm.data.read_sentiment_corpus: the documented decoding (UTF-8 per record, Latin-1 where a record
is not UTF-8), the CSV quoting, bad files; and the real corpus read whole."""

from __future__ import annotations

import pytest

from pyllm.data import read_sentiment_corpus
from pyllm.data.sentiment import LABELS, decode_record


def test_decoding_per_record(tmp_path):
    raw = (b"sentiment,confidence,text\r\n"
           b"positive,0.9,caf\xc3\xa9 ok\r\n"               # valid UTF-8
           b"negative,0.5,don\xd5\xa2_\x8at\r\n"             # not UTF-8: Latin-1, byte for byte
           b'neutral,,"quoted, with comma\rand a lone CR"\r\n')
    p = tmp_path / "c.csv"
    p.write_bytes(raw)
    rows = read_sentiment_corpus(p)
    assert [r.sentiment for r in rows] == ["positive", "negative", "neutral"]
    assert rows[0].text == "caf\u00e9 ok" and rows[0].confidence == 0.9
    assert rows[1].text == "don\u00d5\u00a2_\x8at" and rows[1].text.encode("latin-1") == b"don\xd5\xa2_\x8at"
    assert rows[2].text == "quoted, with comma\rand a lone CR" and rows[2].confidence is None
    assert decode_record(b"\xff") == "\u00ff"


@pytest.mark.parametrize("raw, match", [
    (b"label,text\r\nx,y\r\n", "header"),
    (b"sentiment,confidence,text\r\npositive,0.9\r\n", "line 2: expected 3 fields"),
    (b"sentiment,confidence,text\r\nhappy,0.9,x\r\n", "unknown sentiment 'happy'"),
])
def test_bad_files(tmp_path, raw, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_sentiment_corpus(p)


def test_the_real_corpus():
    rows = read_sentiment_corpus()
    assert len(rows) == 38158
    assert {r.sentiment for r in rows} == set(LABELS)
    # records that are not UTF-8 were read as Latin-1: their C1 controls are still there
    assert sum(any(0x80 <= ord(c) < 0xA0 for c in r.text) for r in rows) > 1000
