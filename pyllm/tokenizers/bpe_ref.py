# A short, readable byte-level BPE: the oracle the Cython core (_bpe.pyx) is tested against.
# Not fast and not the public API: use pyllm.tokenizers.BPETokenizer.
"""Reference byte-level BPE, written to be read next to the Hugging Face
pipeline it reproduces (GPT-2's ``ByteLevel`` pre-tokenizer, then BPE with
merges applied lowest rank first).

1. Split the text with GPT-2's regex, :data:`GPT2_SPLIT`::

       's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

   ``\\p{L}``, ``\\p{N}`` and ``\\s`` are pinned to the classes HF's regex
   engine uses (see ``_unicode_classes.py``), so the stdlib ``re`` module
   runs the same pattern with the same Unicode tables as HF on any Python.
2. Map each piece's UTF-8 bytes to byte-level symbols (``bytelevel.py``),
   dropping a byte whose symbol is not in the vocabulary (HF has no unk here).
3. Repeatedly merge the adjacent pair with the lowest merge rank (leftmost
   on ties) until no pair has a rank; look the symbols up in the vocabulary.

>>> pretokenize_ref("Hello  world's 123!!\\n")
['Hello', ' ', ' world', "'s", ' 123', '!!', '\\n']
>>> bpe_ref(["h", "e", "l", "l", "o"], {("l", "l"): 0, ("h", "e"): 1, ("he", "ll"): 2})
['hell', 'o']
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

from ._unicode_classes import RUNS
from .bytelevel import encode_bytelevel_ref

# The pattern as HF tokenizers writes it (ByteLevel pre-tokenizer, use_regex=True).
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Llama 3's split (its tokenizer.json; llama.cpp's tokenizer.ggml.pre "llama-bpe"): contractions
# in any case, one non-letter joins the letters after it, numbers in runs of up to three.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2's (and Qwen2.5's, Qwen3's): Llama 3's with one digit per piece.
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
SPLITS = {"gpt2": GPT2_SPLIT, "llama3": LLAMA3_SPLIT, "qwen2": QWEN2_SPLIT}


@lru_cache(maxsize=None)
def class_ranges() -> Dict[str, List[Tuple[int, int]]]:
    """Class letter (L, N, W, O) -> inclusive code point ranges, from the recorded runs."""
    runs = [(int(item[:-1], 16), item[-1]) for item in RUNS.split()]
    ranges: Dict[str, List[Tuple[int, int]]] = {"L": [], "N": [], "W": [], "O": []}
    for i, (start, cls) in enumerate(runs):
        end = runs[i + 1][0] - 1 if i + 1 < len(runs) else 0x10FFFF
        ranges[cls].append((start, end))
    return ranges


def _char_class(cls: str) -> str:
    return "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in class_ranges()[cls])


@lru_cache(maxsize=None)
def split_regex(kind: str = "gpt2") -> "re.Pattern[str]":
    """The split regex of ``kind`` (a key of :data:`SPLITS`) with \\p{L}, \\p{N}, \\s, \\S
    replaced by the recorded classes."""
    letter, number, space = _char_class("L"), _char_class("N"), _char_class("W")
    pattern = (SPLITS[kind].replace(r"[^\s\p{L}\p{N}]", f"[^{space}{letter}{number}]")
               .replace(r"[^\r\n\p{L}\p{N}]", f"[^\\r\\n{letter}{number}]")
               .replace(r"\p{L}", f"[{letter}]").replace(r"\p{N}", f"[{number}]")
               .replace(r"\S", f"[^{space}]").replace(r"\s", f"[{space}]"))
    return re.compile(pattern)


def pretokenize_ref(text: str, kind: str = "gpt2") -> List[str]:
    """Split text into the pieces BPE runs on (every character lands in one piece).

    >>> pretokenize_ref("I'LL pay 12345!\\n\\n  x", "llama3")
    ['I', "'LL", ' pay', ' ', '123', '45', '!\\n\\n', ' ', ' x']
    """
    return split_regex(kind).findall(text)


def bpe_ref(symbols: Sequence[str], ranks: Dict[Tuple[str, ...], int]) -> List[str]:
    """Merge the adjacent pair of lowest rank (leftmost on ties) until none is left."""
    parts = list(symbols)
    while len(parts) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        _, i = min(ranked)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


class ReferenceBPE:
    """Whole-text reference: special tokens split out first (leftmost, longest),
    then pre-tokenize, byte-level map and merge each piece.

    >>> ref = ReferenceBPE({"a": 0, "b": 1, "ab": 2, "<s>": 3}, ["a b"], specials=["<s>"])
    >>> ref.encode("ab<s>ba")
    [2, 3, 1, 0]
    """

    def __init__(self, vocab: Dict[str, int], merges: Sequence[str], specials: Sequence[str] = (),
                 kind: str = "gpt2", ignore_merges: bool = False):
        self.vocab = vocab
        self.kind = kind
        self.ignore_merges = ignore_merges
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        # longest first, so the alternation prefers the longest special at a position
        ordered = sorted(specials, key=len, reverse=True)
        self.special_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def encode_ordinary(self, text: str) -> List[int]:
        ids: List[int] = []
        for piece in pretokenize_ref(text, self.kind):
            # a byte with no token is dropped, as HF's BPE model with no unk token does
            spelled = encode_bytelevel_ref(piece.encode("utf-8"))
            if self.ignore_merges and spelled in self.vocab:
                ids.append(self.vocab[spelled])
                continue
            symbols = [s for s in spelled if s in self.vocab]
            ids.extend(self.vocab[tok] for tok in bpe_ref(symbols, self.ranks))
        return ids

    def encode(self, text: str) -> List[int]:
        if self.special_re is None:
            return self.encode_ordinary(text)
        ids, pos = [], 0
        for m in self.special_re.finditer(text):
            ids += self.encode_ordinary(text[pos:m.start()]) + [self.vocab[m.group()]]
            pos = m.end()
        return ids + self.encode_ordinary(text[pos:])
