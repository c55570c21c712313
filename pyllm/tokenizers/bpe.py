# Byte-level BPE tokenizer with a transformers-style API: special tokens, BOS, batching and
# chat templates here; the per-character loops are in _bpe.pyx. Not a GGUF reader or a trainer.
"""``BPETokenizer``: the tokenizer of GPT-2-style byte-level BPE models such as
SmolLM2, built from the vocabulary and merges a GGUF file stores.

It reproduces what Hugging Face ``transformers`` (5.x) builds for such a file
(``AutoTokenizer.from_pretrained(dir, gguf_file=...)``, see
``transformers/integrations/gguf/gguf_tokenizer_mapping.py``):

- ``tokenizer.ggml.model = "gpt2"`` -> a ``GPT2Tokenizer``: BPE model (no dropout,
  no unk token, no byte fallback, ``ignore_merges=False``), **no normalizer**,
  pre-tokenizer ``ByteLevel(add_prefix_space=False, use_regex=True)``, i.e. GPT-2's
  split regex (:data:`pyllm.tokenizers.bpe_ref.GPT2_SPLIT`, contractions lower case
  only, unbounded digit runs) then the byte-level alphabet; decoder ``ByteLevel``;
  post-processor adds nothing (``add_bos_token`` is False in SmolLM2's file).
- A byte whose symbol is not in the vocabulary is dropped (HF's BPE has no unk token
  and no byte fallback here), so encoding is lossless only for text free of those
  bytes: for SmolLM2, the controls U+0004 U+0006 U+0013 U+0014 U+0016 U+001D and code
  points U+40000..U+BFFFF (UTF-8 lead bytes 0xF1, 0xF2).
- ``tokenizer.ggml.pre = "smollm"`` is not in transformers' table of per-model
  split regexes, so that GPT-2 pre-tokenizer stays (llama.cpp's own "smollm"
  handling is not what transformers does, and not what this class does).
  Names in that table swap the regex: ``"llama-bpe"`` (Llama 3) and its kin
  get Llama 3's (:data:`~pyllm.tokenizers.bpe_ref.LLAMA3_SPLIT`: contractions in
  any case, one non-letter joined to the letters after it, digits in runs of up
  to three), ``"qwen2"`` (Qwen2, Qwen2.5, Qwen3) and its kin Qwen2's (digits one
  by one); :data:`PRE_TOKENIZERS` lists every accepted name, any other raises.
- From a Hugging Face directory (``pyllm.tokenizers.files``) the same class also
  takes ``ignore_merges`` (Llama 3's tokenizer.json: a piece that is a token is
  that token) and a Unicode normalizer (Qwen2's tokenizer class applies NFC).
- Tokens of type 3 (control) become special added tokens (unless spelled outside
  the byte alphabet: transformers takes those for mislabelled text), type 4
  (user-defined) plain added tokens; both are matched whole in the text
  (leftmost, longest) before pre-tokenizing, as are the bos/eos/unk/pad tokens.
  ``decode(..., skip_special_tokens=True)`` drops the special ones.
- HF's regex engine (Oniguruma) classifies characters by Unicode 16.0, newer than
  Python 3.11's ``unicodedata``; the scanner uses those recorded classes
  (``_unicode_classes.py``), so results do not depend on the Python version.

>>> alphabet = [bytes_to_unicode()[b] for b in range(256)]   # ids 0..255 are the bytes
>>> tok = BPETokenizer(alphabet + ["ab", "<s>"], ["a b"], token_types=[1] * 257 + [3],
...                    bos_token_id=257, eos_token_id=257)
>>> tok.encode("abba<s>")
[256, 98, 97, 257]
>>> tok.decode([256, 98, 97, 257]), tok.decode([256, 98, 97, 257], skip_special_tokens=True)
('abba<s>', 'abba')
"""

from __future__ import annotations

import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

from . import _bpe
from .base import AddedToken, VocabTokenizer
from .bytelevel import bytes_to_unicode

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values that become added tokens

