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
- Tokens of type 3 (control) become special added tokens, type 4
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
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple, Union

from . import _bpe
from .base import TokenizerMixin
from .bytelevel import bytes_to_unicode

if TYPE_CHECKING:
    from jinja2 import Template  # jinja2 is needed for chat templates only

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values that become added tokens

# Values of tokenizer.ggml.pre for which transformers keeps GPT-2's ByteLevel regex.
GPT2_REGEX_PRE = ("smollm", "gpt2", "default", "starcoder")


class BPETokenizer(TokenizerMixin):
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
    ):
        if pre not in GPT2_REGEX_PRE:
            raise ValueError(
                f"unsupported pre-tokenizer {pre!r}: this tokenizer implements GPT-2's ByteLevel regex, "
                f"which transformers uses for tokenizer.ggml.pre in {list(GPT2_REGEX_PRE)}")
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

        # Added tokens: control ones (special), user-defined ones (not special) and the
        # named special tokens are matched whole in the text before pre-tokenizing.
        types = list(token_types) if token_types is not None else [1] * n
        named = [i for i in (bos_token_id, eos_token_id, unk_token_id, pad_token_id) if i is not None]
        special = {i for i, t in enumerate(types) if t == CONTROL} | set(named)
        added = special | {i for i, t in enumerate(types) if t == USER_DEFINED}
        self._special_ids = sorted(special)
        self._added = {self._tokens[i]: i for i in sorted(added)}
        longest_first = sorted(self._added, key=len, reverse=True)  # so a longer token wins at a position
        self._added_re = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None
        # A byte with no token of its own is dropped from the text, as HF's BPE model (no unk
        # token, no byte fallback) does: SmolLM2 lacks 0x04 0x06 0x13 0x14 0x16 0x1d and the
        # UTF-8 lead bytes 0xf1 0xf2 (planes 4-11), besides bytes UTF-8 never uses.
        self._core = _bpe.BPECore(self._tokens, self._merges, self._vocab, self._special_ids)

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

        return cls(
            tokens=list(g("tokens")), merges=list(g("merges")), token_types=g("token_type"),
            bos_token_id=g("bos_token_id"), eos_token_id=g("eos_token_id"),
            pad_token_id=g("padding_token_id"), unk_token_id=g("unknown_token_id"),
            pre=g("pre", "gpt2"), add_bos_token=bool(g("add_bos_token", False)),
            add_eos_token=bool(g("add_eos_token", False)), chat_template=md.get("tokenizer.chat_template"),
        )

    # ---- sizes and special tokens
    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def get_vocab(self) -> Dict[str, int]:
        return dict(self._vocab)

    def _token(self, tid: Optional[int]) -> Optional[str]:
        return None if tid is None else self._tokens[tid]

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

    @property
    def all_special_ids(self) -> List[int]:
        """bos, eos, unk, pad ids without repeats, in transformers' order (not the
        other control tokens, which transformers lists as additional special tokens).

        >>> smollm2.all_special_ids                              # doctest: +SKIP
        [1, 2, 0]
        """
        out: List[int] = []
        for i in (self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id):
            if i is not None and i not in out:
                out.append(i)
        return out

    @property
    def all_special_tokens(self) -> List[str]:
        return [self._tokens[i] for i in self.all_special_ids]

    # ---- encoding
    def _encode_plain(self, text: str) -> List[int]:
        """Ids of ``text`` without BOS/EOS; added tokens such as ``<|im_start|>`` in the text
        are single ids.

        >>> smollm2._encode_plain("Hello world<|im_end|>")       # doctest: +SKIP
        [19556, 905, 2]
        """
        matches = list(self._added_re.finditer(text)) if self._added_re is not None else []
        if not matches:
            return self._core.encode(text)  # the common case: no copying
        ids: List[int] = []
        pos = 0
        for m in matches:
            if m.start() > pos:
                ids += self._core.encode(text[pos:m.start()])
            ids.append(self._added[m.group()])
            pos = m.end()
        if pos < len(text):
            ids += self._core.encode(text[pos:])
        return ids

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

    # ---- decoding and lookups
    def _decode_ids(self, ids: List[int], skip_special_tokens: bool) -> str:
        # bytes that do not form valid UTF-8 become U+FFFD, as in HF
        return str(self._core.decode(ids, skip_special_tokens).decode("utf-8", errors="replace"))

    def convert_ids_to_tokens(self, ids: Union[int, Iterable[int]]) -> Union[str, List[str]]:
        """Byte-level spelling of ids (``"Ġworld"`` for ``" world"``)."""
        if isinstance(ids, int):
            return self._tokens[self._check_id(ids)]
        return [self._tokens[self._check_id(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str]]) -> Union[Optional[int], List[Optional[int]]]:
        """Ids of tokens; an unknown token gives ``unk_token_id``, as in transformers."""
        if isinstance(tokens, str):
            return self._vocab.get(tokens, self.unk_token_id)
        return [self._vocab.get(t, self.unk_token_id) for t in tokens]

    def _check_id(self, i: int) -> int:
        if not 0 <= i < len(self._tokens):
            raise ValueError(f"token id {i} is out of range for a vocabulary of {len(self._tokens)} tokens")
        return i

    # ---- chat
    def apply_chat_template(self, messages: Sequence[Dict[str, Any]], add_generation_prompt: bool = False,
                            tokenize: bool = True, return_dict: bool = False, chat_template: Optional[str] = None,
                            **kwargs: Any) -> Union[str, List[int], Dict[str, List[int]]]:
        """Render the model's Jinja chat template the way transformers does (sandboxed,
        ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, bos/eos/unk/pad tokens as
        variables) and tokenize the result without adding BOS/EOS. ``tokenize=False``
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
        text: str = _compile_template(template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables, **kwargs)
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)} if return_dict else ids

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, pre={self.pre!r}, "
                f"bos={self.bos_token!r}, eos={self.eos_token!r}, added_tokens={len(self._added)})")


def _respell(token: str) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token.encode("utf-8"))


_TEMPLATES: Dict[str, Template] = {}


def _compile_template(source: str) -> Template:
    if source in _TEMPLATES:
        return _TEMPLATES[source]
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ImportError("apply_chat_template needs jinja2: pip install jinja2") from e
    import json

    def raise_exception(message: str) -> NoReturn:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
               separators: Optional[Tuple[str, str]] = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    _TEMPLATES[source] = env.from_string(source)
    return _TEMPLATES[source]
