# The transformers tokenizer call shared by pyllm's tokenizers: batching, padding, truncation, tensors
# (numpy or torch), decoding of arrays, added tokens, chat templates. Not an encoder: subclasses
# turn one text segment into ids and back.
"""``TokenizerMixin``, ``BatchEncoding``, ``AddedToken`` and ``VocabTokenizer``.

A tokenizer class provides ``_encode_plain(text) -> ids`` (no special tokens
added), ``_decode_ids(ids, skip_special_tokens) -> str`` and the
``*_token_id`` attributes; the mixin gives it transformers' surface:
``tok(texts, padding=True, truncation=True, max_length=..., return_tensors="np")``
returning a :class:`BatchEncoding` that ``model.generate(**inputs)`` takes,
``encode(..., return_tensors=...)``, ``decode`` / ``batch_decode`` of lists,
numpy arrays and torch tensors, ``pad``, ``apply_chat_template``, and the
members every tokenizer has (``vocab_size``, ``len``, ``get_vocab``, the
special tokens' ids and spellings): the type ``AutoTokenizer`` returns.

Padding is on ``padding_side`` (``"right"``, as transformers' tokenizer for
the GGUF files pyllm reads) with ``pad_token_id``; truncation cuts on
``truncation_side`` (``"right"``) and keeps the special tokens
``add_special_tokens`` adds.

:class:`VocabTokenizer` adds what the subword tokenizers share: a vocabulary
in id order, the named special tokens, and added tokens matched whole in the
text before anything else runs (:class:`AddedToken`, as HF's ``AddedVocabulary``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._inputs import to_numpy, token_ids

__all__ = ["BatchEncoding", "TokenizerMixin", "AddedToken", "VocabTokenizer"]

PaddingArg = Union[bool, str]
_PADDING = {True: "longest", "longest": "longest", False: "do_not_pad", "do_not_pad": "do_not_pad",
            "max_length": "max_length"}
_TRUNCATION = {True: True, "longest_first": True, "only_first": True, False: False, "do_not_truncate": False}


def _tensor(rows: Any, return_tensors: Optional[str], name: str) -> Any:
    """Lists of ids as ``return_tensors`` asks: None (lists), "np" or "pt" (int64, 2-D)."""
    if return_tensors is None:
        return rows
    if return_tensors not in ("np", "pt"):
        raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'np', 'pt' or None (lists)")
    if rows and isinstance(rows[0], list) and len({len(r) for r in rows}) > 1:
        raise ValueError(f"cannot make one tensor of {name} rows of different lengths: pass padding=True "
                         "(or truncation=True with max_length) to make them equal")
    arr = np.asarray(rows if rows and isinstance(rows[0], list) else [rows], dtype=np.int64)  # (B, T)
    if return_tensors == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError("return_tensors='pt' needs PyTorch (pip install torch); "
                              "return_tensors='np' gives numpy arrays without it") from None
        return torch.from_numpy(arr)
    return arr


class BatchEncoding(Dict[str, Any]):
    """What a tokenizer call returns, as transformers' ``BatchEncoding``: a dict
    (``model.generate(**enc)``) whose keys are also attributes (``enc.input_ids``).

    >>> enc = BatchEncoding({"input_ids": [[5, 6]], "attention_mask": [[1, 1]]})
    >>> enc.input_ids, enc["attention_mask"]
    ([[5, 6]], [[1, 1]])
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no {name!r}; keys: {', '.join(self)}") from None

    def to(self, device: Any) -> "BatchEncoding":
        """``enc.to("cpu")`` as in transformers; pyllm runs on the CPU only."""
        if str(device) not in ("cpu", "-1"):
            raise ValueError(f"device={device!r}: pyllm runs on the CPU only; use 'cpu'")
        return self

    def convert_to_tensors(self, tensor_type: Optional[str] = None) -> "BatchEncoding":
        for key in list(self):
            self[key] = _tensor(self[key], tensor_type, key)
        return self


