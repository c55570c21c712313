# Tokenizers from files: GGUF metadata, Hugging Face tokenizer.json / tokenizer.model / vocab.json +
# merges.txt with tokenizer_config.json, pyllm's char_tokenizer.json. Not the tokenizers themselves.
"""Loading and saving the tokenizer of a model file or directory.

Entry points for model loaders:

- :func:`tokenizer_from_gguf_metadata` ``(md)``: a GGUF file's metadata dict ->
  :class:`BPETokenizer` (``tokenizer.ggml.model = "gpt2"``) or
  :class:`SentencePieceBPETokenizer` (``"llama"``).
- :func:`load_hf_tokenizer` ``(directory)``: a Hugging Face model directory ->
  the tokenizer ``transformers.AutoTokenizer.from_pretrained(directory)`` builds.
- :func:`load_tokenizer` ``(path)``: either of those, a ``.gguf`` file, pyllm's
  char tokenizer or a registered model name.

A directory is read the way transformers 5 reads it. ``tokenizer_config.json``
names the class: ``LlamaTokenizer`` and ``GemmaTokenizer`` (SentencePiece-style
BPE), ``Qwen2Tokenizer`` and ``GPT2Tokenizer`` (byte-level) rebuild their own
pipeline around the vocabulary, merges, added tokens and post-processor of
``tokenizer.json`` (so a Llama directory gets ``Metaspace`` whatever the file
says), while ``PreTrainedTokenizerFast`` / ``TokenizersBackend`` (Llama 3's
directories) take ``tokenizer.json`` as written. ``add_bos_token`` /
``add_eos_token`` in the config win over the file's ``TemplateProcessing``;
``chat_template`` comes from the config or ``chat_template.jinja``. Without a
tokenizer.json, a ``tokenizer.model`` (SentencePiece BPE protobuf) is read and
converted as transformers converts it; GPT-2's vocab.json + merges.txt also load.

>>> tok = load_tokenizer("path/to/Llama-2-7b-hf")            # doctest: +SKIP
>>> tok = tokenizer_from_gguf_metadata(GGUFFile(path).metadata)  # doctest: +SKIP
>>> save_tokenizer(tok, "elsewhere")                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from .._fileio import write_text_atomic
from .base import AddedToken
from .bpe import CONTROL, USER_DEFINED, BPETokenizer
from .bpe_ref import SPLITS
from .char import CHAR_TOKENIZER_FILE, CharTokenizer
from .spm import SPACE, SentencePieceBPETokenizer, merges_from_vocab

__all__ = ["load_tokenizer", "save_tokenizer", "find_tokenizer", "bpe_to_hf_json", "bpe_from_hf_json",
           "tokenizer_to_hf_json",
           "tokenizer_from_gguf_metadata", "tokenizer_from_hf_json", "load_hf_tokenizer", "load_gguf_tokenizer",
           "read_sentencepiece_model", "TOKENIZER_FORMATS", "TokenizerFormat", "write_text_atomic",
           "HF_TOKENIZER_FILE", "CHAR_TOKENIZER_FILE"]

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
SPM_MODEL_FILE = "tokenizer.model"

PathLike = Union[str, "os.PathLike[str]"]
Tokenizer = Union[BPETokenizer, SentencePieceBPETokenizer, CharTokenizer]


# ---- GGUF

GGUF_TOKENIZER_MODELS = {"gpt2": "byte-level BPE", "llama": "SentencePiece BPE"}


def tokenizer_from_gguf_metadata(md: Dict[str, Any]) -> Union[BPETokenizer, SentencePieceBPETokenizer]:
    """The tokenizer a GGUF file's metadata describes, as transformers builds it.

    >>> tok = tokenizer_from_gguf_metadata(GGUFFile("model.gguf").metadata)   # doctest: +SKIP
    """
    kind = md.get("tokenizer.ggml.model")
    if kind == "gpt2":
        return BPETokenizer.from_gguf_metadata(md)
    if kind == "llama":
        return SentencePieceBPETokenizer.from_gguf_metadata(md)
    supported = ", ".join(f"{k} ({v})" for k, v in GGUF_TOKENIZER_MODELS.items())
    raise ValueError(f"unsupported tokenizer model {kind!r} (tokenizer.ggml.model); supported: {supported}")


def load_gguf_tokenizer(path: PathLike) -> Union[BPETokenizer, SentencePieceBPETokenizer]:
    """The tokenizer stored in a GGUF file's metadata."""
    from .. import _C

    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"no such GGUF file: {p}")
    md = dict(_C.GGUFFile(str(p)).metadata())
    try:
        return tokenizer_from_gguf_metadata(md)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None


# ---- byte-level BPE -> tokenizer.json

