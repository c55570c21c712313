"""Writing quantized GGUF files (``pyllm quantize``): llama.cpp's per-tensor
type rules for each file type, metadata and tokenizer carried over, an atomic write.
Not a GGUF reader (models/gguf.py) and not the block quantizers (quant.py).

A llama.cpp file type ("Q4_K_M") names a mixture: most matrices get the
type it is named after, a few sensitive ones (attention values, some
feed-forward down projections, the output head) more bits, and a matrix
whose rows cannot be cut into the type's blocks a smaller-block stand-in.
:func:`mixture` decides those types as llama.cpp's quantizer does;
:func:`quantize` writes the file through the ``gguf`` package's writer
(``pip install 'pyllm[quantize]'``).

>>> import pyllm
>>> pyllm.quantize("model-f16.gguf", "model-q4_k_m.gguf", type="q4_k_m")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import quant

__all__ = ["FILE_TYPES", "mixture", "quantize"]


@dataclass(frozen=True)
class FileType:
    """A llama.cpp file type: its ``general.file_type`` id (LLAMA_FTYPE_*) and
    the tensor type most of its matrices get."""

    name: str
    id: int
    base: str


# the file types written here: every one llama.cpp's quantizer makes without an importance matrix
FILE_TYPES: Dict[str, FileType] = {ft.name: ft for ft in (
    FileType("F32", 0, "F32"), FileType("F16", 1, "F16"), FileType("BF16", 32, "BF16"),
    FileType("Q4_0", 2, "Q4_0"), FileType("Q4_1", 3, "Q4_1"), FileType("Q5_0", 8, "Q5_0"),
    FileType("Q5_1", 9, "Q5_1"), FileType("Q8_0", 7, "Q8_0"), FileType("Q2_K", 10, "Q2_K"),
    FileType("Q3_K_S", 11, "Q3_K"), FileType("Q3_K_M", 12, "Q3_K"), FileType("Q3_K_L", 13, "Q3_K"),
    FileType("Q4_K_S", 14, "Q4_K"), FileType("Q4_K_M", 15, "Q4_K"), FileType("Q5_K_S", 16, "Q5_K"),
    FileType("Q5_K_M", 17, "Q5_K"), FileType("Q6_K", 18, "Q6_K"), FileType("IQ4_NL", 25, "IQ4_NL"),
    FileType("IQ4_XS", 30, "IQ4_XS"),
)}

_PLAIN = ("F32", "F16", "BF16")
# what a type becomes when a row's length is not a multiple of its block (256 for these)
_STAND_IN = {"IQ4_XS": "IQ4_NL", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# weights kept as they are although they are matrices named *weight (small, or read by position)
_KEEP = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
         "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
         "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
         "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
         "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
         "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
         "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", ".rel_pos", ".patch_embd",
         ".patch_merger")
_KEEP_NAMES = ("position_embd.weight", "token_types.weight")
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Hyper:
    """What the rules read of a model: its architecture and sizes."""

    arch: str  # general.architecture
    n_layer: int  # block_count
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0


def _quantizable(name: str, ndim: int) -> bool:
    return (ndim >= 2 and name.endswith("weight") and name not in _KEEP_NAMES
            and not any(k in name for k in _KEEP))


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part in ("attn_qkv", "attn_kv_b", "attn_v", "attn_k", "attn_q", "attn_output"):
        if f"{part}.weight" in name:
            return part
    for part in ("ffn_up", "ffn_gate", "ffn_down"):
        if part in name:
            return part
    return "other"


def _more_bits(i: int, n: int) -> bool:
    """The layers a K mixture gives more bits: the first and last eighth and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _layer_sort_key(name: str) -> Tuple[int, str]:
    m = _LAYER.match(name)
    return (int(m.group(1)) if m else -1, name)