class TokenizerMixin:
    """transformers' tokenizer calls over ``_encode_plain`` / ``_decode_ids``."""

    bos_token_id: Optional[int]
    eos_token_id: Optional[int]
    pad_token_id: Optional[int]
    unk_token_id: Optional[int] = None
    chat_template: Optional[str] = None  # Jinja source, as transformers' tokenizer.chat_template
    add_bos_token: bool = False
    add_eos_token: bool = False
    padding_side: str = "right"  # where padding goes: "right" (transformers' default here) or "left"
    truncation_side: str = "right"  # which end truncation cuts
    model_max_length: int = 1_000_000_000  # transformers' "no limit" stand-in; max_length= sets one per call

    def _encode_plain(self, text: str) -> List[int]:
        raise NotImplementedError

    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> Dict[str, int]:
        """Spelling -> id of every token."""
        raise NotImplementedError

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]]) -> Union[str, List[str]]:
        """Spelling of ids as the vocabulary writes them."""
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str]]) -> Union[Optional[int], List[Optional[int]]]:
        """Ids of tokens; an unknown token gives ``unk_token_id``, as in transformers."""
        vocab = self.get_vocab()
        if isinstance(tokens, str):
            return vocab.get(tokens, self.unk_token_id)
        return [vocab.get(t, self.unk_token_id) for t in tokens]

    # ---- the named special tokens
    @property
    def all_special_ids(self) -> List[int]:
        raise NotImplementedError

    @property
    def all_special_tokens(self) -> List[str]:
        raise NotImplementedError

    def _token(self, tid: Optional[int]) -> Optional[str]:
        """The spelling of a special token id (None for None)."""
        return None if tid is None else self._decode_ids([tid], False)

    @property
    def bos_token(self) -> Optional[str]:
        return self._token(self.bos_token_id)

    @property
    def eos_token(self) -> Optional[str]:
        return self._token(self.eos_token_id)

    @property
    def pad_token(self) -> Optional[str]:
        return self._token(self.pad_token_id)

    @property
    def unk_token(self) -> Optional[str]:
        return self._token(self.unk_token_id)

    # ---- special tokens around a sequence
    def build_inputs_with_special_tokens(self, ids: List[int]) -> List[int]:
        """``ids`` with the BOS / EOS the tokenizer adds (``add_bos_token``, ``add_eos_token``)."""
        bos = [self.bos_token_id] if self.add_bos_token and self.bos_token_id is not None else []
        eos = [self.eos_token_id] if self.add_eos_token and self.eos_token_id is not None else []
        return bos + list(ids) + eos

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        if pair:
            raise ValueError("pairs of sequences are not supported")
        return len(self.build_inputs_with_special_tokens([]))

    # ---- encoding
    def _encode_one(self, text: str, add_special_tokens: bool, max_length: Optional[int]) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")
        ids = self._encode_plain(text)
        n_special = self.num_special_tokens_to_add() if add_special_tokens else 0
        if max_length is not None:
            keep = max(max_length - n_special, 0)
            if len(ids) > keep:
                ids = ids[:keep] if self.truncation_side == "right" else ids[len(ids) - keep:]
        return self.build_inputs_with_special_tokens(ids) if add_special_tokens else ids

    def _encode_many(self, texts: Sequence[str], add_special_tokens: bool, max_length: Optional[int],
                     num_threads: Optional[int] = None) -> List[List[int]]:
        return [self._encode_one(t, add_special_tokens, max_length) for t in texts]

    def encode(self, text: str, add_special_tokens: bool = True, truncation: Union[bool, str] = False,
               max_length: Optional[int] = None, return_tensors: Optional[str] = None, **kwargs: Any) -> Any:
        """Token ids of ``text`` (a list; a (1, T) array / tensor with ``return_tensors="np"`` / ``"pt"``).
        Added tokens such as ``<|im_start|>`` written in the text are single ids whatever
        ``add_special_tokens`` says; that flag only adds BOS/EOS when the model asks for them.
        ``padding`` / ``padding_side`` are accepted as in :meth:`__call__`.

        >>> tok.encode("Hello world", return_tensors="np")     # doctest: +SKIP
        array([[19556,   905]])
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}; use tokenizer(texts) or "
                            "encode_batch for a list")
        if return_tensors is None and not truncation and max_length is None and not kwargs:
            return self._encode_one(text, add_special_tokens, None)  # the common case, no copies
        enc = self(text, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length,
                   return_tensors=return_tensors, return_attention_mask=False, **kwargs)
        return enc["input_ids"]

    def __call__(self, text: Union[str, Sequence[str]], add_special_tokens: bool = True,
                 padding: PaddingArg = False, truncation: Union[bool, str, None] = None,
                 max_length: Optional[int] = None, return_tensors: Optional[str] = None,
                 return_attention_mask: bool = True, padding_side: Optional[str] = None,
                 pad_to_multiple_of: Optional[int] = None, num_threads: Optional[int] = None) -> BatchEncoding:
        """``input_ids`` and ``attention_mask`` of a text or a list of texts, as transformers'
        tokenizer call: ``padding`` True / ``"longest"`` (to the longest in the batch) or
        ``"max_length"``, ``truncation=True`` with ``max_length``, ``padding_side`` for this call,
        ``return_tensors`` None (lists), ``"np"`` or ``"pt"``.

        >>> tok(["Hello", "Hi there you"], padding=True)["input_ids"]   # doctest: +SKIP
        [[19556, 2, 2], [26843, 665, 346]]
        """
        single = isinstance(text, str)
        if not single and not (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)):
            what = type(text).__name__ if not isinstance(text, (list, tuple)) else \
                f"a list holding {type(next(t for t in text if not isinstance(t, str))).__name__}"
            raise TypeError(f"text must be a string or a list of strings, got {what}")
        if not isinstance(padding, (bool, str)) or padding not in _PADDING:  # (a list is not hashable)
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False/'do_not_pad'")
        if truncation is not None and (not isinstance(truncation, (bool, str)) or truncation not in _TRUNCATION):
            raise ValueError(f"truncation={truncation!r}: use True/'longest_first' or False")
        if max_length is not None:
            from .._inputs import as_int

            max_length = as_int(max_length, "max_length", minimum=1)
        pad_mode = _PADDING[padding]
        # as transformers: max_length alone truncates (with a warning there); truncation=False never does
        cut = max_length if (truncation is None or _TRUNCATION[truncation]) else None
        if truncation and max_length is None:
            cut = self.model_max_length
        texts: Sequence[str] = [text] if single else text  # type: ignore[list-item]
        rows = self._encode_many(texts, add_special_tokens, cut, num_threads) if len(texts) > 1 else \
            [self._encode_one(t, add_special_tokens, cut) for t in texts]
        enc = self._pad_rows(rows, pad_mode, max_length, pad_to_multiple_of, padding_side, return_attention_mask)
        if single:
            for key in enc:
                enc[key] = enc[key][0]
        return enc.convert_to_tensors(return_tensors)

    def pad(self, encoded_inputs: Dict[str, Any], padding: PaddingArg = True, max_length: Optional[int] = None,
            pad_to_multiple_of: Optional[int] = None, padding_side: Optional[str] = None,
            return_attention_mask: bool = True, return_tensors: Optional[str] = None) -> BatchEncoding:
        """Pad ``{"input_ids": rows}`` (lists of ids) as transformers' ``tokenizer.pad``."""
        if not isinstance(padding, (bool, str)) or padding not in _PADDING:  # (a list is not hashable)
            raise ValueError(f"padding={padding!r}: use True/'longest', 'max_length' or False/'do_not_pad'")
        rows = [token_ids(r, f"input_ids[{i}]", self.vocab_size) for i, r in enumerate(encoded_inputs["input_ids"])]
        enc = self._pad_rows(rows, _PADDING[padding], max_length, pad_to_multiple_of, padding_side,
                             return_attention_mask)
        return enc.convert_to_tensors(return_tensors)

    def _pad_rows(self, rows: List[List[int]], mode: str, max_length: Optional[int], pad_to_multiple_of: Optional[int],
                  padding_side: Optional[str], return_attention_mask: bool) -> BatchEncoding:
        masks = [[1] * len(r) for r in rows]
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        if mode != "do_not_pad" and rows:
            if mode == "max_length":
                if max_length is None:
                    raise ValueError("padding='max_length' needs max_length")
                width = max_length
            else:
                width = max(len(r) for r in rows)
            if pad_to_multiple_of:
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
            if any(len(r) < width for r in rows):
                if self.pad_token_id is None:
                    raise ValueError("this tokenizer has no padding token (pad_token_id is None): set "
                                     "tokenizer.pad_token_id (for example to eos_token_id) to pad")
                pad = int(self.pad_token_id)
                for i, r in enumerate(rows):
                    n = width - len(r)
                    if n > 0:
                        rows[i] = r + [pad] * n if side == "right" else [pad] * n + r
                        masks[i] = masks[i] + [0] * n if side == "right" else [0] * n + masks[i]
        out = BatchEncoding({"input_ids": rows})
        if return_attention_mask:
            out["attention_mask"] = masks
        return out

    # ---- decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs: Any) -> Any:
        """Text of ids: an int, a list, a 1-D numpy array or torch tensor; a batch (2-D) gives a
        list of texts, as in transformers 5. Float, bool and string ids raise TypeError.

        >>> tok.decode(model.generate(ids)[0], skip_special_tokens=True)   # doctest: +SKIP
        """
        _decode_kwargs(kwargs)
        arr = to_numpy(token_ids)
        batched = (isinstance(arr, np.ndarray) and arr.ndim == 2) or (
            isinstance(arr, (list, tuple)) and len(arr) > 0 and isinstance(to_numpy(arr[0]), (list, tuple, np.ndarray)))
        if batched:
            return self.batch_decode(arr, skip_special_tokens)
        return self._decode_ids(_checked(self, arr, "token_ids"), skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> List[str]:
        """Texts of a batch of id sequences: a list of lists, a 2-D array or tensor (generate's output)."""
        _decode_kwargs(kwargs)
        arr = to_numpy(sequences)
        if not isinstance(arr, (list, tuple, np.ndarray)):
            raise TypeError(f"sequences must be a batch of id sequences (a list of lists, a 2-D array or tensor), "
                            f"got {type(arr).__name__}")
        if isinstance(arr, np.ndarray) and arr.ndim != 2:
            raise ValueError(f"sequences must be 2-D (batch, time), got shape {arr.shape}")
        return [self._decode_ids(_checked(self, row, f"sequences[{i}]"), skip_special_tokens)
                for i, row in enumerate(arr)]

    # ---- chat
    def apply_chat_template(self, messages: Sequence[Dict[str, Any]], add_generation_prompt: bool = False,
                            tokenize: bool = True, return_dict: bool = False, chat_template: Optional[str] = None,
                            **kwargs: Any) -> Union[str, List[int], Dict[str, List[int]]]:
        """Render the model's Jinja chat template the way transformers does (sandboxed,
        ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, bos/eos/unk/pad tokens as
        variables; bounded in time and size, see :mod:`pyllm.tokenizers.chat_template`) and
        tokenize the result without adding BOS/EOS. ``tokenize=False``
        returns the string; ``return_dict=True`` returns ``{"input_ids", "attention_mask"}``
        (transformers 5's default; this method returns the ids list by default).

        >>> text = smollm2.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)  # doctest: +SKIP
        >>> text.splitlines()  # doctest: +SKIP
        ['<|im_start|>system', 'You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>',
         '<|im_start|>user', 'Hi<|im_end|>']
        """
        template = chat_template or self.chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat template (tokenizer.chat_template); pass chat_template=")
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                     "unk_token": self.unk_token, "pad_token": self.pad_token}
        from .chat_template import render_chat_template

        text = render_chat_template(template, messages=list(messages), add_generation_prompt=add_generation_prompt,
                                    **variables, **kwargs)
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)} if return_dict else ids


