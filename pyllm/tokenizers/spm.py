# SentencePiece-style BPE (Llama 2, Mistral, Gemma, Phi-3) with a transformers-style API: normalizing,
# the prefix space, added tokens and decoding here; the per-character loops are in _spm.pyx. Not Unigram.
"""``SentencePieceBPETokenizer``: BPE over characters with byte fallback, the
tokenizer of models whose GGUF file says ``tokenizer.ggml.model = "llama"`` and
of Hugging Face directories whose ``tokenizer.json`` holds such a model.

It reproduces what ``transformers`` (5.x) builds, which is a pipeline of
Hugging Face ``tokenizers`` parts:

1. Added tokens (control and user-defined tokens, bos/eos/unk/pad) are cut out
   of the raw text first (:class:`~pyllm.tokenizers.base.AddedToken`).
2. Each other segment is normalized: ``Prepend("▁")`` (Phi-3's GGUF; the original
   Llama 2 tokenizer.json) puts U+2581 before every non-empty segment,
   ``Replace(" ", "▁")`` writes spaces as U+2581 (Gemma, Phi-3), Unicode forms.
3. ``Metaspace`` (Llama 2, Mistral) writes spaces as U+2581 and puts one before
   a segment that does not start with it: only the segment that starts the text
   (``prefix="first"``, transformers' default) or every one (``"always"``, a
   ``legacy: true`` tokenizer_config.json such as Mistral 7B v0.1's); ``"never"``
   when ``add_prefix_space`` is off.
4. BPE: each character is a symbol if the vocabulary has it, else its UTF-8 bytes
   as ``<0xNN>`` tokens (byte fallback), else the unknown token; the adjacent pair
   of lowest merge rank is merged until none is left.
5. Decoding: U+2581 back to spaces, consecutive byte tokens back into UTF-8
   (U+FFFD for each byte that does not form a character), joined, and the one
   leading space the prefix added removed (``Strip``), as transformers does.

A GGUF file stores no merges for these models: transformers derives them from
the vocabulary (every split of a token into two tokens, ordered by the token's
score, then by the lengths of the parts; Gemma orders by position in the file
instead, and writes its whitespace-run tokens as U+2581 runs), and so does
:func:`merges_from_vocab`.

>>> tok = SentencePieceBPETokenizer(["<unk>", "▁", "a", "b", "▁a", "ab", "▁ab"],
...                                 [("▁", "a"), ("a", "b"), ("▁a", "b")], unk_token_id=0)
>>> tok.encode("ab ba"), tok.decode(tok.encode("ab ba"))
([6, 1, 3, 2], 'ab ba')
"""

from __future__ import annotations

import os
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _spm
from .base import AddedToken, VocabTokenizer

__all__ = ["SentencePieceBPETokenizer", "merges_from_vocab", "GGUF_TOKEN_TYPES"]

SPACE = "\u2581"  # SentencePiece's visible space
PREFIX_SCHEMES = ("first", "always", "never")
# tokenizer.ggml.token_type values (llama.cpp's SentencePiece piece types)
GGUF_TOKEN_TYPES = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5, "byte": 6}
_BYTE_TOKEN = re.compile(r"<0x(\+?[0-9A-Fa-f]{1,2})>")
_SPACE_WORDS = re.compile(r"[^ ]* |[^ ]+")  # Split(" ", merged_with_previous)

Step = Tuple[Any, ...]  # ("replace", old, new), ("prepend", s), ("nfc",), ("lowercase",) / decoder steps


