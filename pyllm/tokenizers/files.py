# Tokenizers in model directories: Hugging Face tokenizer.json (byte-level BPE), GPT-2's
# vocab.json + merges.txt, and pyllm's char_tokenizer.json. Not the tokenizers themselves.
"""Reading and writing the tokenizer of a model directory.

- ``tokenizer.json`` in Hugging Face's format, for byte-level BPE (a BPE model,
  the ``ByteLevel`` pre-tokenizer with GPT-2's regex, no normalizer): what
  ``tokenizers`` / ``transformers`` write for GPT-2 and what
  :func:`save_tokenizer` writes for a :class:`BPETokenizer`, so either side
  can load the other's files.
- ``vocab.json`` + ``merges.txt``: GPT-2's original pair of files.
- ``char_tokenizer.json``: a :class:`CharTokenizer`.

>>> tok = load_tokenizer("out/shakespeare-char")          # doctest: +SKIP
>>> save_tokenizer(tok, "elsewhere")                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .._fileio import write_text_atomic
from .bpe import CONTROL, USER_DEFINED, BPETokenizer
from .char import CHAR_TOKENIZER_FILE, CharTokenizer

__all__ = ["load_tokenizer", "save_tokenizer", "find_tokenizer", "bpe_to_hf_json", "bpe_from_hf_json",
           "write_text_atomic", "HF_TOKENIZER_FILE", "CHAR_TOKENIZER_FILE"]

HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"

PathLike = Union[str, "os.PathLike[str]"]


# ---- byte-level BPE <-> tokenizer.json

def bpe_to_hf_json(tok: BPETokenizer) -> Dict[str, Any]:
    """The ``tokenizer.json`` object (Hugging Face ``tokenizers`` format) of a
    byte-level BPE tokenizer."""
    tokens: List[str] = list(tok._tokens)
    special = set(tok._special_ids)
    added_ids = sorted(tok._added.values())
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": i in special} for i in added_ids]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [m.split(" ", 1) for m in tok._merges],
        },
    }


def _tokenizer_config(tok: BPETokenizer) -> Dict[str, Any]:
    return {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
            "unk_token": tok.unk_token, "add_bos_token": tok.add_bos_token, "add_eos_token": tok.add_eos_token,
            "chat_template": tok.chat_template, "tokenizer_class": "PreTrainedTokenizerFast"}


def _merge_strings(merges: List[Any], source: str) -> List[str]:
    out = []
    for k, m in enumerate(merges):
        if isinstance(m, str) and len(m.split(" ")) == 2:
            out.append(m)
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
            out.append(f"{m[0]} {m[1]}")
        else:
            raise ValueError(f"{source}: merge {k} is {m!r}, expected 'left right' or [left, right]")
    return out


def _token_name(value: Any) -> Optional[str]:
    """A special token as tokenizer_config.json spells it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _build_bpe(vocab: Dict[str, int], merges: List[str], added: List[Tuple[int, str, bool]],
               config: Dict[str, Any], source: str) -> BPETokenizer:
    table: Dict[int, str] = {}
    for t, i in vocab.items():
        if not isinstance(i, int) or i < 0:
            raise ValueError(f"{source}: token {t!r} has id {i!r}, expected a non-negative integer")
        table[i] = t
    types: Dict[int, int] = {}
    for i, content, special in added:
        table[i] = content
        types[i] = CONTROL if special else USER_DEFINED
    n = max(table) + 1 if table else 0
    holes = [i for i in range(n) if i not in table]
    if holes:
        raise ValueError(f"{source}: token ids are not contiguous ({len(holes)} missing, first {holes[0]})")
    tokens = [table[i] for i in range(n)]
    index = {t: i for i, t in enumerate(tokens)}

    def special_id(key: str) -> Optional[int]:
        name = _token_name(config.get(key))
        if name is None:
            return None
        if name not in index:
            raise ValueError(f"{source}: {key} {name!r} is not in the vocabulary")
        return index[name]

    return BPETokenizer(
        tokens, merges, token_types=[types.get(i, 1) for i in range(n)],
        bos_token_id=special_id("bos_token"), eos_token_id=special_id("eos_token"),
        pad_token_id=special_id("pad_token"), unk_token_id=special_id("unk_token"), pre="gpt2",
        add_bos_token=bool(config.get("add_bos_token", False)), add_eos_token=bool(config.get("add_eos_token", False)),
        chat_template=config.get("chat_template") if isinstance(config.get("chat_template"), str) else None,
    )


