# A character-level tokenizer: one id per distinct character of a training text, saved as JSON.
# Not a subword tokenizer: text with a character it never saw cannot be encoded.
"""``CharTokenizer``: the vocabulary is the sorted set of characters of a text,
so ids are small and every character of that text round-trips. It has the
methods generation, streamers and pipelines call on a tokenizer
(``encode``, ``decode``, ``__call__``, ``batch_decode``, ``vocab_size``, the
special-token attributes, which are all None).

>>> tok = CharTokenizer.from_text("hello world")
>>> tok.vocab_size, tok.encode("hold")
(8, [3, 5, 4, 1])
>>> tok.decode([3, 5, 4, 1])
'hold'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from .._inputs import token_ids
from .base import TokenizerMixin, _is_scalar_id

CHAR_TOKENIZER_FILE = "char_tokenizer.json"
FORMAT = "pyllm-char"


class CharTokenizer(TokenizerMixin):
    """One token per character of ``chars`` (ids in the given order). There is no padding
    token: set ``pad_token_id`` to pad a batch."""

    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    unk_token_id: Optional[int] = None
    chat_template: Optional[str] = None

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("a character tokenizer needs at least one character")
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("the vocabulary lists a character twice")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}
        # sorted code points and their ids, for the vectorized encoder
        cps = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(cps)
        self._sorted_cps = cps[order]
        self._sorted_ids = order.astype(np.int64)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The vocabulary of ``text``: its distinct characters in code point order."""
        if not text:
            raise ValueError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)))

    # ---- sizes and special tokens (none)
    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def get_vocab(self) -> Dict[str, int]:
        return dict(self._ids)

    @property
    def all_special_ids(self) -> List[int]:
        return []

    @property
    def all_special_tokens(self) -> List[str]:
        return []

    # ---- encoding and decoding
    def encode_array(self, text: str) -> np.ndarray:
        """Ids of ``text`` as an int64 array (the fast path for whole files)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (N,)
        pos = np.searchsorted(self._sorted_cps, cps)
        pos = np.minimum(pos, len(self._sorted_cps) - 1)
        missing = self._sorted_cps[pos] != cps
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"character {text[i]!r} at index {i} is not in this tokenizer's vocabulary of "
                f"{self.vocab_size} characters")
        return self._sorted_ids[pos]

    def _encode_plain(self, text: str) -> List[int]:
        """Ids of ``text``; a character outside the vocabulary raises ValueError."""
        return [int(i) for i in self.encode_array(text)]

    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        return "".join(self.chars[i] for i in ids)

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]]) -> Union[str, List[str]]:
        if _is_scalar_id(ids):
            return self.chars[token_ids(ids, "ids", self.vocab_size)[0]]
        return [self.chars[i] for i in token_ids(ids, "ids", self.vocab_size)]

    # ---- files
    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": 1, "chars": "".join(self.chars)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> "CharTokenizer":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("chars"), str):
            raise ValueError(f"{source} is not a pyllm character tokenizer (expected format {FORMAT!r})")
        return cls(list(obj["chars"]))

    def save_pretrained(self, directory: Union[str, "os.PathLike[str]"]) -> Path:
        """Write ``char_tokenizer.json`` into ``directory`` (atomically) and return its path."""
        from .._fileio import write_text_atomic

        path = Path(directory) / CHAR_TOKENIZER_FILE
        write_text_atomic(path, self.to_json())
        return path

    @classmethod
    def from_pretrained(cls, path: Union[str, "os.PathLike[str]"]) -> "CharTokenizer":
        """Load from a directory holding ``char_tokenizer.json`` or from that file."""
        p = Path(path)
        if p.is_dir():
            p = p / CHAR_TOKENIZER_FILE
        if not p.is_file():
            raise FileNotFoundError(f"no character tokenizer at {p}")
        return cls.from_json(p.read_text(encoding="utf-8"), str(p))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(tuple(self.chars))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