def tokenizer_to_hf_json(tok: Union[BPETokenizer, SentencePieceBPETokenizer]) -> Dict[str, Any]:
    """The ``tokenizer.json`` object (Hugging Face ``tokenizers`` format) of a BPE tokenizer:
    its pipeline written out, so transformers (as ``PreTrainedTokenizerFast``) and
    :func:`tokenizer_from_hf_json` build the same tokenizer from it."""
    tokens: List[str] = list(tok._tokens)
    added = [{"id": a.id, "content": a.content, "single_word": a.single_word, "lstrip": a.lstrip,
              "rstrip": a.rstrip, "normalized": a.normalized, "special": a.special}
             for a in sorted(tok._added_tokens.values(), key=lambda a: a.id)]
    model: Dict[str, Any] = {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
        "ignore_merges": bool(tok.ignore_merges), "vocab": {t: i for i, t in enumerate(tokens)}}
    obj: Dict[str, Any] = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added}
    if isinstance(tok, BPETokenizer):
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        if tok.split == "gpt2":
            pre: Dict[str, Any] = byte_level
        elif tok.split == "gpt2-digits":
            pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
        else:
            pre = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLITS[tok.split]}, "behavior": "Isolated", "invert": False},
                {**byte_level, "use_regex": False}]}
        obj.update(normalizer={"type": tok.normalizer} if tok.normalizer else None, pre_tokenizer=pre,
                   post_processor={**byte_level, "trim_offsets": False}, decoder=byte_level)
        model["merges"] = [m.split(" ", 1) for m in tok._merges]
    else:
        norm = [_NORMALIZER_JSON[s[0]](*s[1:]) for s in tok.normalizers]
        pres: List[Dict[str, Any]] = []
        if tok.metaspace:
            pres.append({"type": "Metaspace", "replacement": SPACE, "prepend_scheme": tok.prefix,
                         "split": tok.split_words})
        if tok.space_split:
            pres.append({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                         "invert": False})
        obj.update(normalizer=None if not norm else norm[0] if len(norm) == 1 else
                   {"type": "Sequence", "normalizers": norm},
                   pre_tokenizer=None if not pres else pres[0] if len(pres) == 1 else
                   {"type": "Sequence", "pretokenizers": pres},
                   post_processor=None,
                   decoder={"type": "Sequence", "decoders": [_DECODER_JSON[s[0]](*s[1:]) for s in tok.decoders]})
        unk = tok.model_unk_token_id
        model.update(unk_token=tokens[unk] if unk is not None else None, fuse_unk=tok.fuse_unk,
                     byte_fallback=tok.byte_fallback, merges=[list(m) for m in tok._merges])
    if tok.special_template is not None:
        before, after = tok.special_template
    else:
        before = [tok.bos_token_id] if tok.add_bos_token and tok.bos_token_id is not None else []
        after = [tok.eos_token_id] if tok.add_eos_token and tok.eos_token_id is not None else []
    if before or after:
        def seq(ids: List[int], type_id: int) -> List[Dict[str, Any]]:
            return [{"SpecialToken": {"id": tokens[i], "type_id": type_id}} for i in ids]

        obj["post_processor"] = {
            "type": "TemplateProcessing",
            "single": seq(before, 0) + [{"Sequence": {"id": "A", "type_id": 0}}] + seq(after, 0),
            "pair": seq(before, 0) + [{"Sequence": {"id": "A", "type_id": 0}}] + seq(after, 0) + seq(before, 1)
            + [{"Sequence": {"id": "B", "type_id": 1}}] + seq(after, 1),
            "special_tokens": {tokens[i]: {"id": tokens[i], "ids": [i], "tokens": [tokens[i]]}
                               for i in before + after}}
    obj["model"] = model
    return obj


