# A short, readable BERT tokenizer (normalizer, pre-tokenizer, WordPiece) over the same recorded tables,
# the oracle the Cython core (_wordpiece.pyx) is tested against. Not fast, no added tokens or offsets.
"""``wordpiece_ref(text, vocab, ...)``: the ids of ``text`` without special tokens,
written as the steps of HF's BERT pipeline read:

1. ``clean_text``: drop characters of class R, turn whitespace (W) into spaces;
2. ``handle_chinese_chars``: a space either side of each CJK ideograph (C);
3. ``strip_accents`` / ``lowercase``: each character replaced by its mapping;
4. split at spaces, punctuation (P) a word of its own;
5. WordPiece: the longest vocabulary piece from the left, ``##`` pieces after the
   first; ``[UNK]`` for a word longer than ``max_chars`` or one that cannot be cut.
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from typing import Dict, List, Tuple

from ._wordpiece_tables import RUNS


@lru_cache(maxsize=None)
def _runs() -> Tuple[List[int], List[str]]:
    starts, classes = [], []
    for item in RUNS.split():
        starts.append(int(item[:-1], 16))
        classes.append(item[-1])
    return starts, classes


def char_class(c: str) -> str:
    """"R", "W", "C", "P" or "O" (see _wordpiece_tables.py)."""
    starts, classes = _runs()
    return classes[bisect.bisect_right(starts, ord(c)) - 1]


def normalize(text: str, mapping: Dict[int, Tuple[int, ...]], clean_text: bool = True,
              handle_chinese_chars: bool = True) -> str:
    out = []
    for c in text:
        k = char_class(c)
        if clean_text and k == "R":
            continue
        if k == "W":
            out.append(" ")
            continue
        mapped = "".join(map(chr, mapping.get(ord(c), (ord(c),))))
        out.append(f" {mapped} " if handle_chinese_chars and k == "C" else mapped)
    return "".join(out)


def pre_tokenize(text: str) -> List[str]:
    words, word = [], ""
    for c in text:
        k = char_class(c)
        if k == "W" or k == "P":
            if word:
                words.append(word)
            word = ""
            if k == "P":
                words.append(c)
        else:
            word += c
    return words + [word] if word else words


def wordpiece(word: str, vocab: Dict[str, int], unk_id: int, max_chars: int = 100, prefix: str = "##") -> List[int]:
    if len(word) > max_chars:
        return [unk_id]
    ids, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                ids.append(vocab[piece])
                start = end
                break
        else:
            return [unk_id]
    return ids


def wordpiece_ref(text: str, vocab: Dict[str, int], mapping: Dict[int, Tuple[int, ...]], unk_id: int,
                  max_chars: int = 100, clean_text: bool = True, handle_chinese_chars: bool = True) -> List[int]:
    """Ids of text (no special tokens, no added tokens) by the five steps above."""
    words = pre_tokenize(normalize(text, mapping, clean_text, handle_chinese_chars))
    return [i for w in words for i in wordpiece(w, vocab, unk_id, max_chars)]