# tokenizer.ggml.pre -> the split regex transformers uses for it (its GGUF_PRE_TOKENIZER_SPLITS;
# a name it does not list keeps GPT-2's ByteLevel regex). Only names checked against
# transformers here are accepted; the split kinds are the scanners of _bpe.pyx.
# "gpt2-digits": HF's Digits(individual_digits) then GPT-2's ByteLevel regex (SmolLM's tokenizer.json)
SPLIT_KINDS = {"gpt2": 0, "llama3": 1, "qwen2": 2, "gpt2-digits": 3}
PRE_TOKENIZERS = {
    **{name: "gpt2" for name in ("gpt2", "gpt-2", "default", "smollm", "starcoder")},
    **{name: "llama3" for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx",
                                   "smaug-bpe", "lfm2", "midm-2.0", "jina-v5-nano")},
    **{name: "qwen2" for name in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez")},
}
GPT2_REGEX_PRE = tuple(name for name, kind in PRE_TOKENIZERS.items() if kind == "gpt2")
NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD")  # unicodedata forms; Qwen2's tokenizer class applies NFC


class BPETokenizer(VocabTokenizer):
    """Byte-level BPE tokenizer with the ``transformers`` tokenizer API (calls, padding,
    truncation and tensors from :class:`~pyllm.tokenizers.base.TokenizerMixin`).

    ``tokens`` are the vocabulary in id order (byte-level spelling, ``"Ġhi"`` for
    ``" hi"``), ``merges`` the ``"left right"`` pairs in rank order, ``token_types``
    the GGUF token types (1 normal, 3 control, 4 user-defined).

    >>> tok = BPETokenizer.from_gguf_metadata(md)          # doctest: +SKIP
    >>> tok("Hello world")["input_ids"]                     # doctest: +SKIP
    [19556, 905]
    """

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[str],
        token_types: Optional[Sequence[int]] = None,
        bos_token_id: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        pad_token_id: Optional[int] = None,
        unk_token_id: Optional[int] = None,
        pre: str = "smollm",
        add_bos_token: bool = False,
        chat_template: Optional[str] = None,
        add_eos_token: bool = False,
        ignore_merges: bool = False,
        normalizer: Optional[str] = None,
        added_tokens: Optional[Sequence[AddedToken]] = None,
    ):
        if pre not in PRE_TOKENIZERS and pre not in SPLIT_KINDS:
            raise ValueError(f"unsupported pre-tokenizer {pre!r}; supported: {', '.join(sorted(PRE_TOKENIZERS))}")
        if normalizer is not None and normalizer not in NORMALIZERS:
            raise ValueError(f"unsupported normalizer {normalizer!r}; supported: {', '.join(NORMALIZERS)} or None")
        n = len(tokens)
        if token_types is not None and len(token_types) != n:
            raise ValueError(f"token_types has {len(token_types)} entries for {n} tokens")
        for name, tid in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id),
                          ("pad_token_id", pad_token_id), ("unk_token_id", unk_token_id)):
            if tid is not None and not 0 <= tid < n:
                raise ValueError(f"{name}={tid} is out of range for a vocabulary of {n} tokens")

        # A token spelled outside the byte alphabet is taken as text, as transformers does.
        self._tokens = list(tokens)
        for i in _bpe.foreign_tokens(self._tokens):
            self._tokens[i] = _respell(self._tokens[i])
        self._vocab = {t: i for i, t in enumerate(self._tokens)}  # a later duplicate wins, as in HF
        self._merges = list(merges)

        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        self.pad_token_id, self.unk_token_id = pad_token_id, unk_token_id
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.chat_template = chat_template
        self.pre = pre
        self.split = PRE_TOKENIZERS.get(pre, pre)
        self.ignore_merges = ignore_merges
        self.normalizer = normalizer

        # Added tokens: control ones (special), user-defined ones (not special) and the
        # named special tokens are matched whole in the text before pre-tokenizing.
        if added_tokens is None:
            types = list(token_types) if token_types is not None else [1] * n
            named = {i for i in (bos_token_id, eos_token_id, unk_token_id, pad_token_id) if i is not None}
            special = {i for i, t in enumerate(types) if t == CONTROL} | named
            added_tokens = [AddedToken(i, self._tokens[i], special=i in special)
                            for i in sorted(special | {i for i, t in enumerate(types) if t == USER_DEFINED})]
        for t in added_tokens:
            if not 0 <= t.id < n:
                raise ValueError(f"added token {t.content!r} has id {t.id}, out of range for {n} tokens")
        self._set_added_tokens(added_tokens, self._normalize_text)
        # A byte with no token of its own is dropped from the text, as HF's BPE model (no unk
        # token, no byte fallback) does: SmolLM2 lacks 0x04 0x06 0x13 0x14 0x16 0x1d and the
        # UTF-8 lead bytes 0xf1 0xf2 (planes 4-11), besides bytes UTF-8 never uses.
        self._core = _bpe.BPECore(self._tokens, self._merges, self._vocab, self._special_ids,
                                  pre=SPLIT_KINDS[self.split], ignore_merges=ignore_merges)

    @classmethod
    def from_gguf_metadata(cls, md: Dict[str, Any]) -> "BPETokenizer":
        """Build from a GGUF metadata dict (keys like ``tokenizer.ggml.tokens``).

        >>> tok = BPETokenizer.from_gguf_metadata(reader_metadata)   # doctest: +SKIP
        """
        model = md.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"tokenizer.ggml.model is {model!r}; BPETokenizer reads byte-level BPE ('gpt2') only")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if key not in md:
                raise ValueError(f"GGUF metadata has no {key}; cannot build a BPE tokenizer")
        def g(key: str, default: Any = None) -> Any:
            return md.get(f"tokenizer.ggml.{key}", default)

        tokens = list(g("tokens"))
        types = [int(t) for t in g("token_type")] if g("token_type") is not None else None
        if types is not None:
            # as transformers: a control token spelled outside the byte alphabet is a mislabelled
            # piece of text, not a special token
            for i in _bpe.foreign_tokens(tokens):
                if types[i] == CONTROL:
                    types[i] = 1
        return cls(
            tokens=tokens, merges=list(g("merges")), token_types=types,
            bos_token_id=g("bos_token_id"), eos_token_id=g("eos_token_id"),
            pad_token_id=g("padding_token_id"), unk_token_id=g("unknown_token_id"),
            pre=g("pre", "gpt2"), add_bos_token=bool(g("add_bos_token", False)),
            add_eos_token=bool(g("add_eos_token", False)), chat_template=md.get("tokenizer.chat_template"),
        )

    # ---- encoding
    def _normalize_text(self, text: str) -> str:
        return unicodedata.normalize(self.normalizer, text) if self.normalizer is not None else text  # type: ignore[arg-type]

    def _normalize(self, text: str, offset: int) -> str:
        return self._normalize_text(text)

    def _encode_segment(self, text: str, first: bool) -> List[int]:
        return self._core.encode(text)

    def _encode_many(self, texts: Sequence[str], add_special_tokens: bool, max_length: Optional[int],
                     num_threads: Optional[int] = None) -> List[List[int]]:
        # the core releases the GIL, so documents really run in parallel
        texts = list(texts)
        threads = min(num_threads or os.cpu_count() or 1, len(texts))
        if threads <= 1:
            return [self._encode_one(t, add_special_tokens, max_length) for t in texts]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda t: self._encode_one(t, add_special_tokens, max_length), texts))

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True,
                     num_threads: Optional[int] = None) -> List[List[int]]:
        """Ids of each text, encoded on ``num_threads`` threads (default: CPU count).

        >>> smollm2.encode_batch(["Hello", " world"])            # doctest: +SKIP
        [[19556], [905]]
        """
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        return self._encode_many(texts, add_special_tokens, None, num_threads)

    # ---- decoding
    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        # bytes that do not form valid UTF-8 become U+FFFD, as in HF
        return str(self._core.decode(ids, skip_special_tokens).decode("utf-8", errors="replace"))

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, pre={self.pre!r}, "
                f"bos={self.bos_token!r}, eos={self.eos_token!r}, added_tokens={len(self._added)})")


def _respell(token: str) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token.encode("utf-8"))
