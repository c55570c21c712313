# BERT's WordPiece tokenizer with transformers' BertTokenizerFast surface: pairs, token types,
# truncation strategies, offsets, decoding, files. The per-character loops are in _wordpiece.pyx.
"""``BertTokenizerFast``: the tokenizer of BERT models (bert-base-uncased,
all-MiniLM-L6-v2, ...), giving the ids transformers' ``BertTokenizerFast`` (the Rust
``tokenizers`` pipeline) gives:

- normalizer (``BertNormalizer``): ``clean_text`` drops NUL, U+FFFD and control /
  format / unassigned characters and turns whitespace into spaces;
  ``tokenize_chinese_chars`` puts spaces around CJK ideographs; ``strip_accents``
  (None: follows ``do_lower_case``) decomposes and drops non-spacing marks;
  ``do_lower_case`` lower-cases. How each code point is treated was recorded from
  tokenizers (``_wordpiece_tables.py``, ``scripts/record_wordpiece_tables.py``), so
  the result does not depend on Python's Unicode version;
- pre-tokenizer (``BertPreTokenizer``): words end at whitespace, every punctuation
  character is a word;
- WordPiece: greedy longest match from the left, ``##`` before non-initial pieces;
  a word of more than ``max_input_chars_per_word`` (100) characters, or one that
  cannot be cut into vocabulary pieces, is ``[UNK]``;
- post-processor: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` with token types
  0 for the first part and 1 for the second;
- added tokens (``[CLS]``, ``[MASK]``, ... written in the text) are matched in the
  raw text first and are single ids;
- decoder (``WordPiece`` with cleanup): pieces joined, ``##`` glued to the piece
  before, no space before ``. , ! ?``; ``clean_up_tokenization_spaces=True`` also
  applies transformers' cleanup to the whole string.

>>> tok = BertTokenizerFast.from_pretrained("all-MiniLM-L6-v2")          # doctest: +SKIP
>>> tok("Hello world!", "Second part")                                   # doctest: +SKIP
{'input_ids': [101, 7592, 2088, 999, 102, 2117, 2112, 102],
 'token_type_ids': [0, 0, 0, 0, 0, 1, 1, 1], 'attention_mask': [1, 1, 1, 1, 1, 1, 1, 1]}
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from . import _wordpiece
from .base import AddedToken, BatchEncoding, VocabTokenizer, _tensor

__all__ = ["BertTokenizerFast", "BertTokenizer", "TextInputError", "is_bert_tokenizer_dir"]

PathLike = Union[str, "os.PathLike[str]"]
Offsets = List[Tuple[int, int]]
SPECIAL_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_PADDING = {True: "longest", "longest": "longest", False: "do_not_pad", "do_not_pad": "do_not_pad",
            "max_length": "max_length"}
_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second", False: "do_not_truncate", "do_not_truncate": "do_not_truncate"}
# the WordPiece decoder's cleanup, applied to each token with the space before it (tokenizers' decoder)
_TOKEN_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                  (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
# transformers' clean_up_tokenization over the whole text
_TEXT_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class TextInputError(TypeError, ValueError):
    """A text argument that is not a string or a list of strings (transformers raises
    ValueError or TypeError for these, depending on where; this is both)."""


@lru_cache(maxsize=None)
def _tables() -> Tuple[Dict[int, Tuple[int, ...]], Dict[int, Tuple[int, ...]]]:
    from ._wordpiece_tables import LOWER, STRIP

    def parse(block: str) -> Dict[int, Tuple[int, ...]]:
        out = {}
        for item in block.split():
            cp, _, mapped = item.partition(":")
            out[int(cp, 16)] = tuple(int(c, 16) for c in mapped.split(".")) if mapped else ()
        return out

    return parse(STRIP), parse(LOWER)


def char_mapping(lowercase: bool, strip_accents: bool) -> Dict[int, Tuple[int, ...]]:
    """Code point -> what the normalizer makes of it (strip accents, then lower-case), for
    the code points it changes."""
    strip, lower = _tables()
    out: Dict[int, Tuple[int, ...]] = {}
    for cp in set(strip if strip_accents else ()) | set(lower if lowercase else ()):
        chars = strip.get(cp, (cp,)) if strip_accents else (cp,)
        mapped = tuple(c2 for c in chars for c2 in (lower.get(c, (c,)) if lowercase else (c,)))
        if mapped != (cp,):
            out[cp] = mapped
    return out


def _texts(text: Any, name: str) -> Tuple[List[str], bool]:
    """(texts, single) of a text argument; TextInputError naming what was wrong."""
    if isinstance(text, str):
        return [text], True
    if text is None:
        raise TextInputError(f"{name} is None: pass a string or a list of strings")
    if isinstance(text, (list, tuple)):
        for i, t in enumerate(text):
            if not isinstance(t, str):
                raise TextInputError(f"{name}[{i}] is {type(t).__name__}, not a string: {name} must be a string or "
                                     "a list of strings (pre-split words, is_split_into_words, are not supported)")
        return list(text), False
    raise TextInputError(f"{name} must be a string or a list of strings, got {type(text).__name__}")


class BertTokenizerFast(VocabTokenizer):
    """BERT's WordPiece tokenizer with transformers' ``BertTokenizerFast`` API.

    ``vocab`` maps spellings to ids (vocab.txt order); the special tokens are given by
    spelling and must be in it. ``tokenizer(text, text_pair, padding=..., truncation=...,
    max_length=..., return_tensors=..., return_offsets_mapping=...)`` returns a
    :class:`~pyllm.tokenizers.base.BatchEncoding` with ``input_ids``, ``token_type_ids``
    and ``attention_mask``.
    """

    padding_side = "right"
    truncation_side = "right"

    def __init__(
        self,
        vocab: Dict[str, int],
        do_lower_case: bool = True,
        strip_accents: Optional[bool] = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        max_input_chars_per_word: int = 100,
        wordpieces_prefix: str = "##",
        model_max_length: int = 512,
        added_tokens: Optional[Sequence[AddedToken]] = None,
        clean_up_tokenization_spaces: bool = False,
        name_or_path: str = "",
    ):
        if not vocab:
            raise ValueError("the vocabulary is empty")
        self._vocab = dict(vocab)
        n = max(self._vocab.values()) + 1
        tokens: List[Optional[str]] = [None] * n
        for t, i in self._vocab.items():
            if i < 0:
                raise ValueError(f"token {t!r} has a negative id {i}")
            tokens[i] = t
        missing = [i for i, t in enumerate(tokens) if t is None]
        if missing:
            raise ValueError(f"the vocabulary has no token for ids {missing[:5]}; ids must be 0..{n - 1}")
        self._tokens = [t for t in tokens if t is not None]
        specials = {"unk_token": unk_token, "sep_token": sep_token, "pad_token": pad_token, "cls_token": cls_token,
                    "mask_token": mask_token}
        for name, spelling in specials.items():
            if spelling not in self._vocab:
                raise ValueError(f"{name}={spelling!r} is not in the vocabulary")
        self.unk_token_id = self._vocab[unk_token]
        self.sep_token_id = self._vocab[sep_token]
        self.pad_token_id = self._vocab[pad_token]
        self.cls_token_id = self._vocab[cls_token]
        self.mask_token_id = self._vocab[mask_token]
        self.bos_token_id = None
        self.eos_token_id = None
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.clean_text = bool(clean_text)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.wordpieces_prefix = wordpieces_prefix
        self.model_max_length = int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = name_or_path
        if added_tokens is None:
            added_tokens = [AddedToken(self._vocab[s], s, special=True) for s in specials.values()]
        for added in added_tokens:
            if not 0 <= added.id < n:
                raise ValueError(f"added token {added.content!r} has id {added.id}, out of range for {n} tokens")
        self._set_added_tokens(added_tokens)
        lower_strip = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self._core = _wordpiece.WordPieceCore(
            self._vocab, {k: list(v) for k, v in char_mapping(self.do_lower_case, lower_strip).items()},
            self.unk_token_id, self.max_input_chars_per_word, wordpieces_prefix, self.clean_text,
            self.tokenize_chinese_chars)

    # ---- loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: PathLike, **kwargs: Any) -> "BertTokenizerFast":
        """Read a model directory (or a registered name such as ``"all-MiniLM-L6-v2"``):
        ``tokenizer.json`` with a WordPiece model, else ``vocab.txt``, with the settings
        of ``tokenizer_config.json``. Keyword arguments override the files' settings."""
        from ..hub import resolve_model_dir

        d = resolve_model_dir(name_or_path)
        for key in ("use_fast", "trust_remote_code", "local_files_only", "revision", "cache_dir"):
            kwargs.pop(key, None)
        padding_side = kwargs.pop("padding_side", None)
        truncation_side = kwargs.pop("truncation_side", None)
        config = _read_json_file(d / "tokenizer_config.json") if (d / "tokenizer_config.json").is_file() else {}
        settings: Dict[str, Any] = {}
        for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length",
                    "clean_up_tokenization_spaces", *SPECIAL_NAMES):
            if key in config and config[key] is not None:
                settings[key] = _spelling(config[key]) if key in SPECIAL_NAMES else config[key]
        if "strip_accents" in config:
            settings["strip_accents"] = config["strip_accents"]
        if config.get("model_max_length", 0) > 10 ** 12:  # transformers' "no limit" sentinel
            settings.pop("model_max_length")
        if config.get("do_basic_tokenize") is False:
            raise ValueError(f"{d / 'tokenizer_config.json'}: do_basic_tokenize=false is not supported")
        if config.get("never_split"):
            raise ValueError(f"{d / 'tokenizer_config.json'}: never_split is not supported")
        added: Optional[List[AddedToken]] = None
        if (d / "tokenizer.json").is_file():
            vocab, from_json, added = _read_tokenizer_json(d / "tokenizer.json")
            settings = {**from_json, **settings}
        elif (d / "vocab.txt").is_file():
            vocab = _read_vocab_txt(d / "vocab.txt")
        else:
            raise FileNotFoundError(f"no BERT tokenizer in {d}: expected tokenizer.json or vocab.txt")
        if added is not None:
            added += _config_added_tokens(config, vocab, {t.id for t in added})
        settings.update(kwargs)
        settings.setdefault("name_or_path", str(name_or_path))
        try:
            tok = cls(vocab, added_tokens=added, **settings)
        except TypeError as e:
            raise TypeError(f"BertTokenizerFast.from_pretrained: {e}") from None
        if padding_side is not None:
            tok.padding_side = _side(padding_side, "padding_side")
        if truncation_side is not None:
            tok.truncation_side = _side(truncation_side, "truncation_side")
        return tok

    def save_pretrained(self, save_directory: PathLike, **kwargs: Any) -> Tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and vocab.txt
        (what transformers writes; it and pyllm load the directory back to the same ids)."""
        from .._fileio import write_text_atomic

        d = Path(os.fspath(save_directory))
        d.mkdir(parents=True, exist_ok=True)
        files = {
            "tokenizer.json": json.dumps(self._tokenizer_json(), ensure_ascii=False, indent=2),
            "tokenizer_config.json": json.dumps(self._config_json(), ensure_ascii=False, indent=2),
            "special_tokens_map.json": json.dumps({k: getattr(self, k) for k in SPECIAL_NAMES}, indent=2),
            "vocab.txt": "".join(t + "\n" for t in self._tokens),
        }
        for name, text in files.items():
            write_text_atomic(d / name, text)
        return tuple(str(d / name) for name in files)

    def _config_json(self) -> Dict[str, Any]:
        return {"tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
                "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
                "model_max_length": self.model_max_length,
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                "padding_side": self.padding_side, "truncation_side": self.truncation_side,
                **{k: getattr(self, k) for k in SPECIAL_NAMES}}

    def _tokenizer_json(self) -> Dict[str, Any]:
        cls, sep = self.cls_token, self.sep_token
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": t.id, "content": t.content, "single_word": t.single_word, "lstrip": t.lstrip,
                              "rstrip": t.rstrip, "normalized": t.normalized, "special": t.special}
                             for t in sorted(self._added_tokens.values(), key=lambda t: t.id)],
            "normalizer": {"type": "BertNormalizer", "clean_text": self.clean_text,
                           "handle_chinese_chars": self.tokenize_chinese_chars, "strip_accents": self.strip_accents,
                           "lowercase": self.do_lower_case},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": sep, "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": sep, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": sep, "type_id": 1}}],
                "special_tokens": {cls: {"id": cls, "ids": [self.cls_token_id], "tokens": [cls]},
                                   sep: {"id": sep, "ids": [self.sep_token_id], "tokens": [sep]}}},
            "decoder": {"type": "WordPiece", "prefix": self.wordpieces_prefix, "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": self.unk_token, "continuing_subword_prefix":
                      self.wordpieces_prefix, "max_input_chars_per_word": self.max_input_chars_per_word,
                      "vocab": {t: i for i, t in enumerate(self._tokens)}},
        }

    # ---- special tokens
    @property
    def cls_token(self) -> str:
        return self._tokens[self.cls_token_id]

    @property
    def sep_token(self) -> str:
        return self._tokens[self.sep_token_id]

    @property
    def mask_token(self) -> str:
        return self._tokens[self.mask_token_id]

    @property
    def all_special_ids(self) -> List[int]:
        """unk, sep, pad, cls, mask ids, as transformers lists them for BERT."""
        out: List[int] = []
        for i in (self.unk_token_id, self.sep_token_id, self.pad_token_id, self.cls_token_id, self.mask_token_id):
            if i is not None and i not in out:
                out.append(i)
        return out

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: List[int],
                                         token_ids_1: Optional[List[int]] = None) -> List[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        out = [self.cls_token_id] + list(token_ids_0) + [self.sep_token_id]
        if token_ids_1 is not None:
            out += list(token_ids_1) + [self.sep_token_id]
        return out

    def create_token_type_ids_from_sequences(self, token_ids_0: List[int],
                                             token_ids_1: Optional[List[int]] = None) -> List[int]:
        first = [0] * (len(token_ids_0) + 2)
        return first if token_ids_1 is None else first + [1] * (len(token_ids_1) + 1)

    def get_special_tokens_mask(self, token_ids_0: List[int], token_ids_1: Optional[List[int]] = None,
                                already_has_special_tokens: bool = False) -> List[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        out = [1] + [0] * len(token_ids_0) + [1]
        return out if token_ids_1 is None else out + [0] * len(token_ids_1) + [1]

    # ---- encoding one text without special tokens
    def _encode_with_offsets(self, text: str, offsets: bool) -> Tuple[List[int], Optional[Offsets]]:
        regex = self._raw_matcher.regex
        if regex is None or regex.search(text) is None:
            return self._core.encode(text, offsets)
        ids: List[int] = []
        offs: Optional[Offsets] = [] if offsets else None
        for seg in self._raw_matcher.split(text, 0):
            if isinstance(seg, int):
                ids.append(seg)
                if offs is not None:
                    content = self._added_tokens[seg].content
                    # the matcher gives no position for an added token: it starts where the text so far ends
                    start = offs[-1][1] if offs else 0
                    start = text.find(content, start)
                    offs.append((start, start + len(content)))
                continue
            piece, base = seg
            piece_ids, piece_offs = self._core.encode(piece, offsets, base)
            ids += piece_ids
            if offs is not None and piece_offs is not None:
                offs += piece_offs
        return ids, offs

    def _encode_plain(self, text: str) -> List[int]:
        return self._encode_with_offsets(text, False)[0]

    def tokenize(self, text: str, pair: Optional[str] = None, add_special_tokens: bool = False,
                 **kwargs: Any) -> List[str]:
        """The token spellings of ``text`` (``"un", "##aff", "##able"``)."""
        enc = self(text, pair, add_special_tokens=add_special_tokens, **kwargs)
        return [self._tokens[i] for i in enc["input_ids"]]

    # ---- the tokenizer call
    def __call__(  # type: ignore[override]
            self, text: Any = None, text_pair: Any = None, add_special_tokens: bool = True,
                 padding: Union[bool, str] = False, truncation: Union[bool, str, None] = None,
                 max_length: Optional[int] = None, stride: int = 0, pad_to_multiple_of: Optional[int] = None,
                 padding_side: Optional[str] = None, return_tensors: Optional[str] = None,
                 return_token_type_ids: Optional[bool] = None, return_attention_mask: Optional[bool] = None,
                 return_offsets_mapping: bool = False, return_special_tokens_mask: bool = False,
                 return_length: bool = False, num_threads: Optional[int] = None,
                 **kwargs: Any) -> BatchEncoding:
        """transformers' tokenizer call: a text or a list of texts, optionally with
        ``text_pair`` (a text, or a list as long as ``text``); ``padding`` True /
        ``"longest"`` / ``"max_length"``; ``truncation`` True / ``"longest_first"`` /
        ``"only_first"`` / ``"only_second"``; ``max_length`` (default
        ``model_max_length`` when truncating); ``return_tensors`` None, ``"np"`` or
        ``"pt"``; ``return_offsets_mapping`` (character spans in each text, (0, 0) for
        special tokens). A list is encoded on ``num_threads`` threads (default: the CPU
        count) with the GIL released."""
        if kwargs.pop("is_split_into_words", False):
            raise ValueError("is_split_into_words=True is not supported: pass whole strings")
        for key in ("verbose", "return_overflowing_tokens"):
            if kwargs.pop(key, False) and key == "return_overflowing_tokens":
                raise ValueError("return_overflowing_tokens=True is not supported")
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        if stride:
            raise ValueError("stride is only meaningful with return_overflowing_tokens, which is not supported")
        if text is None:
            raise TextInputError("text is None: pass a string or a list of strings")
        texts, single = _texts(text, "text")
        pairs: Optional[List[str]] = None
        if text_pair is not None:
            pairs, pair_single = _texts(text_pair, "text_pair")
            if pair_single != single or len(pairs) != len(texts):
                raise ValueError(f"text_pair must match text: {len(texts)} text(s) "
                                 f"{'(a string)' if single else '(a list)'} but {len(pairs)} pair(s) "
                                 f"{'(a string)' if pair_single else '(a list)'}")
        if padding not in _PADDING:
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False/'do_not_pad'")
        if truncation is not None and truncation not in _TRUNCATION:
            raise ValueError(f"truncation={truncation!r}: use True/'longest_first', 'only_first', 'only_second' "
                             "or False/'do_not_truncate'")
        if max_length is not None:
            from .._inputs import as_int

            max_length = as_int(max_length, "max_length", minimum=0)
        pad_mode = _PADDING[padding]
        # as transformers: max_length without padding or truncation truncates longest-first
        strategy = _TRUNCATION[truncation] if truncation is not None else \
            ("longest_first" if max_length is not None and padding is False else "do_not_truncate")
        if strategy != "do_not_truncate" and max_length is None:
            max_length = self.model_max_length
        if pad_mode == "max_length" and max_length is None:
            max_length = self.model_max_length
        if strategy == "only_second" and pairs is None:
            raise ValueError("truncation='only_second' needs a second sequence (text_pair)")
        cut = max_length if strategy != "do_not_truncate" else None
        if cut is not None and add_special_tokens and cut < self.num_special_tokens_to_add(pairs is not None):
            n_special = self.num_special_tokens_to_add(pairs is not None)
            raise ValueError(f"max_length={cut} is too short for the {n_special}"
                             " special tokens ([CLS], [SEP]) each sequence gets: use a larger max_length or "
                             "add_special_tokens=False")

        want_offsets = bool(return_offsets_mapping)
        fast = pairs is None and not want_offsets and not return_special_tokens_mask and len(texts) > 1
        if fast:
            rows = self._encode_batch_fast(texts, add_special_tokens, cut, num_threads)
            types = [[0] * len(r) for r in rows]
            offsets: Optional[List[Offsets]] = None
            special_masks: Optional[List[List[int]]] = None
        else:
            encoded = self._map(lambda k: self._encode_row(texts[k], pairs[k] if pairs is not None else None,
                                                             add_special_tokens, strategy, cut, want_offsets),
                                range(len(texts)), num_threads)
            rows = [e[0] for e in encoded]
            types = [e[1] for e in encoded]
            offsets = [e[2] for e in encoded] if want_offsets else None
            special_masks = [e[3] for e in encoded] if return_special_tokens_mask else None
        enc = self._pad_all(rows, types, offsets, special_masks, pad_mode, max_length, pad_to_multiple_of,
                            padding_side)
        if return_token_type_ids is False:
            del enc["token_type_ids"]
        if return_attention_mask is False:
            del enc["attention_mask"]
        if return_length:  # as transformers: the length with padding
            enc["length"] = [len(r) for r in enc["input_ids"]]
        if single:
            for key in enc:
                if key != "length":  # transformers keeps a one-item list there
                    enc[key] = enc[key][0]
        if return_tensors is not None:
            for key in list(enc):
                if key == "offset_mapping":
                    enc[key] = _offsets_tensor(enc[key], return_tensors, single)
                else:
                    enc[key] = _tensor(enc[key], return_tensors, key)
        return enc

    def _map(self, fn: Any, items: Iterable[int], num_threads: Optional[int]) -> List[Any]:
        items = list(items)
        threads = min(num_threads or os.cpu_count() or 1, len(items))
        if threads <= 1:
            return [fn(k) for k in items]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(fn, items, chunksize=max(1, len(items) // (4 * threads))))

    def _encode_batch_fast(self, texts: List[str], add_special_tokens: bool, cut: Optional[int],
                           num_threads: Optional[int]) -> List[List[int]]:
        """Single sequences, no offsets: the core encodes whole chunks with the GIL released."""
        regex = self._raw_matcher.regex
        plain = [k for k, t in enumerate(texts) if regex is None or regex.search(t) is None]
        first = self.cls_token_id if add_special_tokens else -1
        last = self.sep_token_id if add_special_tokens else -1
        keep = -1 if cut is None else max(cut - (2 if add_special_tokens else 0), 0)
        rows: List[List[int]] = [[] for _ in texts]
        plain_texts = [texts[k] for k in plain]
        threads = max(1, min(num_threads or os.cpu_count() or 1, len(plain_texts) // 64 or 1))
        chunks = [plain_texts[i::threads] for i in range(threads)]  # strided: similar work per thread
        if threads == 1:
            results = [self._core.encode_batch(plain_texts, first, last, keep)]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(lambda c: self._core.encode_batch(c, first, last, keep), chunks))
        for i, res in enumerate(results):
            for j, row in enumerate(res):
                rows[plain[i + j * threads]] = row
        if len(plain) < len(texts):
            done = set(plain)
            for k, t in enumerate(texts):
                if k not in done:
                    rows[k] = self._encode_row(t, None, add_special_tokens, "longest_first", cut, False)[0]
        return rows

    def _encode_row(self, text: str, pair: Optional[str], add_special_tokens: bool, strategy: str,
                    cut: Optional[int], want_offsets: bool
                    ) -> Tuple[List[int], List[int], Optional[Offsets], List[int]]:
        ids_a, offs_a = self._encode_with_offsets(text, want_offsets)
        ids_b, offs_b = self._encode_with_offsets(pair, want_offsets) if pair is not None else (None, None)
        if cut is not None:
            budget = cut - (self.num_special_tokens_to_add(pair is not None) if add_special_tokens else 0)
            n_a, n_b = _truncated_lengths(len(ids_a), len(ids_b) if ids_b is not None else None, budget, strategy)
            ids_a, offs_a = self._cut(ids_a, offs_a, n_a)
            if ids_b is not None and n_b is not None:
                ids_b, offs_b = self._cut(ids_b, offs_b, n_b)
        if add_special_tokens:
            ids = self.build_inputs_with_special_tokens(ids_a, ids_b)
            types = self.create_token_type_ids_from_sequences(ids_a, ids_b)
            special = self.get_special_tokens_mask(ids_a, ids_b)
            offs = None
            if want_offsets:
                offs = [(0, 0)] + (offs_a or []) + [(0, 0)]
                if ids_b is not None:
                    offs += (offs_b or []) + [(0, 0)]
        else:
            ids = ids_a + (ids_b or [])
            types = [0] * len(ids_a) + [1] * len(ids_b or [])
            special = [0] * len(ids)
            offs = (offs_a or []) + (offs_b or []) if want_offsets else None
        return ids, types, offs, special

    def _cut(self, ids: List[int], offs: Optional[Offsets], n: int) -> Tuple[List[int], Optional[Offsets]]:
        if len(ids) <= n:
            return ids, offs
        if self.truncation_side == "left":
            return ids[len(ids) - n:], offs[len(offs) - n:] if offs is not None else None
        return ids[:n], offs[:n] if offs is not None else None

    def _pad_all(self, rows: List[List[int]], types: List[List[int]], offsets: Optional[List[Offsets]],
                 special: Optional[List[List[int]]], mode: str, max_length: Optional[int],
                 pad_to_multiple_of: Optional[int], padding_side: Optional[str]) -> BatchEncoding:
        side = _side(padding_side or self.padding_side, "padding_side")
        masks = [[1] * len(r) for r in rows]
        width = 0
        if mode != "do_not_pad" and rows:
            width = max_length if mode == "max_length" and max_length is not None else max(len(r) for r in rows)
            if pad_to_multiple_of:
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        columns: List[Tuple[str, List[Any], Any]] = [
            ("input_ids", rows, self.pad_token_id), ("token_type_ids", types, 0), ("attention_mask", masks, 0)]
        if special is not None:
            columns.append(("special_tokens_mask", special, 1))
        if offsets is not None:
            columns.append(("offset_mapping", offsets, (0, 0)))
        enc = BatchEncoding()
        for name, col, fill in columns:
            if width:
                col = [r + [fill] * (width - len(r)) if side == "right" else [fill] * (width - len(r)) + r
                       if len(r) < width else r for r in col]
            enc[name] = col
        return enc

    def encode(self, text: Any, text_pair: Any = None,  # type: ignore[override]
               add_special_tokens: bool = True, **kwargs: Any) -> Any:
        """Token ids of ``text`` (and ``text_pair``) as a list, or a (1, T) array / tensor
        with ``return_tensors``.

        >>> tok.encode("Hello world")      # doctest: +SKIP
        [101, 7592, 2088, 102]
        """
        if not isinstance(text, str):
            raise TextInputError(f"text must be a string, got {type(text).__name__}; use tokenizer(texts) for a list")
        return_tensors = kwargs.pop("return_tensors", None)
        enc = self(text, text_pair, add_special_tokens=add_special_tokens, return_attention_mask=False,
                   return_token_type_ids=False, **kwargs)
        ids = enc["input_ids"]
        return ids if return_tensors is None else _tensor([ids], return_tensors, "input_ids")

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True,
                     num_threads: Optional[int] = None) -> List[List[int]]:
        """Ids of each text ([CLS] ... [SEP]), encoded on ``num_threads`` threads."""
        checked, _ = _texts(list(texts), "texts")
        return self._encode_batch_fast(checked, add_special_tokens, None, num_threads)

    def pad(self, encoded_inputs: Any, padding: Union[bool, str] = True, max_length: Optional[int] = None,
            pad_to_multiple_of: Optional[int] = None, padding_side: Optional[str] = None,
            return_attention_mask: Optional[bool] = None, return_tensors: Optional[str] = None,
            **kwargs: Any) -> BatchEncoding:
        """transformers' ``tokenizer.pad``: a dict of lists or a list of dicts (what a data
        collator gets); ``input_ids``, ``token_type_ids``, ``attention_mask`` and
        ``special_tokens_mask`` are padded, other keys (labels) are kept as they are."""
        kwargs.pop("verbose", None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        if padding not in _PADDING:
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False/'do_not_pad'")
        if isinstance(encoded_inputs, (list, tuple)):
            if not encoded_inputs or not all(isinstance(f, dict) for f in encoded_inputs):
                raise ValueError("pad() takes a dict of lists or a non-empty list of dicts")
            keys = list(encoded_inputs[0])
            batch = {k: [f[k] for f in encoded_inputs] for k in keys}
        elif isinstance(encoded_inputs, dict):
            batch = dict(encoded_inputs)
        else:
            raise ValueError(f"pad() takes a dict of lists or a list of dicts, got {type(encoded_inputs).__name__}")
        if "input_ids" not in batch:
            raise ValueError(f"pad() needs input_ids; got keys {', '.join(batch)}")
        from .._inputs import to_numpy, token_ids

        ids = batch["input_ids"]
        single = isinstance(ids, (list, tuple)) and (not ids or isinstance(ids[0], int))
        rows = [token_ids(r, f"input_ids[{i}]", self.vocab_size) for i, r in enumerate([ids] if single else ids)]

        def column(name: str, default: Any) -> List[List[int]]:
            if name not in batch:
                return [[default] * len(r) for r in rows]
            col = batch[name]
            col = [col] if single else col
            return [[int(v) for v in to_numpy(c)] for c in col]

        types = column("token_type_ids", 0)
        special = column("special_tokens_mask", 0) if "special_tokens_mask" in batch else None
        mode = _PADDING[padding]
        enc = self._pad_all(rows, types, None, special, mode, max_length, pad_to_multiple_of, padding_side)
        if "attention_mask" in batch:  # keep the caller's mask, padded with zeros
            given = column("attention_mask", 1)
            width = len(enc["input_ids"][0]) if enc["input_ids"] else 0
            side = padding_side or self.padding_side
            enc["attention_mask"] = [m + [0] * (width - len(m)) if side == "right" else [0] * (width - len(m)) + m
                                     for m in given]
        if "token_type_ids" not in batch:
            del enc["token_type_ids"]
        if return_attention_mask is False:
            del enc["attention_mask"]
        for key, value in batch.items():
            if key not in enc and key not in ("token_type_ids", "attention_mask", "special_tokens_mask"):
                enc[key] = value
        if single:
            for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
                if key in enc:
                    enc[key] = enc[key][0]
        if return_tensors is not None:
            for key in list(enc):
                enc[key] = _tensor(enc[key], return_tensors, key) if key != "labels" and key != "label" else \
                    _labels_tensor(enc[key], return_tensors)
        return enc

    # ---- decoding
    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
        """Spelling of an id or of each id (``"##able"`` for a continuation piece)."""
        if isinstance(ids, int):
            return self._tokens[self._check_id(ids)]
        from .._inputs import token_ids

        special = set(self._special_ids) if skip_special_tokens else set()
        return [self._tokens[i] for i in token_ids(ids, "ids", self.vocab_size) if i not in special]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """The WordPiece decoder: tokens joined by spaces, ``##`` pieces glued to the one before,
        and its cleanup (no space before ``. , ! ?``)."""
        parts = []
        prefix = self.wordpieces_prefix
        for i, tok in enumerate(tokens):
            if i and tok.startswith(prefix):
                tok = tok[len(prefix):]
            elif i:
                tok = " " + tok
            for a, b in _TOKEN_CLEANUP:
                tok = tok.replace(a, b)
            parts.append(tok)
        return "".join(parts)

    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        special = set(self._special_ids) if skip_special_tokens else ()
        return self.convert_tokens_to_string([self._tokens[i] for i in ids if i not in special])

    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: Optional[bool] = None, **kwargs: Any) -> Any:
        """Text of ids (an int, a list, a 1-D array or tensor; 2-D gives a list of texts);
        ``clean_up_tokenization_spaces`` (default: the tokenizer's setting, False for
        transformers' BERT) also removes the spaces transformers' cleanup removes."""
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        out = super().decode(token_ids, skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        if not clean:
            return out
        return [_clean_up(t) for t in out] if isinstance(out, list) else _clean_up(out)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: Optional[bool] = None, **kwargs: Any) -> List[str]:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        out = super().batch_decode(sequences, skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return [_clean_up(t) for t in out] if clean else out

    def __repr__(self) -> str:
        return (f"BertTokenizerFast(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"do_lower_case={self.do_lower_case}, strip_accents={self.strip_accents}, "
                f"model_max_length={self.model_max_length})")


BertTokenizer = BertTokenizerFast  # transformers 5 spells the class both ways


def _clean_up(text: str) -> str:
    for a, b in _TEXT_CLEANUP:
        text = text.replace(a, b)
    return text


def _truncated_lengths(n_a: int, n_b: Optional[int], budget: int, strategy: str) -> Tuple[int, Optional[int]]:
    """How many tokens of each sequence a truncation strategy keeps (tokenizers' rules)."""
    total = n_a + (n_b or 0)
    if total <= budget:
        return n_a, n_b
    if n_b is None:
        if strategy == "only_second":
            raise ValueError("truncation='only_second' needs a second sequence (text_pair)")
        return budget, None
    if strategy == "only_first" or strategy == "only_second":
        remove = total - budget
        if strategy == "only_first":
            if n_a <= remove:
                raise ValueError(f"truncation='only_first' cannot fit max_length: the first sequence has {n_a} "
                                 f"tokens but {remove} must go (the second has {n_b}); use 'longest_first'")
            return n_a - remove, n_b
        if n_b <= remove:
            raise ValueError(f"truncation='only_second' cannot fit max_length: the second sequence has {n_b} "
                             f"tokens but {remove} must go (the first has {n_a}); use 'longest_first'")
        return n_a, n_b - remove
    # longest_first: the shorter keeps what it can up to half the budget, the longer the rest
    short, long_, swap = (n_a, n_b, False) if n_a <= n_b else (n_b, n_a, True)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short = budget // 2
        long_ = short + budget % 2
    return (long_, short) if swap else (short, long_)


def _offsets_tensor(value: Any, return_tensors: str, single: bool) -> Any:
    import numpy as np

    arr = np.asarray([value] if single else value, dtype=np.int64).reshape(1 if single else len(value), -1, 2)
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(arr)
    return arr


def _labels_tensor(value: Any, return_tensors: str) -> Any:
    import numpy as np

    arr = np.asarray(value)
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(arr)
    return arr


def _side(value: str, name: str) -> str:
    if value not in ("left", "right"):
        raise ValueError(f"{name} must be 'left' or 'right', got {value!r}")
    return value


def _spelling(value: Any) -> str:
    # special tokens in tokenizer_config.json are strings or AddedToken dicts
    return str(value["content"]) if isinstance(value, dict) else str(value)


def _read_json_file(path: Path) -> Dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return obj


def _read_vocab_txt(path: Path) -> Dict[str, int]:
    # one token per line, the line number is the id; a later duplicate wins, as in transformers
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}


def _read_tokenizer_json(path: Path) -> Tuple[Dict[str, int], Dict[str, Any], List[AddedToken]]:
    obj = _read_json_file(path)
    model = obj.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ValueError(f"{path}: the model is {model.get('type')!r}, not WordPiece")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: model.vocab is not a mapping of tokens to ids")
    norm = obj.get("normalizer") or {}
    if norm and norm.get("type") != "BertNormalizer":
        raise ValueError(f"{path}: normalizer {norm.get('type')!r} is not supported (BertNormalizer only)")
    pre = obj.get("pre_tokenizer") or {}
    if pre and pre.get("type") != "BertPreTokenizer":
        raise ValueError(f"{path}: pre_tokenizer {pre.get('type')!r} is not supported (BertPreTokenizer only)")
    settings: Dict[str, Any] = {
        "unk_token": model.get("unk_token", "[UNK]"),
        "wordpieces_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": model.get("max_input_chars_per_word", 100),
    }
    if norm:
        settings.update(do_lower_case=norm.get("lowercase", True), strip_accents=norm.get("strip_accents"),
                        tokenize_chinese_chars=norm.get("handle_chinese_chars", True),
                        clean_text=norm.get("clean_text", True))
    added = []
    for t in obj.get("added_tokens") or []:
        if t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            raise ValueError(f"{path}: added token {t.get('content')!r} uses normalized/lstrip/rstrip/single_word, "
                             "which BertTokenizerFast does not support")
        added.append(AddedToken(int(t["id"]), str(t["content"]), special=bool(t.get("special", False))))
    return {str(k): int(v) for k, v in vocab.items()}, settings, added


def _config_added_tokens(config: Dict[str, Any], vocab: Dict[str, int], have: Set[int]) -> List[AddedToken]:
    out = []
    for tid, t in (config.get("added_tokens_decoder") or {}).items():
        if int(tid) not in have and isinstance(t, dict) and "content" in t:
            out.append(AddedToken(int(tid), str(t["content"]), special=bool(t.get("special", False))))
    return out


def is_bert_tokenizer_dir(name_or_path: Any) -> Optional[Path]:
    """The directory if ``name_or_path`` is one holding a BERT tokenizer (a tokenizer.json
    with a WordPiece model, or vocab.txt with a tokenizer_config.json naming a BERT tokenizer
    class or without tokenizer.json), or a registered model directory name; else None."""
    from ..hub import DIRECTORIES, resolve_model_dir

    try:
        p = Path(os.fspath(name_or_path)).expanduser()
    except TypeError:
        return None
    if not p.is_dir():
        if isinstance(name_or_path, str) and name_or_path in DIRECTORIES:
            p = resolve_model_dir(name_or_path)
        else:
            return None
    if (p / "tokenizer.json").is_file():
        try:
            model = json.loads((p / "tokenizer.json").read_text(encoding="utf-8")).get("model") or {}
        except (ValueError, AttributeError):
            return None
        return p if isinstance(model, dict) and model.get("type") == "WordPiece" else None
    if (p / "vocab.txt").is_file() and (p / "tokenizer_config.json").is_file():
        try:
            cls = json.loads((p / "tokenizer_config.json").read_text(encoding="utf-8")).get("tokenizer_class")
        except (ValueError, AttributeError):
            return None
        return p if cls in (None, "BertTokenizer", "BertTokenizerFast") else None
    return None