def bpe_from_hf_json(obj: Dict[str, Any], config: Optional[Dict[str, Any]] = None,
                     source: str = HF_TOKENIZER_FILE) -> BPETokenizer:
    """A :class:`BPETokenizer` from a ``tokenizer.json`` object, when it describes
    byte-level BPE; anything else raises ValueError saying what differs.
    ``config`` is ``tokenizer_config.json`` (names the bos/eos/pad/unk tokens)."""
    model = obj.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{source}: model type {model.get('type')!r} is not supported; supported: BPE (byte-level)")
    if obj.get("normalizer") is not None:
        raise ValueError(f"{source}: a normalizer ({obj['normalizer'].get('type')}) is not supported")
    pre = obj.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space", False):
        raise ValueError(f"{source}: pre-tokenizer {pre!r} is not supported; supported: ByteLevel with "
                         "use_regex=true and add_prefix_space=false (GPT-2's)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"{source}: model.{key}={model[key]!r} is not supported")
    if model.get("dropout"):
        raise ValueError(f"{source}: BPE dropout is not supported")
    added = [(int(a["id"]), str(a["content"]), bool(a.get("special", False))) for a in obj.get("added_tokens") or []]
    config = dict(config or {})
    if not any(k in config for k in ("bos_token", "eos_token")):
        # GPT-2's files name no special tokens outside tokenizer_config.json; its one
        # special token is both bos and eos, as transformers' GPT2Tokenizer sets it.
        specials = [content for _, content, special in added if special]
        if specials == ["<|endoftext|>"]:
            config.update(bos_token=specials[0], eos_token=specials[0])
    return _build_bpe(dict(model.get("vocab") or {}), _merge_strings(list(model.get("merges") or []), source),
                      added, config, source)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _load_bpe_dir(d: Path) -> BPETokenizer:
    config = _read_json(d / HF_TOKENIZER_CONFIG) if (d / HF_TOKENIZER_CONFIG).is_file() else {}
    if (d / HF_TOKENIZER_FILE).is_file():
        return bpe_from_hf_json(_read_json(d / HF_TOKENIZER_FILE), config, str(d / HF_TOKENIZER_FILE))
    vocab = _read_json(d / "vocab.json")
    lines = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [m for m in lines if m and not m.startswith("#version")]
    added = [(vocab[t], t, True) for t in ("<|endoftext|>",) if t in vocab]
    if not config:
        config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"} if added else {}
    vocab = {t: i for t, i in vocab.items() if t not in {a[1] for a in added}}
    return _build_bpe(vocab, _merge_strings(merges, str(d / "merges.txt")), added, config, str(d / "vocab.json"))


def find_tokenizer(directory: PathLike) -> Optional[Path]:
    """The tokenizer file a model directory holds (char_tokenizer.json,
    tokenizer.json or vocab.json with merges.txt), or None."""
    d = Path(directory)
    for name in (CHAR_TOKENIZER_FILE, HF_TOKENIZER_FILE):
        if (d / name).is_file():
            return d / name
    if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        return d / "vocab.json"
    return None


def load_tokenizer(path: PathLike) -> Any:
    """The tokenizer at ``path``: a model directory (see :func:`find_tokenizer`),
    a ``char_tokenizer.json`` / ``tokenizer.json`` file, or anything
    :class:`pyllm.AutoTokenizer` opens (a GGUF file or registered name)."""
    p = Path(os.fspath(path)).expanduser()
    if p.is_dir():
        found = find_tokenizer(p)
        if found is None and not any(p.glob("*.gguf")):
            raise FileNotFoundError(f"no tokenizer in {p} (looked for {CHAR_TOKENIZER_FILE}, {HF_TOKENIZER_FILE}, "
                                    "vocab.json + merges.txt, or a .gguf file)")
        if found is not None:
            p = found
    if p.is_file() and p.suffix == ".json":
        obj = _read_json(p)
        if isinstance(obj, dict) and obj.get("format") == "pyllm-char":
            return CharTokenizer.from_json(p.read_text(encoding="utf-8"), str(p))
        if p.name == "vocab.json":
            return _load_bpe_dir(p.parent)
        if not isinstance(obj, dict) or "model" not in obj:
            raise ValueError(f"{p} is neither a tokenizer.json nor a pyllm character tokenizer")
        cfg_path = p.parent / HF_TOKENIZER_CONFIG
        config = _read_json(cfg_path) if cfg_path.is_file() else {}
        return bpe_from_hf_json(obj, config, str(p))
    from ..models.auto import AutoTokenizer

    return AutoTokenizer.from_pretrained(p if p.exists() else os.fspath(path))


def save_tokenizer(tok: Any, directory: PathLike) -> List[Path]:
    """Write ``tok`` into ``directory`` (each file atomically): a
    :class:`CharTokenizer` as char_tokenizer.json, a :class:`BPETokenizer`
    as tokenizer.json + tokenizer_config.json. Returns the paths written."""
    d = Path(directory)
    if isinstance(tok, CharTokenizer):
        return [tok.save_pretrained(d)]
    if isinstance(tok, BPETokenizer):
        write_text_atomic(d / HF_TOKENIZER_FILE, json.dumps(bpe_to_hf_json(tok), ensure_ascii=False))
        write_text_atomic(d / HF_TOKENIZER_CONFIG, json.dumps(_tokenizer_config(tok), ensure_ascii=False, indent=2))
        return [d / HF_TOKENIZER_FILE, d / HF_TOKENIZER_CONFIG]
    saver = getattr(tok, "save_pretrained", None)
    if callable(saver):
        saver(str(d))
        return [d]
    raise ValueError(f"cannot save a tokenizer of type {type(tok).__name__}: pyllm writes CharTokenizer and "
                     "BPETokenizer, or any object with a save_pretrained(directory) method")