class SentencePieceBPETokenizer(VocabTokenizer):
    """SentencePiece-style BPE with the ``transformers`` tokenizer API (calls, padding,
    truncation, tensors, chat templates; see :class:`~pyllm.tokenizers.base.TokenizerMixin`).

    ``tokens`` are the vocabulary in id order (``"▁the"`` for ``" the"``, ``"<0x0A>"``
    for byte 10), ``merges`` the (left, right) pairs in rank order. The pipeline
    (module docstring) is set by ``normalizers`` (steps ``("prepend", s)``,
    ``("replace", old, new)``, ``("nfc",)``, ``("nfkc",)``, ``("nfd",)``, ``("nfkd",)``,
    ``("lowercase",)``), ``metaspace`` / ``prefix`` / ``split_words`` (Metaspace's
    ``split``), ``space_split`` (``Split(" ", merged_with_previous)``), the model's
    ``byte_fallback`` / ``unk_token_id`` / ``fuse_unk`` / ``ignore_merges``, and
    ``decoders`` (steps ``("replace", old, new)``, ``("byte_fallback",)``,
    ``("fuse",)``, ``("strip", char, left, right)``, ``("metaspace", prefix)``).
    ``model_unk_token_id`` is the id BPE gives a character it cannot spell (None: the
    character is dropped, as transformers' LlamaTokenizer does); ``unk_token_id``
    only names the token.

    >>> tok = SentencePieceBPETokenizer.from_gguf_metadata(md)   # doctest: +SKIP
    >>> tok("Hello world")["input_ids"]                          # doctest: +SKIP
    [1, 15043, 3186]
    """

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[Tuple[str, str]],
        *,
        bos_token_id: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        pad_token_id: Optional[int] = None,
        unk_token_id: Optional[int] = None,
        model_unk_token_id: Optional[int] = None,
        add_bos_token: bool = False,
        add_eos_token: bool = False,
        added_tokens: Optional[Sequence[AddedToken]] = None,
        chat_template: Optional[str] = None,
        normalizers: Sequence[Step] = (),
        metaspace: bool = True,
        prefix: str = "first",
        split_words: bool = False,
        space_split: bool = False,
        byte_fallback: bool = True,
        fuse_unk: bool = True,
        ignore_merges: bool = False,
        decoders: Optional[Sequence[Step]] = None,
    ):
        n = len(tokens)
        for name, tid in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id),
                          ("pad_token_id", pad_token_id), ("unk_token_id", unk_token_id),
                          ("model_unk_token_id", model_unk_token_id)):
            if tid is not None and not 0 <= tid < n:
                raise ValueError(f"{name}={tid} is out of range for a vocabulary of {n} tokens")
        if prefix not in PREFIX_SCHEMES:
            raise ValueError(f"prefix={prefix!r}: use one of {', '.join(PREFIX_SCHEMES)}")
        if ignore_merges and split_words:
            raise ValueError("ignore_merges with Metaspace(split=True) is not supported")
        self._tokens = list(tokens)
        self._vocab = {t: i for i, t in enumerate(self._tokens)}  # a later duplicate wins, as in HF
        self._merges = [(str(a), str(b)) for a, b in merges]
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        self.pad_token_id, self.unk_token_id = pad_token_id, unk_token_id
        self.model_unk_token_id = model_unk_token_id
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.chat_template = chat_template
        self.normalizers = [tuple(s) for s in normalizers]
        for step in self.normalizers:
            _check_normalizer(step)
        self.metaspace, self.prefix = metaspace, prefix
        self.split_words, self.space_split, self.ignore_merges = split_words, space_split, ignore_merges
        self.byte_fallback, self.fuse_unk = byte_fallback, fuse_unk
        if decoders is None:
            decoders = [("replace", SPACE, " "), ("byte_fallback",), ("fuse",)]
            if metaspace and prefix != "never":
                decoders.append(("strip", " ", 1, 0))
        self.decoders = [tuple(s) for s in decoders]
        for step in self.decoders:
            _check_decoder(step)

        if added_tokens is None:
            named = {i for i in (bos_token_id, eos_token_id, unk_token_id, pad_token_id) if i is not None}
            added_tokens = [AddedToken(i, self._tokens[i]) for i in sorted(named)]
        for t in added_tokens:
            if not 0 <= t.id < n:
                raise ValueError(f"added token {t.content!r} has id {t.id}, out of range for {n} tokens")
        self._set_added_tokens(added_tokens, self._normalize_text)

        # the model: one-character tokens, byte tokens, the merge table by id
        chars = {ord(t): self._vocab[t] for t in self._vocab if len(t) == 1}
        byte_ids = [self._vocab.get(f"<0x{b:02X}>", -1) if byte_fallback else -1 for b in range(256)]
        triples = []
        for k, (a, b) in enumerate(self._merges):
            ia, ib, iab = self._vocab.get(a), self._vocab.get(b), self._vocab.get(a + b)
            if ia is None or ib is None or iab is None:
                missing = a if ia is None else b if ib is None else a + b
                raise ValueError(f"merge {k} ({a!r}, {b!r}): {missing!r} is not in the vocabulary")
            triples.append((ia, ib, iab))
        if split_words:
            mode = 2
        elif SPACE in self._vocab and not ignore_merges and not any(
                a[-1] != SPACE and b[0] == SPACE for a, b in self._merges):
            mode = 1  # no merge reaches across the start of a U+2581 run: words merge alone
        else:
            mode = 0
        self._core = _spm.SPMCore(n, chars, byte_ids, triples,
                                  unk_id=-1 if model_unk_token_id is None else model_unk_token_id,
                                  fuse_unk=fuse_unk, split_mode=mode)
        self._split_mode = mode

    @classmethod
    def from_gguf_metadata(cls, md: Dict[str, Any], architecture: Optional[str] = None) -> "SentencePieceBPETokenizer":
        """Build from a GGUF metadata dict with ``tokenizer.ggml.model = "llama"``, as transformers
        does (the architecture picks Llama's, Gemma's or Phi-3's layout). One difference:
        ``tokenizer.ggml.add_space_prefix = false`` turns the prefix space off here (as the
        model's own tokenizer_config.json did), where transformers ignores the flag.

        >>> tok = SentencePieceBPETokenizer.from_gguf_metadata(GGUFFile(path).metadata)   # doctest: +SKIP
        """
        model = md.get("tokenizer.ggml.model")
        if model != "llama":
            raise ValueError(f"tokenizer.ggml.model is {model!r}; SentencePieceBPETokenizer reads 'llama' only")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            if key not in md:
                raise ValueError(f"GGUF metadata has no {key}; cannot build a SentencePiece tokenizer")

        def g(key: str, default: Any = None) -> Any:
            return md.get(f"tokenizer.ggml.{key}", default)

        arch = architecture or str(md.get("general.architecture", "llama"))
        tokens = original = [str(t) for t in g("tokens")]
        types = [int(t) for t in g("token_type")]
        if len(types) != len(tokens):
            raise ValueError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
        gemma = arch in ("gemma", "gemma2", "gemma3", "gemma3n")
        if gemma:
            # its whitespace-run tokens are stored as spaces; GemmaTokenizer spells them with U+2581
            tokens = [SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
        if g("merges") is not None:
            merges = [_split_merge(m, k) for k, m in enumerate(g("merges"))]
        elif gemma:
            merges = merges_from_vocab(tokens, [-float(i) for i in range(len(tokens))])  # file order
        else:
            if g("scores") is None:
                raise ValueError("GGUF metadata has neither tokenizer.ggml.merges nor tokenizer.ggml.scores")
            merges = merges_from_vocab(tokens, [float(s) for s in g("scores")])
        vocab = {t: i for i, t in enumerate(tokens)}

        def named(key: str) -> Optional[int]:
            i = g(key)
            return None if i is None else vocab.get(tokens[int(i)])  # by name, as transformers looks it up

        bos, eos, unk, pad = (named(k) for k in ("bos_token_id", "eos_token_id", "unknown_token_id",
                                                 "padding_token_id"))
        special = {i for i in (bos, eos, unk, pad) if i is not None}
        if gemma and "<mask>" in vocab:
            special.add(vocab["<mask>"])  # GemmaTokenizer's mask_token
        # as transformers: control tokens are special added tokens, user-defined ones plain added
        # tokens when the vocabulary spells them as the file does (not Gemma's respelled spaces)
        specials = [AddedToken(vocab[t], t) for t, typ in zip(original, types)
                    if typ == GGUF_TOKEN_TYPES["control"] and t in vocab]
        specials += [AddedToken(i, tokens[i]) for i in sorted(special)]
        user = [AddedToken(vocab[t], t, special=False) for t, typ in zip(original, types)
                if typ == GGUF_TOKEN_TYPES["user_defined"] and t in vocab]
        common: Dict[str, Any] = dict(
            bos_token_id=bos, eos_token_id=eos, unk_token_id=unk, pad_token_id=pad,
            add_bos_token=bool(g("add_bos_token", True)) and bos is not None,
            add_eos_token=bool(g("add_eos_token", False)) and eos is not None,
            added_tokens=_dedupe(specials + user), chat_template=md.get("tokenizer.chat_template"))
        if gemma:
            return cls(tokens, merges, normalizers=[("replace", " ", SPACE)], metaspace=False, space_split=True,
                       model_unk_token_id=unk, **common)
        if arch == "phi3":
            return cls(tokens, merges, normalizers=[("prepend", SPACE), ("replace", " ", SPACE)], metaspace=False,
                       decoders=[("replace", SPACE, " "), ("byte_fallback",), ("fuse",), ("strip", " ", 1, 0)],
                       **common)
        prefix = "first" if g("add_space_prefix", True) else "never"
        return cls(tokens, merges, prefix=prefix, **common)

    # ---- encoding
    def _normalize_text(self, text: str) -> str:
        for step in self.normalizers:
            kind = step[0]
            if kind == "prepend":
                text = step[1] + text if text else text
            elif kind == "replace":
                text = text.replace(step[1], step[2])
            elif kind == "lowercase":
                text = text.lower()
            else:
                text = unicodedata.normalize(kind.upper(), text)
        return text

    def _normalize(self, text: str, offset: int) -> str:
        return self._normalize_text(text)

    def _encode_segment(self, text: str, first: bool) -> List[int]:
        if self.metaspace:
            text = text.replace(" ", SPACE)
            if not text.startswith(SPACE) and (self.prefix == "always" or (self.prefix == "first" and first)):
                text = SPACE + text
        if self.ignore_merges and text in self._vocab:
            return [self._vocab[text]]
        if self.space_split and " " in text:
            ids: List[int] = []
            for word in _SPACE_WORDS.findall(text):
                ids += self._core.encode(word)
            return ids
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
        """Ids of each text, encoded on ``num_threads`` threads (default: CPU count)."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        return self._encode_many(texts, add_special_tokens, None, num_threads)

    # ---- decoding
    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        n = len(self._tokens)
        pieces: List[str] = []
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range for a vocabulary of {n} tokens")
            if skip_special_tokens and i in self._added_tokens and self._added_tokens[i].special:
                continue
            pieces.append(self._tokens[i])
        for step in self.decoders:
            pieces = _DECODERS[step[0]](pieces, *step[1:])
        return "".join(pieces)

    def __repr__(self) -> str:
        return (f"SentencePieceBPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
                f"prefix={self.prefix if self.metaspace else None!r}, bos={self.bos_token!r}, "
                f"eos={self.eos_token!r}, added_tokens={len(self._added)})")


# ---- merges of a vocabulary

def merges_from_vocab(tokens: Sequence[str], scores: Optional[Sequence[float]] = None) -> List[Tuple[str, str]]:
    """The merges a vocabulary implies, in rank order, as transformers derives them
    (``generate_merges``): every split of a token into two tokens. With ``scores`` (a GGUF
    file's): best score first, then the longer left part, then the longer right part.
    Without (a tokenizer.model): lowest token id first, then the shorter left part, then
    the shorter right part. Ties keep the order of the tokens and, within a token, the
    order of the parts' ids.

    >>> merges_from_vocab(["a", "b", "c", "ab", "abc", "bc"], [0, 0, 0, -1, -2, -3])
    [('a', 'b'), ('ab', 'c'), ('a', 'bc'), ('b', 'c')]
    >>> merges_from_vocab(["a", "b", "c", "ab", "abc", "bc"])
    [('a', 'b'), ('a', 'bc'), ('ab', 'c'), ('b', 'c')]
    """
    if scores is not None and len(scores) != len(tokens):
        raise ValueError(f"{len(scores)} scores for {len(tokens)} tokens")
    vocab = {t: i for i, t in enumerate(tokens)}  # a later duplicate wins
    keys: Dict[str, float] = {}
    if scores is None:
        keys = {t: float(i) for t, i in vocab.items()}
    else:
        for t, s in zip(tokens, scores):
            keys[t] = s  # the last score of a duplicate, at its first position
    found: List[Tuple[str, str, float]] = []
    for token, key in keys.items():
        parts = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab]
        parts.sort(key=lambda p: (vocab[p[0]], vocab[p[1]]))
        found += [(a, b, key) for a, b in parts]
    # stable sorts: ties keep their order (reverse=True keeps it too)
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=scores is not None)
    return [(a, b) for a, b, _ in found]


def _split_merge(m: Any, k: int) -> Tuple[str, str]:
    if isinstance(m, (list, tuple)) and len(m) == 2:
        return str(m[0]), str(m[1])
    if isinstance(m, str) and m.count(" ") == 1:
        a, b = m.split(" ")
        return a, b
    raise ValueError(f"merge {k} is {m!r}, expected 'left right' or [left, right]")


def _dedupe(tokens: Sequence[AddedToken]) -> List[AddedToken]:
    seen: Dict[int, AddedToken] = {}
    for t in tokens:
        seen.setdefault(t.id, t)
    return list(seen.values())


# ---- pipeline steps

_NORMALIZER_ARGS = {"prepend": 1, "replace": 2, "lowercase": 0, "nfc": 0, "nfkc": 0, "nfd": 0, "nfkd": 0}


def _check_normalizer(step: Step) -> None:
    if not step or step[0] not in _NORMALIZER_ARGS or len(step) != 1 + _NORMALIZER_ARGS[step[0]]:
        raise ValueError(f"unsupported normalizer step {step!r}; supported: " + ", ".join(_NORMALIZER_ARGS))


def _replace(pieces: List[str], old: str, new: str) -> List[str]:
    return [p.replace(old, new) for p in pieces]


def _byte_fallback(pieces: List[str]) -> List[str]:
    out: List[str] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            try:
                out.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                out.extend("\ufffd" * len(pending))  # one per byte, as HF
            pending.clear()

    for p in pieces:
        m = _BYTE_TOKEN.fullmatch(p) if len(p) == 6 else None
        if m is not None:
            pending.append(int(m.group(1), 16))
        else:
            flush()
            out.append(p)
    flush()
    return out


def _fuse(pieces: List[str]) -> List[str]:
    return ["".join(pieces)]


def _strip(pieces: List[str], char: str, left: int, right: int) -> List[str]:
    out = []
    for p in pieces:
        a, b = 0, len(p)
        while a < min(left, len(p)) and p[a] == char:
            a += 1
        while len(p) - b < right and b > a and p[b - 1] == char:
            b -= 1
        out.append(p[a:b])
    return out


def _metaspace(pieces: List[str], prefix: str) -> List[str]:
    # U+2581 -> space, except that the first piece's are dropped when a prefix was added
    return [p.replace(SPACE, "" if i == 0 and prefix != "never" else " ") for i, p in enumerate(pieces)]


_DECODERS: Dict[str, Callable[..., List[str]]] = {
    "replace": _replace, "byte_fallback": _byte_fallback, "fuse": _fuse, "strip": _strip,
    "metaspace": _metaspace}
_DECODER_ARGS = {"replace": 2, "byte_fallback": 0, "fuse": 0, "strip": 3, "metaspace": 1}


def _check_decoder(step: Step) -> None:
    if not step or step[0] not in _DECODER_ARGS or len(step) != 1 + _DECODER_ARGS[step[0]]:
        raise ValueError(f"unsupported decoder step {step!r}; supported: " + ", ".join(_DECODER_ARGS))