class _Rules:
    """llama.cpp's choice of a type per tensor for one file type, walked in its
    order (by layer, then name): the attention-value and ffn_down counters
    advance per tensor seen."""

    def __init__(self, ft: FileType, hp: Hyper, tied: bool, n_attn_v: int):
        self.ft, self.hp, self.tied = ft.name, hp, tied
        self.n_v, self.i_v, self.i_down = n_attn_v, 0, 0
        self.falcon = hp.arch == "falcon"
        # llama's 70B (80 layers, grouped-query attention): its attention values are 8x smaller than the queries
        self.is_70b = hp.arch == "llama" and hp.n_layer == 80 and hp.n_head != hp.n_head_kv

    def _layer(self, counter: int, name: str) -> Tuple[int, int]:
        if self.hp.n_expert > 1:  # expert tensors are not in layer order: read the layer from the name
            m = _LAYER.match(name)
            if m is None or not 0 <= int(m.group(1)) < self.hp.n_layer:
                raise ValueError(f"cannot tell the layer of tensor {name} ({self.hp.n_layer} layers)")
            return int(m.group(1)), self.hp.n_layer
        return counter, self.hp.n_layer

    def choose(self, name: str, cols: int) -> str:
        ft, hp, t = self.ft, self.hp, FILE_TYPES[self.ft].base
        if ft in _PLAIN:
            return t
        cat = _category(name)
        if cat == "output" or (self.tied and cat == "token_embd"):
            if self.falcon or cols % quant.BLOCK_SIZES[t]:
                t = "Q8_0"
            elif t != "Q8_0":
                t = "Q6_K"
        elif cat == "token_embd":
            pass
        elif cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            if ft == "Q2_K":
                t = "Q4_K" if hp.n_gqa >= 4 else "Q3_K"
            elif ft == "Q3_K_M":
                t = "Q5_K" if self.i_v < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                t = "Q5_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and hp.n_gqa >= 4:
                t = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and _more_bits(self.i_v, self.n_v):
                t = "Q6_K"
            elif ft == "Q4_K_S" and self.i_v < 4:
                t = "Q5_K"
            if self.is_70b and t in ("Q3_K", "Q4_K"):
                t = "Q5_K"
            if hp.n_expert == 8:
                t = "Q8_0"
            self.i_v += 1
        elif cat == "attn_k":
            if hp.n_expert == 8:
                t = "Q8_0"
        elif cat == "ffn_down":
            i, n = self._layer(self.i_down, name)
            if ft == "Q2_K":
                t = "Q3_K"
            elif ft == "Q3_K_M":
                t = "Q5_K" if i < n // 16 else "Q4_K" if not self.falcon or _more_bits(i, n) else "Q3_K"
            elif ft == "Q3_K_L":
                t = "Q4_K" if self.falcon else "Q5_K"
            elif ft == "Q4_K_M":
                if self.falcon:
                    t = "Q6_K" if i < n // 16 else "Q5_K" if _more_bits(i, n) else "Q4_K"
                elif _more_bits(i, n):
                    t = "Q6_K"
            elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS"):
                t = "Q5_K"
            elif ft == "Q5_K_M" and _more_bits(i, n):
                t = "Q6_K"
            elif ft == "Q4_K_S" and not self.falcon and i < n // 8:
                t = "Q5_K"
            self.i_down += 1
        elif cat == "attn_output":
            if self.falcon:
                if ft == "Q3_K_L":
                    t = "Q4_K"
            elif hp.n_expert == 8:
                if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                    t = "Q5_K"
            else:
                t = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ft, t)
        return self._fit(t, cols)

    @staticmethod
    def _fit(t: str, cols: int) -> str:
        """``t``, or its stand-in when a row of ``cols`` is not whole blocks of it (F16 as a last resort)."""
        if cols % quant.BLOCK_SIZES[t] == 0:
            return t
        t = _STAND_IN.get(t, t)
        return t if cols % quant.BLOCK_SIZES[t] == 0 else "F16"


def _file_type(type: str) -> FileType:
    ft = FILE_TYPES.get(str(type).upper())
    if ft is None:
        raise ValueError(f"unknown file type {type!r}; pyllm quantize writes {', '.join(FILE_TYPES)}")
    return ft


def mixture(tensors: Sequence[Tuple[str, Sequence[int], str]], type: str, hp: Hyper) -> Dict[str, str]:
    """The type each tensor gets in a file of ``type`` (a name of :data:`FILE_TYPES`),
    by llama.cpp's rules; ``tensors`` lists (name, shape with the row length last,
    current type). Tensors that are not quantized (vectors, norms, position
    tables) keep their type. Returned in the order the file holds them.

    >>> hp = Hyper("llama", n_layer=1, n_head=4, n_head_kv=4)
    >>> mixture([("blk.0.attn_v.weight", (256, 256), "F16"), ("blk.0.attn_norm.weight", (256,), "F32"),
    ...          ("blk.0.attn_q.weight", (256, 576), "F16")], "Q4_K_M", hp)
    {'blk.0.attn_norm.weight': 'F32', 'blk.0.attn_q.weight': 'Q5_0', 'blk.0.attn_v.weight': 'Q6_K'}
    """
    ft = _file_type(type)
    order = sorted(tensors, key=lambda t: _layer_sort_key(t[0]))
    names = [t[0] for t in order]
    n_v = sum(_category(n) in ("attn_v", "attn_qkv", "attn_kv_b") for n in names)
    rules = _Rules(ft, hp, tied="output.weight" not in names, n_attn_v=n_v)
    out: Dict[str, str] = {}
    for name, shape, current in order:
        out[name] = rules.choose(name, int(shape[-1])) if _quantizable(name, len(shape)) else current
    return out


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class _Tensor:
    name: str
    shape: Tuple[int, ...]  # numpy order: the row length last
    type: str  # GGUF type name of the stored data
    raw: Callable[[], np.ndarray]  # the stored bytes (uint8), or float32 values for type F32


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as e:
        raise ImportError("writing GGUF files needs the gguf package: pip install 'pyllm[quantize]' "
                          "(or pip install gguf)") from e
    return gguf


# metadata the writer sets itself, or that describes the source file rather than the model
_DROPPED_KEYS = ("general.architecture", "general.alignment", "general.file_type", "general.quantization_version",
                 "split.no", "split.count", "split.tensors.count")


