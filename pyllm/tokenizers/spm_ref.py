# A short, readable SentencePiece-style BPE: the oracle the Cython core (_spm.pyx) is tested against.
# Not fast and not the public API: use pyllm.tokenizers.SentencePieceBPETokenizer.
"""Reference BPE over characters with byte fallback, written to be read next
to Hugging Face's BPE model (``tokenizers/src/models/bpe``):

1. Each character is a symbol: itself when the vocabulary has it, else its
   UTF-8 bytes as ``<0xNN>`` tokens when they all exist (byte fallback), else
   the unknown token, runs of unknowns fused into one. (HF's one quirk is kept:
   an unknown waiting to be written goes after the bytes of a byte-fallback
   character that follows it.)
2. The adjacent pair with the lowest merge rank, leftmost on ties, is merged,
   until no pair has a rank.

The text given is already normalized (spaces as U+2581, the prefix added) and
is merged as one word; the fast core cuts it into words only where that cannot
change the result.

>>> vocab = {"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4, "ab": 5, "▁ab": 6}
>>> ref = ReferenceSPM(vocab, [("▁", "a"), ("a", "b"), ("▁a", "b")], unk="<unk>")
>>> ref.encode("▁ab▁ba"), ref.encode("▁ac")
([6, 1, 3, 2], [4, 0])
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .bpe_ref import bpe_ref


class ReferenceSPM:
    """``vocab`` spelling -> id, ``merges`` (left, right) in rank order (a later duplicate wins)."""

    def __init__(self, vocab: Dict[str, int], merges: Sequence[Tuple[str, str]], byte_fallback: bool = True,
                 unk: Optional[str] = None, fuse_unk: bool = True):
        self.vocab = vocab
        self.ranks: Dict[Tuple[str, ...], int] = {(a, b): r for r, (a, b) in enumerate(merges)}
        self.byte_fallback, self.unk, self.fuse_unk = byte_fallback, unk, fuse_unk

    def symbols(self, word: str) -> List[str]:
        out: List[str] = []
        pending_unk = False
        for ch in word:
            if ch in self.vocab:
                if pending_unk:
                    out.append(self.unk or "")
                    pending_unk = False
                out.append(ch)
                continue
            spelled = [f"<0x{b:02X}>" for b in ch.encode("utf-8")]
            if self.byte_fallback and all(s in self.vocab for s in spelled):
                out += spelled
            elif self.unk is not None:
                if pending_unk and not self.fuse_unk:
                    out.append(self.unk)
                pending_unk = True
        if pending_unk:
            out.append(self.unk or "")
        return out

    def encode(self, word: str) -> List[int]:
        # bpe_ref merges strings by rank; byte and unknown tokens never appear in a merge
        return [self.vocab[s] for s in bpe_ref(self.symbols(word), self.ranks)]
