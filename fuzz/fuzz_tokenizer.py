"""Coverage-guided differential fuzzing of the byte-level BPE tokenizer (the
Cython core, pyllm/tokenizers/_bpe.pyx) against its pure-Python reference,
with atheris. Not a unit test: CONTRIBUTING.md says how to run it.

The vocabulary is the default model's (fetched on first use). For every text:
the fast and the reference encoder give the same ids, the ids are in range,
and decoding gives the text back whenever the vocabulary has all its bytes.
"""

import sys
from functools import lru_cache
from typing import FrozenSet, Tuple

from pyllm import AutoTokenizer
from pyllm.tokenizers import BPETokenizer, bpe_ref, bytes_to_unicode


@lru_cache(maxsize=1)
def _tokenizers() -> Tuple[BPETokenizer, bpe_ref.ReferenceBPE, FrozenSet[int]]:
    tok = AutoTokenizer.from_pretrained("SmolLM2-135M-Instruct")
    ref = bpe_ref.ReferenceBPE(tok.get_vocab(), tok._merges, specials=list(tok._added))
    sym = bytes_to_unicode()
    known = frozenset(b for b in range(256) if sym[b] in tok.get_vocab())  # the others are dropped
    return tok, ref, known


def check_text(text: str) -> None:
    tok, ref, known = _tokenizers()
    ids = tok.encode(text)
    assert all(0 <= i < len(tok) for i in ids), ids
    expected = ref.encode(text)
    assert ids == expected, (text, ids, expected)
    back = tok.decode(ids)
    if known.issuperset(text.encode("utf-8")):
        assert back == text, (text, back)


def check_tokenizer(data: bytes) -> None:
    """One input: its bytes read as UTF-8 (invalid sequences become U+FFFD), so
    seeds and findings are plain text files."""
    check_text(data.decode("utf-8", errors="replace"))


def main() -> None:
    import atheris

    _tokenizers()
    atheris.instrument_all()  # the Python layer; the native code is built instrumented (PYLLM_FUZZ)
    atheris.Setup(sys.argv, check_tokenizer)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