def _gguf_metadata(path: str) -> Tuple[List[Tuple[str, Any, Any, Any]], int]:
    """Every metadata key of a GGUF file with its GGUF value type (strings as their
    bytes, so nothing is re-encoded), and the file's alignment."""
    gguf = _gguf()
    VT = gguf.GGUFValueType
    reader = gguf.GGUFReader(path)
    keys: List[Tuple[str, Any, Any, Any]] = []
    alignment = 32
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's view of the header
        if name == "general.alignment":
            alignment = int(field.parts[-1][0])
        if name in _DROPPED_KEYS:
            continue
        main = field.types[0]
        if main == VT.ARRAY:
            if len(field.types) > 2:
                raise ValueError(f"metadata key {name} of {path} is an array of arrays, which pyllm quantize "
                                 "does not copy")
            sub = field.types[-1] if len(field.types) > 1 else VT.INT32
            if sub == VT.STRING:
                val: Any = [bytes(field.parts[i]) for i in field.data]
            else:
                val = [v for i in field.data for v in field.parts[i].tolist()]
            keys.append((name, val, main, sub))
        elif main == VT.STRING:
            keys.append((name, bytes(field.parts[-1]), main, None))
        else:
            keys.append((name, field.parts[-1][0].item(), main, None))
    return keys, alignment


def _read_gguf(path: str) -> Tuple[str, List[Tuple[str, Any, Any, Any]], int, List[_Tensor], Hyper]:
    from .models.gguf import GGUFFile

    f = GGUFFile(path)
    md = f.metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise ValueError(f"{path} has no general.architecture")
    keys, alignment = _gguf_metadata(path)

    def first(key: str, default: int) -> int:
        v = md.get(f"{arch}.{key}", default)
        return int(np.asarray(v).reshape(-1)[0]) if np.size(v) else default

    n_head = first("attention.head_count", 0)
    hp = Hyper(arch, n_layer=first("block_count", 0), n_head=n_head,
               n_head_kv=first("attention.head_count_kv", n_head), n_expert=first("expert_count", 0))
    def reader(name: str) -> Callable[[], np.ndarray]:
        return lambda: f.tensor_bytes(name)

    tensors = [_Tensor(t.name, tuple(t.shape), t.type_name, reader(t.name)) for t in f.tensors.values()]
    return arch, keys, alignment, tensors, hp


# Hugging Face GPT-2 (transformers' names, Conv1D weights stored (in, out)) -> GGUF's names, as
# llama.cpp's converter writes them; True: the matrix is transposed to (out, in)
_GPT2_GLOBAL = {"wte.weight": ("token_embd.weight", False), "wpe.weight": ("position_embd.weight", False),
                "ln_f.weight": ("output_norm.weight", False), "ln_f.bias": ("output_norm.bias", False)}