def _is_scalar_id(ids: Any) -> bool:
    """One id rather than a sequence (a bare float or bool too, so token_ids refuses it by name)."""
    ids = to_numpy(ids)
    return not isinstance(ids, (list, tuple, np.ndarray, str, bytes)) or (isinstance(ids, np.ndarray) and ids.ndim == 0)


def _checked(tok: Any, ids: Any, name: str) -> List[int]:
    return token_ids(ids, name, tok.vocab_size)


def _decode_kwargs(kwargs: Dict[str, Any]) -> None:
    # transformers' clean_up_tokenization_spaces is off for these tokenizers; asking for it is refused
    if kwargs.get("clean_up_tokenization_spaces"):
        raise ValueError("clean_up_tokenization_spaces=True is not supported (byte-level BPE decodes exactly)")
    unknown = sorted(k for k in kwargs if k != "clean_up_tokenization_spaces")
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(unknown)}")



# ---- added tokens and the vocabulary tokenizers

@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in the text before normalizing and splitting, as in HF's
    ``added_tokens``: ``special`` ones are dropped by ``skip_special_tokens``;
    ``lstrip`` / ``rstrip`` take the whitespace before / after into the match;
    ``single_word`` matches only between non-word characters; ``normalized``
    matches in the normalized text instead of the raw one."""

    id: int
    content: str
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False


Segment = Union[int, Tuple[str, int]]  # an added token's id, or (text, offset of it in the input)
_WORD_END = re.compile(r"\w$")
_WORD_START = re.compile(r"^\w")
_SPACE_END = re.compile(r"\s*$")
_SPACE_START = re.compile(r"^\s*")


class _Matcher:
    """Leftmost-longest search of a set of added tokens (HF's Aho-Corasick, written as a regex
    alternation longest first), with their lstrip / rstrip / single_word rules."""

    def __init__(self, tokens: Sequence[Tuple[str, AddedToken]]):
        # an empty token would match between every two characters: it matches nothing (as in HF)
        self.by_text = {text: tok for text, tok in tokens if text}
        ordered = sorted(self.by_text, key=len, reverse=True)  # a longer token wins at a position
        self.regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def split(self, text: str, offset: int) -> List[Segment]:
        if self.regex is None or not text:
            return [(text, offset)] if text else []
        out: List[Segment] = []
        pos = 0
        for m in self.regex.finditer(text):
            tok = self.by_text[m.group()]
            start, stop = m.start(), m.end()
            if tok.single_word and ((start > 0 and _WORD_END.search(text[:start]))
                                    or (stop < len(text) and _WORD_START.match(text[stop:]))):
                continue
            if tok.lstrip:
                found = _SPACE_END.search(text[:start])
                start = max(found.start() if found else start, pos)
            if tok.rstrip:
                found = _SPACE_START.match(text[stop:])
                stop += found.end() if found else 0
            if start < pos:  # an rstrip took the start of this match
                continue
            if pos < start:
                out.append((text[pos:start], offset + pos))
            out.append(tok.id)
            pos = stop
        if pos < len(text):
            out.append((text[pos:], offset + pos))
        return out


class VocabTokenizer(TokenizerMixin):
    """What pyllm's subword tokenizers share: ``_tokens`` (spellings in id order), ``_vocab``
    (spelling -> id), the named special token ids, added tokens and the chat template.

    A subclass calls :meth:`_set_added_tokens` once it knows them and implements
    ``_normalize(text, offset) -> str`` and ``_encode_segment(text, first) -> ids``;
    ``first`` says whether the segment starts the input (SentencePiece's prefix space
    goes there only).
    """

    _tokens: List[str]
    _vocab: Dict[str, int]
    # ids a post-processor puts around a sequence when they are not just the bos / eos tokens
    # (a tokenizer.json TemplateProcessing naming other tokens); None: add_bos_token / add_eos_token
    special_template: Optional[Tuple[List[int], List[int]]] = None

    def build_inputs_with_special_tokens(self, ids: List[int]) -> List[int]:
        if self.special_template is not None:
            before, after = self.special_template
            return list(before) + list(ids) + list(after)
        return super().build_inputs_with_special_tokens(ids)

    def _set_added_tokens(self, added: Iterable[AddedToken], normalize: Optional[Callable[[str], str]] = None) -> None:
        self._added_tokens = {t.id: t for t in added}  # a later entry for an id wins
        self._special_ids = sorted(i for i, t in self._added_tokens.items() if t.special)
        self._added = {t.content: t.id for t in self._added_tokens.values()}
        raw = [(t.content, t) for t in self._added_tokens.values() if not t.normalized]
        norm = [((normalize or str)(t.content), t) for t in self._added_tokens.values() if t.normalized]
        self._raw_matcher = _Matcher(raw)
        self._norm_matcher = _Matcher(norm)
        self._has_added = self._raw_matcher.regex is not None or self._norm_matcher.regex is not None

    def _normalize(self, text: str, offset: int) -> str:
        return text

    def _encode_segment(self, text: str, first: bool) -> List[int]:
        raise NotImplementedError

    def _encode_plain(self, text: str) -> List[int]:
        """Ids of ``text`` without BOS/EOS; added tokens such as ``<|im_start|>`` in the text
        are single ids."""
        if not self._has_added:
            norm = self._normalize(text, 0)
            return self._encode_segment(norm, True) if norm else []
        ids: List[int] = []
        for seg in self._raw_matcher.split(text, 0):
            if isinstance(seg, int):
                ids.append(seg)
                continue
            piece, offset = seg
            norm = self._normalize(piece, offset)
            for sub in self._norm_matcher.split(norm, offset):
                if isinstance(sub, int):
                    ids.append(sub)
                else:
                    # a piece after a normalized token starts later than offset in the input
                    ids += self._encode_segment(sub[0], offset == 0 and sub[1] == offset)
        return ids

    def clear_cache(self) -> None:
        """Empty the encoder's word caches and free their memory (they refill as text is
        encoded; each is capped at a few MB either way)."""
        core = getattr(self, "_core", None)
        if core is not None:
            core.clear_cache()

    # ---- sizes and special tokens
    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def get_vocab(self) -> Dict[str, int]:
        return dict(self._vocab)

    def _token(self, tid: Optional[int]) -> Optional[str]:
        return None if tid is None else self._tokens[tid]

    @property
    def all_special_ids(self) -> List[int]:
        """bos, eos, unk, pad ids without repeats, in transformers' order (not the
        other control tokens, which transformers lists as additional special tokens)."""
        out: List[int] = []
        for i in (self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id):
            if i is not None and i not in out:
                out.append(i)
        return out

    @property
    def all_special_tokens(self) -> List[str]:
        return [self._tokens[i] for i in self.all_special_ids]

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]]) -> Union[str, List[str]]:
        """Spelling of ids as the vocabulary writes them (``"Ġworld"`` / ``"▁world"`` for ``" world"``)."""
        if _is_scalar_id(ids):
            return self._tokens[token_ids(ids, "ids", len(self._tokens))[0]]
        return [self._tokens[i] for i in token_ids(ids, "ids", len(self._tokens))]

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str]]) -> Union[Optional[int], List[Optional[int]]]:
        """Ids of tokens; an unknown token gives ``unk_token_id``, as in transformers."""
        if isinstance(tokens, str):
            return self._vocab.get(tokens, self.unk_token_id)
        return [self._vocab.get(t, self.unk_token_id) for t in tokens]

    def _check_id(self, i: int) -> int:
        if not 0 <= i < len(self._tokens):
            raise ValueError(f"token id {i} is out of range for a vocabulary of {len(self._tokens)} tokens")
        return i