_NORMALIZER_JSON: Dict[str, Callable[..., Dict[str, Any]]] = {
    "prepend": lambda s: {"type": "Prepend", "prepend": s},
    "replace": lambda old, new: {"type": "Replace", "pattern": {"String": old}, "content": new},
    **{k: (lambda k=k: {"type": k.upper() if k != "lowercase" else "Lowercase"})
       for k in ("nfc", "nfd", "nfkc", "nfkd", "lowercase")},
}
_DECODER_JSON: Dict[str, Callable[..., Dict[str, Any]]] = {
    "replace": lambda old, new: {"type": "Replace", "pattern": {"String": old}, "content": new},
    "byte_fallback": lambda: {"type": "ByteFallback"},
    "fuse": lambda: {"type": "Fuse"},
    "strip": lambda char, left, right: {"type": "Strip", "content": char, "start": left, "stop": right},
    "metaspace": lambda prefix: {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": prefix, "split": True},
}


def bpe_to_hf_json(tok: BPETokenizer) -> Dict[str, Any]:
    """The ``tokenizer.json`` object of a byte-level BPE tokenizer (see :func:`tokenizer_to_hf_json`)."""
    return tokenizer_to_hf_json(tok)


def _tokenizer_config(tok: Union[BPETokenizer, SentencePieceBPETokenizer]) -> Dict[str, Any]:
    return {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
            "unk_token": tok.unk_token, "add_bos_token": tok.add_bos_token, "add_eos_token": tok.add_eos_token,
            "chat_template": tok.chat_template, "tokenizer_class": "PreTrainedTokenizerFast"}


# ---- tokenizer.json -> tokenizer

# What each tokenizer class builds around the file's vocabulary (transformers 5): its
# pipeline, and the special tokens it names when tokenizer_config.json does not.
_CLASS_DEFAULTS: Dict[str, Dict[str, Optional[str]]] = {
    "LlamaTokenizer": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "GemmaTokenizer": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
                       "mask_token": "<mask>"},
    "Qwen2Tokenizer": {"bos_token": None, "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                       "pad_token": "<|endoftext|>"},
    "GPT2Tokenizer": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
}
_FILE_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend")
_NAMED = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")


def _class_name(config: Dict[str, Any], source: str) -> Optional[str]:
    cls = config.get("tokenizer_class")
    if cls is not None and not isinstance(cls, str):
        raise ValueError(f"{source}: tokenizer_class is {cls!r}, expected a string")
    if cls is not None and cls.endswith("Fast") and cls[:-4] in _CLASS_DEFAULTS:
        cls = cls[:-4]
    if cls not in _FILE_CLASSES and cls not in _CLASS_DEFAULTS:
        supported = ", ".join([c for c in _FILE_CLASSES if c] + list(_CLASS_DEFAULTS))
        raise ValueError(f"{source}: tokenizer_class {cls!r} is not supported; supported: {supported} "
                         "(and their *Fast names)")
    return cls


def _token_name(value: Any) -> Optional[str]:
    """A special token as tokenizer_config.json spells it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _added_tokens(obj: Dict[str, Any], config: Dict[str, Any], source: str) -> Dict[int, AddedToken]:
    """tokenizer.json's added_tokens, then tokenizer_config.json's added_tokens_decoder for ids it lacks."""
    out: Dict[int, AddedToken] = {}
    entries = [(a.get("id"), a) for a in obj.get("added_tokens") or []]
    decoder = config.get("added_tokens_decoder") or {}
    entries += [(int(k), v) for k, v in decoder.items() if int(k) not in {i for i, _ in entries}]
    for i, a in entries:
        if not isinstance(i, int) or not isinstance(a, dict) or not isinstance(a.get("content"), str):
            raise ValueError(f"{source}: added token {a!r} needs an integer id and a string content")
        out[i] = AddedToken(i, a["content"], special=bool(a.get("special", False)), lstrip=bool(a.get("lstrip")),
                            rstrip=bool(a.get("rstrip")), single_word=bool(a.get("single_word")),
                            normalized=bool(a.get("normalized", not a.get("special", False))))
    return out


def _token_table(vocab: Any, added: Dict[int, AddedToken], source: str) -> List[str]:
    if isinstance(vocab, list):  # some writers store [token, score] pairs or plain tokens in id order
        vocab = {(v[0] if isinstance(v, list) else v): i for i, v in enumerate(vocab)}
    if not isinstance(vocab, dict):
        raise ValueError(f"{source}: model.vocab must be an object of token -> id")
    table: Dict[int, str] = {}
    for t, i in vocab.items():
        if not isinstance(i, int) or i < 0:
            raise ValueError(f"{source}: token {t!r} has id {i!r}, expected a non-negative integer")
        table[i] = t
    for i, a in added.items():
        table[i] = a.content
    n = max(table) + 1 if table else 0
    holes = [i for i in range(n) if i not in table]
    if holes:
        raise ValueError(f"{source}: token ids are not contiguous ({len(holes)} missing, first {holes[0]})")
    return [table[i] for i in range(n)]


def _merge_pairs(merges: List[Any], source: str) -> List[Tuple[str, str]]:
    out = []
    for k, m in enumerate(merges):
        if isinstance(m, str) and len(m.split(" ")) == 2:
            a, b = m.split(" ")
            out.append((a, b))
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
            out.append((m[0], m[1]))
        else:
            raise ValueError(f"{source}: merge {k} is {m!r}, expected 'left right' or [left, right]")
    return out


def _post_processor(pp: Optional[Dict[str, Any]], index: Dict[str, int], source: str) -> Tuple[List[int], List[int]]:
    """The ids a post-processor puts before and after a single sequence."""
    if pp is None:
        return [], []
    kind = pp.get("type")
    if kind == "ByteLevel":
        return [], []
    if kind == "Sequence":
        before: List[int] = []
        after: List[int] = []
        for p in pp.get("processors") or []:
            b, a = _post_processor(p, index, source)
            before, after = before + b, after + a
        return before, after
    if kind != "TemplateProcessing":
        raise ValueError(f"{source}: post-processor {kind!r} is not supported; supported: TemplateProcessing, "
                         "ByteLevel, Sequence of those")
    specials = pp.get("special_tokens") or {}
    single = pp.get("single") or []
    seq = [k for k, item in enumerate(single) if "Sequence" in item]
    if len(seq) != 1:
        raise ValueError(f"{source}: a TemplateProcessing single template needs one $A, got {single!r}")

    def ids(items: List[Dict[str, Any]]) -> List[int]:
        out: List[int] = []
        for item in items:
            name = item["SpecialToken"]["id"]
            entry = specials.get(name)
            if entry is not None and entry.get("ids"):
                out += [int(i) for i in entry["ids"]]
            elif name in index:
                out.append(index[name])
            else:
                raise ValueError(f"{source}: post-processor token {name!r} is not in the vocabulary")
        return out

    return ids(single[:seq[0]]), ids(single[seq[0] + 1:])


def _pre_tokenizer_split(pre: Optional[Dict[str, Any]], source: str) -> str:
    """The byte-level split a pre-tokenizer makes: 'gpt2', 'llama3', 'qwen2' or 'gpt2-digits'."""
    bad = ValueError(f"{source}: byte-level pre-tokenizer {json.dumps(pre)[:300]} is not supported; supported: "
                     "ByteLevel(use_regex=true), Digits(individual_digits=true) then ByteLevel(use_regex=true), "
                     "or Split(Regex) with GPT-2's, Llama 3's or Qwen2's regex (Isolated) then "
                     "ByteLevel(use_regex=false), without add_prefix_space")
    if pre is None:
        raise bad
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not steps or any(s.get("type") == "ByteLevel" and s.get("add_prefix_space") for s in steps):
        raise bad
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel" and steps[0].get("use_regex", True):
        return "gpt2"
    if (len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
            and steps[1].get("type") == "ByteLevel" and steps[1].get("use_regex", True)):
        return "gpt2-digits"
    if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel"
            and not steps[1].get("use_regex", True) and steps[0].get("behavior") == "Isolated"
            and not steps[0].get("invert")):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        for kind, pattern in SPLITS.items():
            if regex == pattern:
                return kind
    raise bad


def _spm_normalizers(norm: Optional[Dict[str, Any]], source: str) -> List[Tuple[Any, ...]]:
    if norm is None:
        return []
    steps = norm.get("normalizers") if norm.get("type") == "Sequence" else [norm]
    out: List[Tuple[Any, ...]] = []
    for s in steps or []:
        kind = s.get("type")
        if kind == "Prepend":
            out.append(("prepend", s["prepend"]))
        elif kind == "Replace" and "String" in (s.get("pattern") or {}):
            out.append(("replace", s["pattern"]["String"], s["content"]))
        elif kind in ("NFC", "NFD", "NFKC", "NFKD", "Lowercase"):
            out.append((kind.lower(),))
        else:
            raise ValueError(f"{source}: normalizer {json.dumps(s)[:200]} is not supported; supported: Prepend, "
                             "Replace (a string), NFC, NFD, NFKC, NFKD, Lowercase, Sequence of those")
    return out


def _spm_decoders(dec: Optional[Dict[str, Any]], source: str) -> List[Tuple[Any, ...]]:
    if dec is None:
        return []
    steps = dec.get("decoders") if dec.get("type") == "Sequence" else [dec]
    out: List[Tuple[Any, ...]] = []
    for s in steps or []:
        kind = s.get("type")
        if kind == "Replace" and "String" in (s.get("pattern") or {}):
            out.append(("replace", s["pattern"]["String"], s["content"]))
        elif kind == "ByteFallback":
            out.append(("byte_fallback",))
        elif kind == "Fuse":
            out.append(("fuse",))
        elif kind == "Strip":
            out.append(("strip", s["content"], int(s.get("start", 0)), int(s.get("stop", 0))))
        elif kind == "Metaspace" and s.get("replacement", SPACE) == SPACE:
            out.append(("metaspace", _prepend_scheme(s)))
        else:
            raise ValueError(f"{source}: decoder {json.dumps(s)[:200]} is not supported; supported: Replace (a "
                             "string), ByteFallback, Fuse, Strip, Metaspace, Sequence of those")
    return out


def _prepend_scheme(m: Dict[str, Any]) -> str:
    if "prepend_scheme" in m:
        return str(m["prepend_scheme"])
    return "always" if m.get("add_prefix_space", True) else "never"  # the format before prepend_scheme


def _is_byte_level(obj: Dict[str, Any]) -> bool:
    def has(d: Optional[Dict[str, Any]], key: str) -> bool:
        if not d:
            return False
        return d.get("type") == "ByteLevel" or any(has(x, key) for x in d.get(key) or [])

    return has(obj.get("pre_tokenizer"), "pretokenizers") or has(obj.get("decoder"), "decoders")


def tokenizer_from_hf_json(obj: Dict[str, Any], config: Optional[Dict[str, Any]] = None,
                           source: str = HF_TOKENIZER_FILE, *,
                           use_config_flags: bool = False) -> Union[BPETokenizer, SentencePieceBPETokenizer]:
    """The tokenizer transformers builds from a ``tokenizer.json`` object and its
    ``tokenizer_config.json`` (``config``); what it cannot reproduce raises ValueError
    saying what and what is supported. BOS / EOS come from the file's post-processor, as
    transformers 5 does with a tokenizer.json; ``use_config_flags`` takes the config's
    ``add_bos_token`` / ``add_eos_token`` instead (what it does converting a tokenizer.model)."""
    config = dict(config or {})
    cls = _class_name(config, source)
    model = obj.get("model") or {}
    if model.get("type", "BPE") != "BPE":
        raise ValueError(f"{source}: model type {model.get('type')!r} is not supported; supported: BPE "
                         "(byte-level or SentencePiece-style with byte fallback)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key) and cls in _FILE_CLASSES:
            raise ValueError(f"{source}: model.{key}={model[key]!r} is not supported")
    if model.get("dropout"):
        raise ValueError(f"{source}: BPE dropout is not supported")
    added = _added_tokens(obj, config, source)
    tokens = _token_table(model.get("vocab") or {}, added, source)
    merges = _merge_pairs(list(model.get("merges") or []), source)
    byte_level = cls in ("Qwen2Tokenizer", "GPT2Tokenizer") or (cls in _FILE_CLASSES and _is_byte_level(obj))

    # the named special tokens: the config's, else the class's defaults (a default the
    # vocabulary lacks is left out; transformers would append it as a new token)
    index = {t: i for i, t in enumerate(tokens)}
    defaults = _CLASS_DEFAULTS.get(cls or "", {})
    if cls in _FILE_CLASSES and byte_level and not any(k in config for k in ("bos_token", "eos_token")):
        # GPT-2's files name no special tokens outside tokenizer_config.json; its one special
        # token is both bos and eos, as transformers' GPT2Tokenizer sets it
        specials = [a.content for a in added.values() if a.special]
        if specials == ["<|endoftext|>"]:
            defaults = {"bos_token": specials[0], "eos_token": specials[0]}
    named: Dict[str, Optional[int]] = {}
    for key in _NAMED:
        if key in config:
            name = _token_name(config[key])
            if name is not None and name not in index:
                raise ValueError(f"{source}: {key} {name!r} is not in the vocabulary")
            named[key] = index.get(name) if name is not None else None
        else:
            name = defaults.get(key)
            named[key] = index.get(name) if name is not None else None
    for i in (named[k] for k in _NAMED):
        if i is not None and i not in added:
            added[i] = AddedToken(i, tokens[i])  # transformers adds the named tokens as special ones
    if cls == "Qwen2Tokenizer":
        for i in (named[k] for k in _NAMED):
            if i is not None:
                added[i] = AddedToken(i, tokens[i])

    # BOS / EOS: the file's post-processor says (transformers 5 ignores the config's flags then);
    # the config's flags only when converting a tokenizer.model
    bos, eos = named["bos_token"], named["eos_token"]
    template_ids: Optional[Tuple[List[int], List[int]]] = None
    if use_config_flags:
        add_bos = bool(config.get("add_bos_token", False)) and bos is not None
        add_eos = bool(config.get("add_eos_token", False)) and eos is not None
    else:
        before, after = _post_processor(obj.get("post_processor"), index, source)
        if before in ([], [bos]) and after in ([], [eos]):
            add_bos, add_eos = bool(before), bool(after)
        else:  # the template adds other tokens than the named bos / eos
            add_bos, add_eos, template_ids = False, False, (before, after)
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    common: Dict[str, Any] = dict(
        bos_token_id=bos, eos_token_id=eos, pad_token_id=named["pad_token"], unk_token_id=named["unk_token"],
        add_bos_token=add_bos, add_eos_token=add_eos, chat_template=template if isinstance(template, str) else None,
        added_tokens=sorted(added.values(), key=lambda a: a.id))

    if byte_level:
        if cls in _FILE_CLASSES:
            norm = obj.get("normalizer")
            if norm is not None and norm.get("type") not in ("NFC", "NFD", "NFKC", "NFKD"):
                raise ValueError(f"{source}: normalizer {json.dumps(norm)[:200]} is not supported with byte-level "
                                 "BPE; supported: none, NFC, NFD, NFKC, NFKD")
            dec = obj.get("decoder")
            if dec is not None and dec.get("type") != "ByteLevel":
                raise ValueError(f"{source}: decoder {dec.get('type')!r} is not supported with byte-level BPE; "
                                 "supported: ByteLevel")
            if model.get("byte_fallback"):
                raise ValueError(f"{source}: byte_fallback with a byte-level pre-tokenizer is not supported")
            split, normalizer = _pre_tokenizer_split(obj.get("pre_tokenizer"), source), norm and norm["type"]
            ignore_merges = bool(model.get("ignore_merges", False))
        elif cls == "Qwen2Tokenizer":
            split, normalizer, ignore_merges = "qwen2", "NFC", False
        else:  # GPT2Tokenizer
            split, normalizer, ignore_merges = "gpt2", None, False
        if config.get("add_prefix_space") and cls in ("Qwen2Tokenizer", "GPT2Tokenizer"):
            raise ValueError(f"{source}: add_prefix_space=true is not supported with byte-level BPE")
        return _with_template(BPETokenizer(tokens, [f"{a} {b}" for a, b in merges], pre=split,
                                           normalizer=normalizer, ignore_merges=ignore_merges, **common),
                              template_ids)

    unk_name = model.get("unk_token")
    if cls == "LlamaTokenizer":
        add_prefix = config.get("add_prefix_space")
        add_prefix = True if add_prefix is None else bool(add_prefix)
        prefix = ("always" if config.get("legacy", False) else "first") if add_prefix else "never"
        # BPE without an unk token
        return _with_template(SentencePieceBPETokenizer(tokens, merges, prefix=prefix, **common), template_ids)
    if cls == "GemmaTokenizer":
        return _with_template(SentencePieceBPETokenizer(
            tokens, merges, normalizers=[("replace", " ", SPACE)], metaspace=False, space_split=True,
            model_unk_token_id=named["unk_token"], **common), template_ids)
    # the file as written
    pre = obj.get("pre_tokenizer")
    metaspace, prefix, split_words, space_split = False, "never", False, False
    for p in (pre.get("pretokenizers") if pre and pre.get("type") == "Sequence" else [pre] if pre else []):
        if p.get("type") == "Metaspace" and p.get("replacement", SPACE) == SPACE:
            metaspace, prefix, split_words = True, _prepend_scheme(p), bool(p.get("split", True))
        elif (p.get("type") == "Split" and (p.get("pattern") or {}).get("String") == " "
              and p.get("behavior") == "MergedWithPrevious" and not p.get("invert")):
            space_split = True
        else:
            raise ValueError(f"{source}: pre-tokenizer {json.dumps(p)[:200]} is not supported with SentencePiece-"
                             "style BPE; supported: Metaspace, Split(' ', MergedWithPrevious)")
    if unk_name is not None and unk_name not in index:
        raise ValueError(f"{source}: model.unk_token {unk_name!r} is not in the vocabulary")
    return _with_template(SentencePieceBPETokenizer(
        tokens, merges, normalizers=_spm_normalizers(obj.get("normalizer"), source), metaspace=metaspace,
        prefix=prefix, split_words=split_words, space_split=space_split,
        byte_fallback=bool(model.get("byte_fallback", False)), fuse_unk=bool(model.get("fuse_unk", False)),
        ignore_merges=bool(model.get("ignore_merges", False)),
        model_unk_token_id=index[unk_name] if unk_name is not None else None,
        decoders=_spm_decoders(obj.get("decoder"), source), **common), template_ids)


Tok = TypeVar("Tok", BPETokenizer, SentencePieceBPETokenizer)


def _with_template(tok: Tok, template_ids: Optional[Tuple[List[int], List[int]]]) -> Tok:
    tok.special_template = template_ids
    return tok


def bpe_from_hf_json(obj: Dict[str, Any], config: Optional[Dict[str, Any]] = None,
                     source: str = HF_TOKENIZER_FILE) -> BPETokenizer:
    """A :class:`BPETokenizer` from a ``tokenizer.json`` object that describes byte-level BPE;
    anything else raises ValueError (see :func:`tokenizer_from_hf_json` for every kind)."""
    tok = tokenizer_from_hf_json(obj, config, source)
    if not isinstance(tok, BPETokenizer):
        raise ValueError(f"{source} describes {type(tok).__name__}, not byte-level BPE")
    return tok


# ---- tokenizer.model (SentencePiece's protobuf)

@dataclass
class SentencePieceModel:
    """The parts of a SentencePiece ``ModelProto`` a BPE tokenizer needs."""

    pieces: List[Tuple[str, float, int]]  # (piece, score, type) in id order; types as GGUF_TOKEN_TYPES
    model_type: int  # 1 unigram, 2 BPE, 3 word, 4 char
    byte_fallback: bool
    add_dummy_prefix: bool
    special_ids: Dict[str, int]  # unk_id, bos_id, eos_id, pad_id as the trainer set them (-1: none)


def _proto_fields(data: bytes) -> List[Tuple[int, Any]]:
    """(field number, value) of one protobuf message: varints as int, fixed32 as 4 bytes,
    length-delimited as bytes."""
    out: List[Tuple[int, Any]] = []
    pos, n = 0, len(data)

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            if pos >= n:
                raise ValueError("truncated varint")
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    while pos < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1:
            out.append((field, data[pos:pos + 8]))
            pos += 8
        elif wire == 2:
            size = varint()
            if pos + size > n:
                raise ValueError("truncated field")
            out.append((field, data[pos:pos + size]))
            pos += size
        elif wire == 5:
            out.append((field, data[pos:pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def read_sentencepiece_model(data: bytes, source: str = SPM_MODEL_FILE) -> SentencePieceModel:
    """Parse a SentencePiece ``tokenizer.model`` (its ``ModelProto``)."""
    try:
        fields = _proto_fields(data)
        pieces: List[Tuple[str, float, int]] = []
        trainer: Dict[int, Any] = {}
        normalizer: Dict[int, Any] = {}
        for num, value in fields:
            if num == 1:  # SentencePiece {piece = 1, score = 2, type = 3}
                piece, score, typ = "", 0.0, 1
                for f, v in _proto_fields(value):
                    if f == 1:
                        piece = v.decode("utf-8")
                    elif f == 2:
                        score = struct.unpack("<f", v)[0]
                    elif f == 3:
                        typ = v
                pieces.append((piece, score, typ))
            elif num == 2:
                trainer.update(_proto_fields(value))
            elif num == 3:
                normalizer.update(_proto_fields(value))
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{source} is not a SentencePiece model: {e}") from None
    if not pieces:
        raise ValueError(f"{source} is not a SentencePiece model: it has no pieces")

    def signed(v: Any, default: int) -> int:
        return default if v is None else (v - (1 << 64) if v >= 1 << 63 else v)

    return SentencePieceModel(
        pieces=pieces, model_type=trainer.get(3, 1), byte_fallback=bool(trainer.get(35, 0)),
        add_dummy_prefix=bool(normalizer.get(3, 1)),
        special_ids={"unk_id": signed(trainer.get(40), 0), "bos_id": signed(trainer.get(41), 1),
                     "eos_id": signed(trainer.get(42), 2), "pad_id": signed(trainer.get(43), -1)})


def _spm_tokenizer_json(spm: SentencePieceModel, source: str) -> Dict[str, Any]:
    """The tokenizer.json transformers converts a SentencePiece BPE model into (vocabulary,
    merges in the order of the merged token's id, control and user-defined pieces as added
    tokens); the class named by tokenizer_config.json supplies the pipeline."""
    if spm.model_type != 2:
        raise ValueError(f"{source}: SentencePiece model type {spm.model_type} is not supported; supported: 2 (BPE)")
    tokens = [p for p, _, _ in spm.pieces]
    return {
        "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [list(m) for m in merges_from_vocab(tokens)]},
        "added_tokens": [{"id": i, "content": p, "special": t == CONTROL, "normalized": False}
                         for i, (p, _, t) in enumerate(spm.pieces) if t in (CONTROL, USER_DEFINED)],
        "post_processor": None,
    }


# ---- directories

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _read_config(d: Path) -> Dict[str, Any]:
    """tokenizer_config.json, with special_tokens_map.json's names for keys it lacks and
    chat_template.jinja (transformers 5 writes the template there)."""
    config: Dict[str, Any] = _read_json(d / HF_TOKENIZER_CONFIG) if (d / HF_TOKENIZER_CONFIG).is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{d / HF_TOKENIZER_CONFIG} must hold a JSON object")
    if (d / "special_tokens_map.json").is_file():
        for key, value in _read_json(d / "special_tokens_map.json").items():
            if key in _NAMED:
                config.setdefault(key, value)
    if (d / "chat_template.jinja").is_file():
        config["chat_template"] = (d / "chat_template.jinja").read_text(encoding="utf-8")
    return config


def _load_tokenizer_json(d: Path) -> Union[BPETokenizer, SentencePieceBPETokenizer]:
    obj = _read_json(d / HF_TOKENIZER_FILE)
    if not isinstance(obj, dict) or "model" not in obj:
        raise ValueError(f"{d / HF_TOKENIZER_FILE} is not a tokenizer.json (no model)")
    return tokenizer_from_hf_json(obj, _read_config(d), str(d / HF_TOKENIZER_FILE))


def _load_spm_model(d: Path) -> Union[BPETokenizer, SentencePieceBPETokenizer]:
    path = d / SPM_MODEL_FILE
    spm = read_sentencepiece_model(path.read_bytes(), str(path))
    config = _read_config(d)
    config.setdefault("tokenizer_class", "LlamaTokenizer")
    if _class_name(config, str(path)) not in ("LlamaTokenizer", "GemmaTokenizer"):
        raise ValueError(f"{path}: a tokenizer.model without tokenizer.json loads as LlamaTokenizer or "
                         f"GemmaTokenizer; tokenizer_config.json says {config['tokenizer_class']!r}")
    return tokenizer_from_hf_json(_spm_tokenizer_json(spm, str(path)), config, str(path), use_config_flags=True)


def _load_gpt2_files(d: Path) -> BPETokenizer:
    config = _read_config(d)
    vocab = _read_json(d / "vocab.json")
    lines = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [m for m in lines if m and not m.startswith("#version")]
    specials = [t for t in ("<|endoftext|>",) if t in vocab]
    obj = {"model": {"type": "BPE", "vocab": vocab, "merges": merges},
           "added_tokens": [{"id": vocab[t], "content": t, "special": True} for t in specials],
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "decoder": {"type": "ByteLevel"}, "post_processor": None}
    if not config and specials:
        config = {"bos_token": specials[0], "eos_token": specials[0]}
    return bpe_from_hf_json(obj, config, str(d / "vocab.json"))


@dataclass(frozen=True)
class TokenizerFormat:
    """One way a directory can hold a tokenizer: the file that marks it and its loader."""

    name: str
    marker: str  # the file whose presence selects this format
    load: Callable[[Path], Tokenizer]
    also: Tuple[str, ...] = ()  # other files it needs


# In order of preference: the first format whose files a directory has is the one loaded.
TOKENIZER_FORMATS: List[TokenizerFormat] = [
    TokenizerFormat("pyllm char tokenizer", CHAR_TOKENIZER_FILE,
                    lambda d: CharTokenizer.from_json((d / CHAR_TOKENIZER_FILE).read_text(encoding="utf-8"),
                                                      str(d / CHAR_TOKENIZER_FILE))),
    TokenizerFormat("Hugging Face tokenizer.json", HF_TOKENIZER_FILE, _load_tokenizer_json),
    TokenizerFormat("SentencePiece tokenizer.model", SPM_MODEL_FILE, _load_spm_model),
    TokenizerFormat("GPT-2 vocab.json + merges.txt", "vocab.json", _load_gpt2_files, also=("merges.txt",)),
]


def _format_of(d: Path) -> Optional[TokenizerFormat]:
    for fmt in TOKENIZER_FORMATS:
        if (d / fmt.marker).is_file() and all((d / f).is_file() for f in fmt.also):
            return fmt
    return None


def find_tokenizer(directory: PathLike) -> Optional[Path]:
    """The tokenizer file a model directory holds (see :data:`TOKENIZER_FORMATS`), or None."""
    d = Path(directory)
    fmt = _format_of(d)
    return d / fmt.marker if fmt is not None else None


def load_hf_tokenizer(directory: PathLike) -> Tokenizer:
    """The tokenizer of a model directory, as ``transformers.AutoTokenizer.from_pretrained``
    builds it (module docstring).

    >>> tok = load_hf_tokenizer("path/to/Mistral-7B-v0.1")     # doctest: +SKIP
    """
    d = Path(os.fspath(directory)).expanduser()
    fmt = _format_of(d)
    if fmt is None:
        looked = ", ".join(" + ".join((f.marker,) + f.also) for f in TOKENIZER_FORMATS)
        raise FileNotFoundError(f"no tokenizer in {d} (looked for {looked})")
    return fmt.load(d)


def load_tokenizer(path: PathLike) -> Tokenizer:
    """The tokenizer at ``path``: a model directory (:func:`load_hf_tokenizer`; a directory
    with only a .gguf file uses that), a ``tokenizer.json`` / ``char_tokenizer.json`` file,
    a ``.gguf`` file, or a registered model name (see :mod:`pyllm.hub`)."""
    p = Path(os.fspath(path)).expanduser()
    if p.is_dir():
        if _format_of(p) is not None:
            return load_hf_tokenizer(p)
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return load_gguf_tokenizer(ggufs[0])
        return load_hf_tokenizer(p)  # raises, naming what it looked for
    if p.is_file() and p.suffix == ".json":
        obj = _read_json(p)
        if isinstance(obj, dict) and obj.get("format") == "pyllm-char":
            return CharTokenizer.from_json(p.read_text(encoding="utf-8"), str(p))
        if p.name == "vocab.json":
            return _load_gpt2_files(p.parent)
        if not isinstance(obj, dict) or "model" not in obj:
            raise ValueError(f"{p} is neither a tokenizer.json nor a pyllm character tokenizer")
        return tokenizer_from_hf_json(obj, _read_config(p.parent), str(p))
    if p.is_file():
        return load_gguf_tokenizer(p)
    from ..hub import resolve_model_file

    return load_gguf_tokenizer(resolve_model_file(os.fspath(path)))


def save_tokenizer(tok: Any, directory: PathLike) -> List[Path]:
    """Write ``tok`` into ``directory`` (each file atomically): a
    :class:`CharTokenizer` as char_tokenizer.json, a :class:`BPETokenizer` or
    :class:`SentencePieceBPETokenizer` as tokenizer.json + tokenizer_config.json
    (``PreTrainedTokenizerFast``: transformers reads the pipeline as written).
    Returns the paths written."""
    d = Path(directory)
    if isinstance(tok, CharTokenizer):
        return [tok.save_pretrained(d)]
    if isinstance(tok, (BPETokenizer, SentencePieceBPETokenizer)):
        write_text_atomic(d / HF_TOKENIZER_FILE, json.dumps(tokenizer_to_hf_json(tok), ensure_ascii=False))
        write_text_atomic(d / HF_TOKENIZER_CONFIG, json.dumps(_tokenizer_config(tok), ensure_ascii=False, indent=2))
        return [d / HF_TOKENIZER_FILE, d / HF_TOKENIZER_CONFIG]
    saver = getattr(tok, "save_pretrained", None)
    if callable(saver):
        saver(str(d))
        return [d]
    raise ValueError(f"cannot save a tokenizer of type {type(tok).__name__}: pyllm writes CharTokenizer, "
                     "BPETokenizer and SentencePieceBPETokenizer, or any object with a save_pretrained(directory) "
                     "method")