_GPT2_LAYER = {"ln_1": "attn_norm", "ln_2": "ffn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
               "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
_GPT2_SKIP = re.compile(r"(^|\.)attn\.(masked_)?bias$|^lm_head\.weight$")
_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_USER, _TOKEN_UNUSED = 1, 3, 4, 5


# the byte-level split of a tokenizer.json (pyllm.tokenizers.files) -> the tokenizer.ggml.pre llama.cpp writes
_PRE_NAMES = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2", "gpt2-digits": "smollm"}


def _hf_tokenizer_keys(d: Path, config: Dict[str, Any], arch: str) -> List[Tuple[str, Any, str, Optional[str]]]:
    """The tokenizer.ggml.* keys of a byte-level BPE tokenizer.json (GPT-2's, Llama 3's or Qwen2's
    split): the vocabulary and token types here, the merges, special ids, add-BOS/EOS flags and chat
    template as the gguf package's SpecialVocab reads them (llama.cpp's converter uses it too)."""
    import json

    from .tokenizers.files import _pre_tokenizer_split

    tj = d / "tokenizer.json"
    if not tj.is_file():
        raise ValueError(f"{d} has no tokenizer.json: a GGUF file needs a byte-level BPE tokenizer "
                         "(pyllm train --tokenizer bpe writes one; a character tokenizer has no GGUF form)")
    tok = json.loads(tj.read_text(encoding="utf-8"))
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{tj} is a {model.get('type')} tokenizer: pyllm quantize converts byte-level BPE "
                         "tokenizers and SentencePiece tokenizer.model files; convert this model with llama.cpp's "
                         "convert_hf_to_gguf.py first")
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not any(isinstance(p, dict) and p.get("type") == "ByteLevel" for p in steps or []):
        raise ValueError(f"{tj} is a SentencePiece-style tokenizer (no ByteLevel pre-tokenizer) and {d} has no "
                         "tokenizer.model: pyllm quantize converts byte-level BPE tokenizers and SentencePiece "
                         "tokenizer.model files; convert this model with llama.cpp's convert_hf_to_gguf.py first")
    split = _pre_tokenizer_split(pre, str(tj))
    by_id: Dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    special: Dict[int, bool] = {}
    for a in tok.get("added_tokens") or []:
        by_id[int(a["id"])] = a["content"]
        special[int(a["id"])] = bool(a.get("special"))
    n = max(int(config.get("vocab_size") or 0), max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(_TOKEN_UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(_TOKEN_NORMAL if i not in special else _TOKEN_CONTROL if special[i] else _TOKEN_USER)
    keys: List[Tuple[str, Any, str, Optional[str]]] = [
        ("tokenizer.ggml.model", "gpt2", "STRING", None), ("tokenizer.ggml.pre", _PRE_NAMES[split], "STRING", None),
        ("tokenizer.ggml.tokens", tokens, "ARRAY", "STRING"), ("tokenizer.ggml.token_type", types, "ARRAY", "INT32")]
    return keys + _special_vocab_keys(d, arch, n, merges=True)


def _special_vocab_keys(d: Path, arch: str, n: int, merges: bool) -> List[Tuple[str, Any, str, Optional[str]]]:
    """The tokenizer keys the gguf package's SpecialVocab reads from a directory (special ids,
    add-BOS/EOS flags, the chat template and, with ``merges``, the BPE merges), as llama.cpp's
    converter writes them."""
    gguf = _gguf()
    scratch = gguf.GGUFWriter(None, arch)  # never opened: it only collects the keys
    log = logging.getLogger("gguf.vocab")
    level = log.level
    log.setLevel(logging.ERROR)  # its notes on a template's pair separator are not the user's concern
    try:
        gguf.SpecialVocab(d, load_merges=merges, n_vocab=n).add_to_gguf(scratch, quiet=True)
    finally:
        log.setLevel(level)
    keys: List[Tuple[str, Any, str, Optional[str]]] = []
    for key, v in scratch.kv_data[0].items():
        if key.startswith("tokenizer.") and key != "tokenizer.ggml.pre":
            value = v.value
            sub = None
            if v.type == gguf.GGUFValueType.ARRAY:
                value, sub = list(value), "STRING" if key == "tokenizer.ggml.merges" else None
                if sub is None:
                    raise ValueError(f"{d}: unexpected tokenizer array {key}")
            keys.append((key, value, v.type.name, sub))
    return keys


def _looks_special(token: str) -> bool:
    """An added token llama.cpp's converter makes a control token though its directory does not
    mark it special: <|...|> and a few names models leave unmarked."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def _hf_spm_tokenizer_keys(d: Path, config: Dict[str, Any], arch: str,
                           phi3: bool = False) -> List[Tuple[str, Any, str, Optional[str]]]:
    """The tokenizer.ggml.* keys of a SentencePiece tokenizer.model (Llama 2's, Mistral's) as
    llama.cpp's converter writes them: the pieces, scores and types, then the tokens of
    added_tokens.json (user-defined) and tokenizer_config.json's added_tokens_decoder (control
    when special or special-looking, else user-defined with their ▁ as spaces), those scored
    -1000; ids up to config.json's vocab_size the model lacks as unused [PAD<i>] tokens scored
    -10000; special ids, flags and template through SpecialVocab. Phi-3's converter differs: an added
    token is control only when marked special, keeps its ▁, and tokenizer.json's added tokens count
    too."""
    import json

    from .tokenizers.files import read_sentencepiece_model

    path = d / "tokenizer.model"
    spm = read_sentencepiece_model(path.read_bytes(), str(path))
    n = int(config.get("vocab_size") or len(spm.pieces))
    tokens = [f"[PAD{i}]" for i in range(n)]
    scores = [-10000.0] * n
    types = [_TOKEN_UNUSED] * n
    for i, (piece, score, kind) in enumerate(spm.pieces[:n]):
        tokens[i], scores[i] = piece, score
        types[i] = kind if kind in (2, 3, 5, 6) else _TOKEN_NORMAL  # unknown, control, unused, byte
    added = d / "added_tokens.json"
    if added.is_file():
        for text, i in json.loads(added.read_text(encoding="utf-8")).items():
            if 0 <= int(i) < n:
                tokens[int(i)], scores[int(i)], types[int(i)] = text, -1000.0, _TOKEN_USER
    tc = d / "tokenizer_config.json"
    decoder = json.loads(tc.read_text(encoding="utf-8")).get("added_tokens_decoder", {}) if tc.is_file() else {}
    entries = list(decoder.items())
    tj = d / "tokenizer.json"
    if phi3 and tj.is_file():
        entries += [(a["id"], a) for a in json.loads(tj.read_text(encoding="utf-8")).get("added_tokens") or []]
    for key, data in entries:
        i, text = int(key), data["content"]
        if not 0 <= i < n:
            continue
        if phi3:
            types[i] = _TOKEN_CONTROL if data.get("special") else _TOKEN_USER
        elif data.get("special") or _looks_special(text):
            types[i] = _TOKEN_CONTROL
        else:
            text, types[i] = text.replace("\u2581", " "), _TOKEN_USER
        tokens[i], scores[i] = text, -1000.0
    keys: List[Tuple[str, Any, str, Optional[str]]] = [
        ("tokenizer.ggml.model", "llama", "STRING", None), ("tokenizer.ggml.pre", "default", "STRING", None),
        ("tokenizer.ggml.tokens", tokens, "ARRAY", "STRING"), ("tokenizer.ggml.scores", scores, "ARRAY", "FLOAT32"),
        ("tokenizer.ggml.token_type", types, "ARRAY", "INT32")]
    return keys + _special_vocab_keys(d, arch, n, merges=False)


def _read_hf_gpt2(d: Path, ck: Any) -> Tuple[str, List[Tuple[str, Any, Any, Any]], int, List[_Tensor], Hyper]:
    """A Hugging Face GPT-2 directory (such as ``pyllm train`` writes) as llama.cpp's converter
    would write it: GGUF names and metadata, weights as stored (float32)."""
    cfg = ck.config

    def size(key: str, default: Optional[int] = None) -> int:
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{d}/config.json: {key} must be a positive integer, got {v!r}")
        return v

    C, L = size("n_embd"), size("n_layer")
    md: List[Tuple[str, Any, str, Optional[str]]] = [
        ("general.type", "model", "STRING", None), ("general.name", d.resolve().name, "STRING", None),
        ("gpt2.block_count", L, "UINT32", None), ("gpt2.context_length", size("n_positions", 1024), "UINT32", None),
        ("gpt2.embedding_length", C, "UINT32", None),
        ("gpt2.feed_forward_length", int(cfg.get("n_inner") or 4 * C), "UINT32", None),
        ("gpt2.attention.head_count", size("n_head"), "UINT32", None),
        ("gpt2.attention.layer_norm_epsilon", float(cfg.get("layer_norm_epsilon", 1e-5)), "FLOAT32", None)]
    md += _hf_tokenizer_keys(d, cfg, "gpt2")
    VT = _gguf().GGUFValueType
    keys = [(k, v.encode("utf-8") if isinstance(v, str) else v, VT[t], VT[s] if s else None) for k, v, t, s in md]
    tensors = []
    layer = re.compile(r"^h\.(\d+)\.(.+)\.(weight|bias)$")
    for full in ck.names:
        name = full[len("transformer."):] if full.startswith("transformer.") else full
        if _GPT2_SKIP.search(name):
            continue
        m = layer.match(name)
        if name in _GPT2_GLOBAL:
            gguf_name, transpose = _GPT2_GLOBAL[name]
        elif m and m.group(2) in _GPT2_LAYER:
            gguf_name = f"blk.{int(m.group(1))}.{_GPT2_LAYER[m.group(2)]}.{m.group(3)}"
            transpose = m.group(3) == "weight" and m.group(2) not in ("ln_1", "ln_2")
        else:
            raise ValueError(f"tensor {full} in {d} is not a GPT-2 tensor pyllm quantize knows")
        shape = ck.shape(full)
        shape = tuple(reversed(shape)) if transpose else tuple(shape)

        def raw(full: str = full, transpose: bool = transpose) -> np.ndarray:
            x = ck.float32(full)
            return np.ascontiguousarray(x.T if transpose else x)

        tensors.append(_Tensor(gguf_name, shape, "F32", raw))
    return "gpt2", keys, 32, tensors, Hyper("gpt2", n_layer=L, n_head=size("n_head"), n_head_kv=size("n_head"))


# Hugging Face model_type -> general.architecture of the decoder directories converted here
_HF_DECODERS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
                "gemma3_text": "gemma3", "phi3": "phi3"}
_Key = Tuple[str, Any, str, Optional[str]]


def _permute_rope_rows(x: np.ndarray, heads: int) -> np.ndarray:
    """HF's half-split RoPE rows of each head (i, i + d/2) -> interleaved pairs (2i, 2i + 1), the order
    of llama.cpp's ``llama`` files (its NORM RoPE rotates neighbours)."""
    rows = x.shape[0]
    if rows % (2 * heads):
        raise ValueError(f"a RoPE projection of {rows} rows does not split into {heads} heads of pairs")
    half = rows // heads // 2
    return np.ascontiguousarray(x.reshape(heads, 2, half, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape))


def _llama_family_keys(d: Path, src: Any, sz: Dict[str, Any], arch: str) -> Tuple[List[_Key], Optional[np.ndarray]]:
    """llama / qwen2 / qwen3 keys past the common sizes, and Llama 3's RoPE factors (or None)."""
    from .models.decoder import llama3_factors
    from .models.mapping import hf_activation, hf_rope

    hf_activation(src, ("silu",))
    mt = src.get("model_type")
    window = src.get("sliding_window", None)
    if window and src.get("use_sliding_window", mt in ("llama", "mistral")) and int(window) < sz["context"]:
        raise ValueError(f"{d}/config.json: sliding_window={window} has no key in llama.cpp's {arch} files; "
                         "pyllm quantize does not convert it")
    theta, params = hf_rope(src)
    kind, hd = params["rope_type"], sz["head_dim"]
    md: List[_Key] = [(f"{arch}.rope.freq_base", theta, "FLOAT32", None),
                      (f"{arch}.attention.key_length", hd, "UINT32", None),
                      (f"{arch}.attention.value_length", hd, "UINT32", None)]
    if arch == "llama":
        md += [("llama.vocab_size", sz["vocab_size"], "UINT32", None),
               ("llama.rope.dimension_count", hd, "UINT32", None)]
    if kind == "linear":
        md += [(f"{arch}.rope.scaling.type", "linear", "STRING", None),
               (f"{arch}.rope.scaling.factor", float(params["factor"]), "FLOAT32", None)]
    elif kind == "llama3" and arch == "llama":
        return md, llama3_factors(hd, theta, params)
    elif kind != "default":
        raise ValueError(f"{d}/config.json: rope_type {kind!r} is not converted by pyllm quantize; "
                         "supported: default, linear, llama3 (llama)")
    return md, None


def _gemma_keys(d: Path, src: Any, sz: Dict[str, Any], arch: str) -> List[_Key]:
    """gemma2 / gemma3 keys past the common sizes. llama.cpp's files carry no layer pattern (its
    default: gemma2 alternates from a sliding layer 0, gemma3 has 5 sliding layers to 1 global) and
    no query scale (1/sqrt(key_length)): directories that differ are refused, not mis-converted."""
    from .models.gemma2 import hf_layer_types
    from .models.gemma3 import hf_rope_by_type
    from .models.mapping import hf_activation, hf_rope

    hf_activation(src, ("gelu_pytorch_tanh", "gelu_tanh"))
    hd, L = sz["head_dim"], sz["n_layer"]
    pattern = 2 if arch == "gemma2" else 6
    types = hf_layer_types(src, L, int(src.get("sliding_window_pattern", pattern)))
    if types != ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]:
        raise ValueError(f"{d}/config.json: layer_types are not {arch}'s pattern of {pattern - 1} sliding layer(s) "
                         f"to 1 global, the only one llama.cpp's {arch} files express")
    scalar = float(src.get("query_pre_attn_scalar", hd))
    if scalar != hd:
        raise ValueError(f"{d}/config.json: query_pre_attn_scalar={scalar:g} is not head_dim={hd}: llama.cpp's "
                         f"{arch} files scale attention by 1/sqrt(head_dim)")
    md: List[_Key] = [(f"{arch}.attention.key_length", hd, "UINT32", None),
                      (f"{arch}.attention.value_length", hd, "UINT32", None),
                      (f"{arch}.attention.sliding_window", int(src.get("sliding_window")), "UINT32", None)]
    if arch == "gemma2":
        for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
            v = src.get(cap, None)
            if v is None:  # llama.cpp's gemma2 always caps, with 50 / 30 when the key is absent
                raise ValueError(f"{d}/config.json: {cap} is not set; llama.cpp's gemma2 files always cap")
            md.append((f"gemma2.{cap}", float(v), "FLOAT32", None))
        theta, params = hf_rope(src)
        if params["rope_type"] != "default":
            raise ValueError(f"{d}/config.json: rope_type {params['rope_type']!r}: gemma2 files have no RoPE scaling")
        if theta != 10000.0:
            md.append(("gemma2.rope.freq_base", theta, "FLOAT32", None))
        return md
    for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
        if src.get(cap, None):
            raise ValueError(f"{d}/config.json: {cap} is not part of Gemma 3 as pyllm runs it")
    rope = hf_rope_by_type(src)
    (g_theta, g_scale), (l_theta, l_scale) = rope["full_attention"], rope["sliding_attention"]
    if l_scale != 1.0:
        raise ValueError(f"{d}/config.json: scaled RoPE on sliding layers has no key in llama.cpp's gemma3 files")
    md += [("gemma3.rope.freq_base", g_theta, "FLOAT32", None), ("gemma3.rope.freq_base_swa", l_theta, "FLOAT32", None)]
    if g_scale != 1.0:
        md += [("gemma3.rope.scaling.type", "linear", "STRING", None),
               ("gemma3.rope.scaling.factor", g_scale, "FLOAT32", None)]
    return md


