# Training a byte-level BPE vocabulary on a text: GPT-2's pre-tokenizer, then greedy pair merges.
# Not an encoder: the result is a pyllm BPETokenizer, which does the encoding.
"""``train_bpe(text, vocab_size)``: learn merges the way GPT-2's vocabulary was
made, so that :class:`pyllm.tokenizers.BPETokenizer` (and Hugging Face
``tokenizers``, through the saved ``tokenizer.json``) encodes with them.

1. Cut the text into pieces with GPT-2's regex (the fast scanner
   ``BPETokenizer`` uses) and count each distinct piece.
2. Spell each piece as byte-level symbols: ids 0..255 are the 256 bytes, in
   byte order, so any text can be encoded.
3. Repeatedly merge the most frequent adjacent pair of symbols (ties: the
   pair whose two symbols sort first), counting a piece as often as it
   occurs, until the vocabulary has ``vocab_size`` entries or no pair occurs
   ``min_frequency`` times. A merge whose result is already a token adds a
   rule but no token.
4. Special tokens (default ``<|endoftext|>``, also the eos token) come last.

Pair counts are updated incrementally (only the pieces holding the merged
pair are rescanned) and the best pair comes from a heap with stale entries
skipped, so a few thousand merges over a megabyte of text take seconds.

>>> tok = train_bpe("low lower lowest " * 20, vocab_size=262)
>>> tok.convert_ids_to_tokens(tok.encode("lowest"))
['low', 'est']
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Dict, List, Sequence, Set, Tuple

from ..tokenizers import _bpe
from ..tokenizers.bpe import CONTROL, BPETokenizer
from ..tokenizers.bytelevel import bytes_to_unicode, encode_bytelevel

__all__ = ["train_bpe"]

Pair = Tuple[str, str]


def _merge_word(word: List[str], a: str, b: str, ab: str) -> List[str]:
    """``word`` with every non-overlapping (a, b), left to right, replaced by ab."""
    out: List[str] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(ab)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int, special_tokens: Sequence[str] = ("<|endoftext|>",),
              min_frequency: int = 2) -> BPETokenizer:
    """A byte-level BPE tokenizer with at most ``vocab_size`` tokens learned from
    ``text`` (deterministic: the same text and arguments give the same merges).
    The first special token, if any, is the tokenizer's eos token."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError("cannot train a BPE vocabulary on an empty text")
    specials = list(special_tokens)
    if len(set(specials)) != len(specials) or any(not s for s in specials):
        raise ValueError(f"special_tokens must be distinct non-empty strings, got {specials!r}")
    floor = 256 + len(specials)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < floor:
        raise ValueError(f"vocab_size must be an integer >= {floor} (256 bytes + {len(specials)} special tokens), "
                         f"got {vocab_size!r}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")

    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    tokens: List[str] = list(alphabet)
    known: Set[str] = set(tokens)
    merges: List[str] = []

    counts = Counter(_bpe.pretokenize(text))  # piece -> occurrences
    words: List[List[str]] = [list(encode_bytelevel(p.encode("utf-8"))) for p in counts]  # one symbol per byte
    freq: List[int] = list(counts.values())

    pair_count: Dict[Pair, int] = {}
    where: Dict[Pair, Set[int]] = {}  # pair -> pieces that held it when counted (may be stale)
    for w, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_count[pair] = pair_count.get(pair, 0) + freq[w]
            where.setdefault(pair, set()).add(w)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    target = vocab_size - len(specials)
    while len(tokens) < target and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -neg:
            continue  # stale: the count changed since this entry was pushed
        if -neg < min_frequency:
            break
        ab = a + b
        merges.append(f"{a} {b}")
        if ab not in known:
            known.add(ab)
            tokens.append(ab)
        changed: Dict[Pair, int] = {}
        for w in sorted(where.pop((a, b), ())):
            old = words[w]
            new = _merge_word(old, a, b, ab)
            if len(new) == len(old):
                continue  # the pair left this piece in an earlier merge
            f = freq[w]
            for pair in zip(old, old[1:]):
                changed[pair] = changed.get(pair, 0) - f
            for pair in zip(new, new[1:]):
                changed[pair] = changed.get(pair, 0) + f
                where.setdefault(pair, set()).add(w)
            words[w] = new
        for pair, delta in changed.items():
            if delta:
                c = pair_count.get(pair, 0) + delta
                pair_count[pair] = c
                if c > 0:
                    heapq.heappush(heap, (-c, pair[0], pair[1]))
        pair_count.pop((a, b), None)

    n = len(tokens)
    tokens += specials
    types = [1] * n + [CONTROL] * len(specials)
    eos = n if specials else None
    return BPETokenizer(tokens, merges, token_types=types, eos_token_id=eos, pre="gpt2")