def _phi3_keys(d: Path, src: Any, sz: Dict[str, Any]) -> List[_Key]:
    """phi3 keys past the common sizes: the rotated dimensions, the window (0: none), no key_length."""
    from .models.mapping import hf_activation, hf_rope

    hf_activation(src, ("silu",))
    theta, params = hf_rope(src)
    if params["rope_type"] != "default":
        raise ValueError(f"{d}/config.json: rope_type {params['rope_type']!r} (LongRoPE / scaled Phi-3) is not "
                         "converted by pyllm quantize, which does not run it either")
    rot = float(src.get("partial_rotary_factor", params.get("partial_rotary_factor", 1.0)))
    if sz["head_dim"] * sz["n_head"] != sz["hidden_size"]:
        raise ValueError(f"{d}/config.json: head_dim x num_attention_heads is not hidden_size; llama.cpp's phi3 "
                         "files have no key_length")
    original = int(src.get("original_max_position_embeddings", sz["context"]))
    return [("phi3.rope.scaling.original_context_length", original, "UINT32", None),
            ("phi3.rope.dimension_count", int(rot * sz["hidden_size"]) // sz["n_head"], "UINT32", None),
            ("phi3.rope.freq_base", theta, "FLOAT32", None),
            ("phi3.attention.sliding_window", int(src.get("sliding_window", 0) or 0), "UINT32", None)]


def _read_hf_decoder(d: Path, ck: Any) -> Tuple[str, List[Tuple[str, Any, Any, Any]], int, List[_Tensor], Hyper]:
    """A Hugging Face llama / mistral / qwen2 / qwen3 / gemma2 / gemma3_text / phi3 directory as
    llama.cpp's converter writes it: GGUF names and metadata, Q/K rows permuted for ``llama``, Llama
    3's RoPE factors as ``rope_freqs.weight``, Gemma's norms stored as 1 + w (added in float32, where
    llama.cpp adds in the checkpoint's dtype), Phi-3's fused matrices kept fused (gate|up as
    ``ffn_up``), other weights as stored."""
    from .models.gemma2 import GEMMA_LAYER
    from .models.mapping import _LAYER as _HF_LAYER
    from .models.mapping import LLAMA_GLOBAL, LLAMA_IGNORED, LLAMA_LAYER, HFSource, hf_sizes
    from .models.phi3 import PHI3_LAYER

    cfg = ck.config
    mt = cfg.get("model_type")
    arch = _HF_DECODERS[mt]
    gemma = arch in ("gemma2", "gemma3")
    src = HFSource(ck)
    sz = hf_sizes(src)
    md: List[_Key] = [
        ("general.type", "model", "STRING", None), ("general.name", d.resolve().name, "STRING", None),
        (f"{arch}.block_count", sz["n_layer"], "UINT32", None),
        (f"{arch}.context_length", sz["context"], "UINT32", None),
        (f"{arch}.embedding_length", sz["hidden_size"], "UINT32", None),
        (f"{arch}.feed_forward_length", sz["ffn_size"], "UINT32", None),
        (f"{arch}.attention.head_count", sz["n_head"], "UINT32", None),
        (f"{arch}.attention.head_count_kv", sz["n_kv_head"], "UINT32", None),
        (f"{arch}.attention.layer_norm_rms_epsilon", float(src.get("rms_norm_eps", 1e-6)), "FLOAT32", None)]
    factors = None
    if gemma:
        md += _gemma_keys(d, src, sz, arch)
        layer_names = GEMMA_LAYER
    elif arch == "phi3":
        md += _phi3_keys(d, src, sz)
        layer_names = {**PHI3_LAYER, "mlp.gate_up_proj.weight": "ffn_up"}  # llama.cpp keeps gate|up as ffn_up
    else:
        more, factors = _llama_family_keys(d, src, sz, arch)
        md += more
        layer_names = LLAMA_LAYER
    # a tokenizer.model is read first, as llama.cpp's converter does for these models
    spm = (d / "tokenizer.model").is_file()
    if spm:
        md += _hf_spm_tokenizer_keys(d, cfg, arch, phi3=arch == "phi3")
        if gemma:
            md.append(("tokenizer.ggml.add_space_prefix", False, "BOOL", None))
    else:
        md += _hf_tokenizer_keys(d, cfg, arch)
    n_tokens = next(len(v) for k, v, _, _ in md if k == "tokenizer.ggml.tokens")
    VT = _gguf().GGUFValueType
    keys = [(k, v.encode("utf-8") if isinstance(v, str) else v, VT[t], VT[s] if s else None) for k, v, t, s in md]

    # gemma2's converter drops lm_head always, the others when the head is tied
    tied = arch == "gemma2" or bool(cfg.get("tie_word_embeddings", gemma))
    skip = re.compile("|".join(f"(?:{p})" for p in LLAMA_IGNORED) + (r"|^lm_head\.weight$" if tied else ""))
    tensors: List[_Tensor] = []
    if factors is not None:
        rope_freqs: np.ndarray = factors
        tensors.append(_Tensor("rope_freqs.weight", (len(factors),), "F32", lambda: rope_freqs))
    for full in ck.names:
        if skip.search(full):
            continue
        m = _HF_LAYER.match(full)
        if m and m.group(2) in layer_names:
            slot = f"blk.{int(m.group(1))}.{layer_names[m.group(2)]}"
        elif full in LLAMA_GLOBAL:
            slot = LLAMA_GLOBAL[full]
        else:
            raise ValueError(f"tensor {full} in {d} is not a {mt} tensor pyllm quantize knows")
        name = slot if slot.endswith(".bias") else slot + ".weight"
        heads = 0
        if arch == "llama" and m and m.group(2).startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
            heads = sz["n_head"] if "q_proj" in m.group(2) else sz["n_kv_head"]
        plus_one = gemma and slot.endswith("norm")
        shape = tuple(ck.shape(full))
        if arch == "gemma3" and slot == "token_embd" and shape[0] > n_tokens:
            shape = (n_tokens, *shape[1:])  # the converter drops the rows past the vocabulary

        def raw(full: str = full, heads: int = heads, plus_one: bool = plus_one, rows: int = shape[0]) -> np.ndarray:
            x = np.ascontiguousarray(ck.float32(full)[:rows])
            if heads:
                return _permute_rope_rows(x, heads)
            return x + np.float32(1.0) if plus_one else x

        tensors.append(_Tensor(name, shape, "F32", raw))
    return arch, keys, 32, tensors, Hyper(arch, n_layer=sz["n_layer"], n_head=sz["n_head"],
                                          n_head_kv=sz["n_kv_head"])


def _read_hf(d: Path) -> Tuple[str, List[Tuple[str, Any, Any, Any]], int, List[_Tensor], Hyper]:
    """A Hugging Face directory by its model_type."""
    from .models.hfdir import HFCheckpoint

    ck = HFCheckpoint(d)
    mt = ck.config.get("model_type")
    if mt == "gpt2":
        return _read_hf_gpt2(d, ck)
    if mt in _HF_DECODERS:
        return _read_hf_decoder(d, ck)
    raise ValueError(f"{d} holds a {mt!r} model: pyllm quantize converts Hugging Face "
                     f"{', '.join(['gpt2', *_HF_DECODERS])} directories; convert others with llama.cpp's "
                     "convert_hf_to_gguf.py first")


# ---------------------------------------------------------------------------------------------- encoding


def _to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounding to nearest even; NaNs stay quiet NaNs."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return rounded


def _decode(t: _Tensor) -> np.ndarray:
    """The tensor as float32 values, (rows, row length)."""
    raw = np.asarray(t.raw())
    K = t.shape[-1] if t.shape else 1
    if t.type == "F32":
        x = raw.view(np.float32) if raw.dtype == np.uint8 else raw.astype(np.float32)
    elif t.type == "F16":
        x = raw.view(np.float16).astype(np.float32)
    elif t.type == "BF16":
        x = (raw.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
    else:
        x = quant.dequantize(raw, t.type, (int(np.prod(t.shape, dtype=np.int64)) // K, K))
    return np.ascontiguousarray(x.reshape(-1, K))


def _encode(x: np.ndarray, type: str, threads: Optional[int]) -> np.ndarray:
    """Rows of float32 as the bytes (or values) a ``type`` tensor stores."""
    if type == "F32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if type == "F16":
        return x.astype(np.float16)
    if type == "BF16":
        return _to_bf16(x)
    return quant.quantize_file(x, type, threads)


# ---------------------------------------------------------------------------------------------- writing

PathLike = Union[str, "os.PathLike[str]"]


def _atomic_target(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{os.getpid()}.part")


def quantize(src: PathLike, dst: PathLike, type: str = "Q4_K_M", threads: Optional[int] = None,
             allow_requantize: bool = False) -> Dict[str, str]:
    """Write ``dst``, a GGUF file of llama.cpp file type ``type`` (``"Q4_K_M"``,
    ``"q8_0"``, ... one of :data:`FILE_TYPES`), from ``src``: a GGUF file, or a
    Hugging Face GPT-2, Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 (text)
    or Phi-3 directory with a byte-level BPE tokenizer (GPT-2's, Llama 3's or
    Qwen2's split; ``pyllm train --tokenizer bpe`` writes one) or a
    SentencePiece ``tokenizer.model`` (Llama 2's, Mistral's, Gemma's,
    Phi-3's), converted as llama.cpp's converter converts it.

    Each tensor gets the type llama.cpp's quantizer gives it for that file
    type (:func:`mixture`); the metadata, tokenizer included, is copied and
    ``general.file_type`` set. ``src`` holds F32, F16 or BF16 weights; a
    quantized source is refused unless ``allow_requantize`` (then decoded
    exactly and quantized again, with a warning: the result is worse than
    quantizing the original weights). ``dst`` appears complete or not at all:
    it is written to a temporary file beside it and renamed. Returns the
    type of each tensor.
    """
    ft = _file_type(type)
    src, dst = os.fspath(src), Path(os.fspath(dst))
    if not os.path.exists(src):
        raise FileNotFoundError(f"no such GGUF file or model directory: {src}")
    if dst.exists() and dst.resolve() == Path(src).resolve():
        raise ValueError(f"the output {dst} is the input file")
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"threads must be >= 1, got {threads}")
    if os.path.isdir(src):
        arch, keys, alignment, tensors, hp = _read_hf(Path(src))
    else:
        arch, keys, alignment, tensors, hp = _read_gguf(src)
    plan = mixture([(t.name, t.shape, t.type) for t in tensors], ft.name, hp)
    by_name = {t.name: t for t in tensors}
    for name, new in plan.items():
        cur = by_name[name].type
        if new != cur and cur not in quant.SUPPORTED_TYPES:
            raise ValueError(f"cannot quantize {name}: pyllm does not decode its type {cur}")
    again = sorted({by_name[n].type for n, new in plan.items()
                    if new != by_name[n].type and by_name[n].type not in _PLAIN})
    if again:
        if not allow_requantize:
            raise ValueError(f"{src} holds quantized tensors ({', '.join(again)}); quantizing them again loses "
                             "more than quantizing the original weights: pass allow_requantize=True "
                             "(--allow-requantize) to do it anyway")
        warnings.warn(f"requantizing {', '.join(again)} tensors of {src} to {ft.name}: the result is worse "
                      "than quantizing the original F16/F32 weights", stacklevel=2)

    gguf = _gguf()
    tmp = _atomic_target(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        w = gguf.GGUFWriter(str(tmp), arch)
        if alignment != 32:
            w.add_custom_alignment(alignment)
        for key, val, vtype, sub in keys:
            w.add_key_value(key, val, vtype, sub)
        VT = gguf.GGUFValueType
        w.add_key_value("general.quantization_version", 2, VT.UINT32)
        w.add_key_value("general.file_type", ft.id, VT.UINT32)
        for name, new in plan.items():
            t = by_name[name]
            rows = int(np.prod(t.shape, dtype=np.int64)) // t.shape[-1]
            nbytes = rows * quant.row_bytes(new, t.shape[-1])
            w.add_tensor_info(name, t.shape, np.dtype(np.float32), nbytes,
                              raw_dtype=gguf.GGMLQuantizationType[new])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for data in _tensor_data(plan, by_name, threads):
            w.write_tensor_data(data)
        w.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return plan


def _tensor_data(plan: Dict[str, str], tensors: Dict[str, _Tensor], threads: Optional[int]) -> Iterator[np.ndarray]:
    for name, new in plan.items():
        t = tensors[name]
        if new == t.type:  # kept as stored, bit for bit
            raw = np.asarray(t.raw())
            yield raw.view(np.uint8).reshape(-1) if raw.dtype != np.uint8 else raw.reshape(-1)
        else:
            yield _encode(_decode(t), new, threads).reshape(-1).view(np.uint8)
