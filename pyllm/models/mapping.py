"""What the architecture modules share: reading a GGUF file's metadata and
tensors onto the runtime's slots (decoder.py), and a Hugging Face
directory's tensors by their names. Every metadata key under the
architecture's prefix and every tensor must be understood: whatever is
left over raises, so a file that needs something pyllm does not do fails
at load instead of answering wrongly.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..quant import type_info
from .gguf import GGUFFile
from .hfdir import HFCheckpoint

Matrix = Tuple[np.ndarray, int, int, int]  # (bytes or values, ggml type id, rows, cols)

_REQUIRED = object()


def split_rows(m: Matrix, sizes: Sequence[int], name: str) -> List[Matrix]:
    """A fused matrix (q|k|v, gate|up) as consecutive blocks of rows."""
    arr, typ, rows, cols = m
    if sum(sizes) != rows:
        raise ValueError(f"{name} has {rows} rows, expected {' + '.join(map(str, sizes))} = {sum(sizes)}")
    flat = arr.reshape(rows, -1)
    out, r0 = [], 0
    for n in sizes:
        out.append((np.ascontiguousarray(flat[r0:r0 + n]), typ, n, cols))
        r0 += n
    return out


def split_vector(v: np.ndarray, sizes: Sequence[int], name: str) -> List[np.ndarray]:
    if sum(sizes) != v.shape[0]:
        raise ValueError(f"{name} has {v.shape[0]} elements, expected {sum(sizes)}")
    return [np.ascontiguousarray(p) for p in np.split(v, np.cumsum(sizes)[:-1])]


_GGUF_LAYER = re.compile(r"^blk\.(\d+)\.")

# metadata under <arch>. the loaders read, and what each must be (as config.json's below): sizes are
# integers of GGUF's integer types (a float, string or bool is refused, never truncated), the rest
# finite numbers in range
_GGUF_COUNTS = {"embedding_length": 1, "attention.head_count": 1, "attention.head_count_kv": 1,
                "attention.key_length": 1, "attention.value_length": 1, "block_count": 1,
                "feed_forward_length": 1, "context_length": 1, "rope.dimension_count": 1,
                "attention.sliding_window": 0, "attention.sliding_window_pattern": 1,
                "rope.scaling.original_context_length": 0}
_GGUF_POSITIVE = ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base",
                  "rope.freq_base_swa", "rope.scaling.factor")
_GGUF_NON_NEGATIVE = ("attn_logit_softcapping", "final_logit_softcapping", "rope.scaling.attn_factor")


class GGUFSource:
    """A GGUF file read for one architecture: ``key`` takes metadata under
    ``<arch>.``, ``take`` a tensor; ``finish`` maps every tensor not taken
    onto the slot of its name (``blk.N.attn_q.weight`` -> ``blk.N.attn_q``)
    and raises for keys and tensors nobody understood."""

    # metadata under <arch>. that carries nothing the runtime needs
    IGNORED = ("vocab_size", "tensor_data_layout")

    def __init__(self, f: GGUFFile, arch: str):
        self.f, self.arch, self.md = f, arch, f.metadata
        self._keys: Set[str] = set()
        self._taken: Set[str] = set()

    def key(self, name: str, default: Any = _REQUIRED) -> Any:
        """Metadata ``<arch>.name`` (checked when it is a size or a numeric parameter), or ``default``."""
        full = f"{self.arch}.{name}"
        self._keys.add(full)
        if full in self.md:
            return self._checked(name, full, self.md[full])
        if default is _REQUIRED:
            raise ValueError(f"GGUF metadata lacks {full} ({self.f.path})")
        return default

    def _checked(self, name: str, full: str, v: Any) -> Any:
        where = f"GGUF metadata {full} ({self.f.path})"
        if name in _GGUF_COUNTS:
            # the reader gives ints for GGUF's integer types: a float, string or bool here is a broken file
            low = _GGUF_COUNTS[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < low or v >= 1 << 31:
                raise ValueError(f"{where} must be an integer in [{low}, 2**31), got {v!r}")
        elif name in _GGUF_POSITIVE or name in _GGUF_NON_NEGATIVE:
            positive = name in _GGUF_POSITIVE
            if not (_is_number(v) and math.isfinite(v) and (v > 0 if positive else v >= 0)):
                raise ValueError(f"{where} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
        return v

    def has(self, name: str) -> bool:
        return name in self.f.tensors

    def take(self, name: str) -> Any:
        """The tensor as a matrix (2-D) or a float32 vector (1-D), marked as understood.
        A matrix of any GGUF type is taken as its raw rows: whether the runtime
        computes with the type is checked when the model is built, so that
        reading a file's configuration never depends on its tensor types."""
        info = self.f.tensors.get(name)
        if info is None:
            raise ValueError(f"the GGUF file has no tensor {name!r} ({self.arch} architecture)")
        self._taken.add(name)
        raw = self.f.tensor_bytes(name)
        if len(info.shape) == 1 or (len(info.shape) == 2 and info.shape[0] == 1 and name.endswith(".bias")):
            if info.type_name == "F32":
                return raw.view(np.float32)
            if info.type_name == "F16":
                return raw.view(np.float16).astype(np.float32)
            raise ValueError(f"vector tensor {name} has type {info.type_name}; vectors must be F32 or F16")
        if len(info.shape) != 2:
            raise ValueError(f"tensor {name} has shape {info.shape}; expected a matrix or a vector")
        return (raw, info.type, info.shape[0], info.shape[1])

    def finish(self, slots: Dict[str, Any]) -> Dict[str, Any]:
        for name in self.f.tensors:
            if name in self._taken:
                continue
            slot = name[:-len(".weight")] if name.endswith(".weight") else name
            if slot in slots:
                raise ValueError(f"tensor {name} maps onto slot {slot}, already filled")
            slots[slot] = self.take(name)
        prefix = f"{self.arch}."
        unknown = sorted(k for k in self.md if k.startswith(prefix) and k not in self._keys
                         and k[len(prefix):] not in self.IGNORED)
        if unknown:
            raise ValueError(f"GGUF metadata key {unknown[0]} is not understood by pyllm's {self.arch} loader "
                             f"({self.f.path}); refusing to run the model without it")
        return slots

    def types(self) -> List[str]:
        return sorted({t.type_name for t in self.f.tensors.values()})

    def common(self) -> Dict[str, Any]:
        """The sizes every architecture stores under the same keys, checked against each other
        and against the layers the tensors hold (before anything per layer is built)."""
        p, where = f"{self.arch}.", self.f.path
        C = int(self.key("embedding_length"))
        NH = int(self.key("attention.head_count"))
        NKV = int(self.key("attention.head_count_kv", NH))
        if NH % NKV != 0:
            raise ValueError(f"GGUF metadata {p}attention.head_count_kv={NKV} does not divide "
                             f"{p}attention.head_count={NH} ({where})")
        if f"{p}attention.key_length" not in self.md and C % NH != 0:
            raise ValueError(f"GGUF metadata {p}attention.head_count={NH} does not divide "
                             f"{p}embedding_length={C} and {p}attention.key_length is absent ({where})")
        HS = int(self.key("attention.key_length", C // NH))
        vs = int(self.key("attention.value_length", HS))
        if vs != HS:
            raise ValueError(f"value heads of {vs} dimensions beside key heads of {HS} are not supported")
        L = int(self.key("block_count"))
        held = {int(m.group(1)) for m in map(_GGUF_LAYER.match, self.f.tensors) if m}
        if len(held) != L or max(held) != L - 1:  # (without building range(L): L may be 10**9)
            missing = next((i for i in range(len(held) + 1) if i not in held), None)
            what = f"no tensors for layer {missing}" if missing is not None and missing < L else \
                f"tensors for layer {max(held)}"
            raise ValueError(f"GGUF metadata {p}block_count={L} does not match the tensors: the file has {what} "
                             f"({len(held)} layers held; {where})")
        emb = self.f.tensors.get("token_embd.weight")
        if emb is None:
            raise ValueError(f"the GGUF file has no tensor 'token_embd.weight' ({where})")
        return dict(vocab_size=int(emb.shape[0]), hidden_size=C, n_layer=L, n_head=NH,
                    n_kv_head=NKV, head_dim=HS, ffn_size=int(self.key("feed_forward_length")),
                    context=int(self.key("context_length")))

    def special_ids(self) -> Dict[str, Optional[int]]:
        md = self.md
        return dict(bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
                    eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
                    pad_token_id=md.get("tokenizer.ggml.padding_token_id"))


_LAYER = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+)$")


# config.json numbers the loaders read, and what each must be: sizes are integers (4.0, "4" and
# true are refused, never truncated), the rest finite numbers in range
_HF_COUNTS = {"vocab_size": 1, "hidden_size": 1, "num_hidden_layers": 1, "num_attention_heads": 1,
              "num_key_value_heads": 1, "head_dim": 1, "intermediate_size": 1, "max_position_embeddings": 1,
              "sliding_window": 0, "sliding_window_pattern": 1}
_HF_POSITIVE = ("rms_norm_eps", "rope_theta", "rope_local_base_freq", "query_pre_attn_scalar")
_HF_NON_NEGATIVE = ("final_logit_softcapping", "attn_logit_softcapping")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class HFSource:
    """A Hugging Face directory read for one architecture: tensors renamed
    onto runtime slots by a table of suffixes (``self_attn.q_proj.weight``
    -> ``attn_q``), leftovers raise."""

    def __init__(self, ckpt: HFCheckpoint):
        self.ckpt, self.config = ckpt, ckpt.config

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        """config.json's ``key`` (checked when it is a size or a numeric parameter), or ``default``."""
        if key in self.config and self.config[key] is not None:
            return self._checked(key, self.config[key])
        if default is _REQUIRED:
            raise ValueError(f"{self.ckpt.path}/config.json lacks {key!r}")
        return default

    def _checked(self, key: str, v: Any) -> Any:
        where = f"{self.ckpt.path}/config.json"
        if key in _HF_COUNTS:
            if isinstance(v, bool) or not isinstance(v, int) or v < _HF_COUNTS[key] or v >= 1 << 31:
                raise ValueError(f"{where}: {key} must be an integer in [{_HF_COUNTS[key]}, 2**31), got {v!r}")
        elif key in _HF_POSITIVE or key in _HF_NON_NEGATIVE:
            ok = _is_number(v) and math.isfinite(v) and (v > 0 if key in _HF_POSITIVE else v >= 0)
            if not ok:
                raise ValueError(f"{where}: {key} must be a finite number "
                                 f"{'> 0' if key in _HF_POSITIVE else '>= 0'}, got {v!r}")
        elif key == "partial_rotary_factor" and not (_is_number(v) and 0 < v <= 1):
            raise ValueError(f"{where}: partial_rotary_factor must be in (0, 1], got {v!r}")
        return v

    def matrix(self, name: str) -> Matrix:
        shape = self.ckpt.shape(name)
        if len(shape) != 2:
            raise ValueError(f"tensor {name} has shape {shape}; expected a matrix")
        return (np.ascontiguousarray(self.ckpt.array(name)), self.ckpt.type_of(name), shape[0], shape[1])

    def vector(self, name: str, offset: float = 0.0) -> np.ndarray:
        v = self.ckpt.float32(name).reshape(-1)
        return (v + np.float32(offset)).astype(np.float32) if offset else np.ascontiguousarray(v)

    def map(self, global_names: Dict[str, str], layer_names: Dict[str, str], ignore: Iterable[str] = (),
            vector_offset: Callable[[str], float] = lambda slot: 0.0) -> Dict[str, Any]:
        """Every tensor onto its slot: 2-D ones as matrices, 1-D as float32 vectors
        (plus ``vector_offset(slot)``, e.g. Gemma's 1 + w norms)."""
        slots: Dict[str, Any] = {}
        skip = re.compile("|".join(f"(?:{p})" for p in ignore)) if ignore else None
        for name in self.ckpt.names:
            if skip is not None and skip.search(name):
                continue
            m = _LAYER.match(name)
            slot = None
            if m and m.group(2) in layer_names:
                slot = f"blk.{int(m.group(1))}.{layer_names[m.group(2)]}"
            elif name in global_names:
                slot = global_names[name]
            if slot is None:
                raise ValueError(f"tensor {name} in {self.ckpt.path} is not understood by pyllm's "
                                 f"{self.config.get('model_type')} loader")
            if len(self.ckpt.shape(name)) == 1:
                slots[slot] = self.vector(name, vector_offset(slot))
            else:
                slots[slot] = self.matrix(name)
        return slots

    def types(self) -> List[str]:
        return sorted({type_info(self.ckpt.type_of(n)).name for n in self.ckpt.names})


# the names transformers' llama-family checkpoints use (LlamaForCausalLM and
# the architectures that copy its layout), by runtime slot
LLAMA_GLOBAL = {"model.embed_tokens.weight": "token_embd", "model.norm.weight": "output_norm",
                "lm_head.weight": "output"}
LLAMA_LAYER = {
    "input_layernorm.weight": "attn_norm",
    "post_attention_layernorm.weight": "ffn_norm",
    "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
    "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.q_norm.weight": "attn_q_norm", "self_attn.k_norm.weight": "attn_k_norm",
    "mlp.gate_proj.weight": "ffn_gate", "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down",
}
# buffers some checkpoints store that are recomputed here
LLAMA_IGNORED = (r"rotary_emb\.inv_freq$",)


def tie_output(slots: Dict[str, Any], tied: bool) -> None:
    """A tied head reads the token embedding; an untied model must store its own."""
    if "token_embd" not in slots:
        raise ValueError("the weights have no token embedding (model.embed_tokens.weight / token_embd.weight)")
    if "output" not in slots:
        if not tied:
            raise ValueError("the model has no output head (lm_head.weight / output.weight) and does not tie it")
        slots["output"] = slots["token_embd"]


def spec(sizes: Dict[str, Any], *, eps: float, norm: str = "rms", act: str = "silu_glu", rope: str = "neox",
         rope_dim: Optional[int] = None, attn_scale: float = 0.0, attn_softcap: float = 0.0,
         final_softcap: float = 0.0, embed_scale: float = 1.0, window: Any = 0,
         rope_table: Optional[List[int]] = None) -> Dict[str, Any]:
    """The runtime spec (decoder.h's DecoderSpec, n_ctx added by the model) from the sizes and the
    architecture's choices; ``window`` is one length for every layer or a list per layer."""
    L = int(sizes["n_layer"])
    windows = [int(w or 0) for w in window] if isinstance(window, (list, tuple)) else [int(window or 0)] * L
    if len(windows) != L:
        raise ValueError(f"{len(windows)} sliding-window entries for {L} layers")
    return dict(vocab_size=int(sizes["vocab_size"]), hidden_size=int(sizes["hidden_size"]), n_layer=L,
                n_head=int(sizes["n_head"]), n_kv_head=int(sizes["n_kv_head"]), head_dim=int(sizes["head_dim"]),
                ffn_size=int(sizes["ffn_size"]), norm=norm, norm_eps=float(eps), act=act, rope=rope,
                rope_dim=int(rope_dim if rope_dim is not None else sizes["head_dim"]) if rope != "none" else 0,
                attn_scale=float(attn_scale), attn_softcap=float(attn_softcap or 0.0),
                final_softcap=float(final_softcap or 0.0), embed_scale=float(embed_scale), window=windows,
                rope_table=list(rope_table) if rope_table is not None else [0] * L)


def hf_layers(src: HFSource) -> int:
    """config.json's num_hidden_layers, which must be the number of layers the weights hold (checked
    before anything per layer is built: a config claiming 10**9 layers is refused, not allocated)."""
    L = int(src.get("num_hidden_layers"))
    found = {int(m.group(1)) for m in map(_LAYER.match, src.ckpt.names) if m}
    held = max(found) + 1 if found else 0
    if held != L:
        raise ValueError(f"{src.ckpt.path}/config.json says num_hidden_layers={L} but the weights hold "
                         f"{held} layers")
    return L


def hf_sizes(src: HFSource) -> Dict[str, Any]:
    """The sizes of a llama-family config.json."""
    C, NH = int(src.get("hidden_size")), int(src.get("num_attention_heads"))
    return dict(vocab_size=int(src.get("vocab_size")), hidden_size=C, n_layer=hf_layers(src),
                n_head=NH, n_kv_head=int(src.get("num_key_value_heads", NH)),
                head_dim=int(src.get("head_dim", C // NH)), ffn_size=int(src.get("intermediate_size")),
                context=int(src.get("max_position_embeddings", 2048)))


def hf_rope(src: HFSource) -> Tuple[float, Dict[str, Any]]:
    """(theta, scaling parameters) from ``rope_parameters`` (transformers 5) or ``rope_theta`` +
    ``rope_scaling``; the parameters' ``rope_type`` is "default" when unscaled."""
    params = dict(src.get("rope_parameters", None) or {})
    params.update(src.get("rope_scaling", None) or {})  # the older name, as transformers still reads it
    theta = params.get("rope_theta", src.get("rope_theta", 10000.0))
    if not (_is_number(theta) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"{src.ckpt.path}/config.json: rope_theta must be a finite number > 0, got {theta!r}")
    theta = float(theta)
    params["rope_type"] = params.get("rope_type", params.get("type", "default"))
    return theta, params


def hf_activation(src: HFSource, allowed: Sequence[str]) -> str:
    act = src.get("hidden_act", None) or src.get("hidden_activation", None) or src.get("activation_function", None)
    if act not in allowed:
        raise ValueError(f"activation {act!r} in {src.ckpt.path}/config.json is not supported here; "
                         f"supported: {', '.join(allowed)}")
    return str(act)


def config_fields(sizes: Dict[str, Any], model_type: str, eps: float, theta: float, tied: bool,
                  ids: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    """DecoderConfig's fields (transformers' names) from the sizes."""
    window = extra.pop("sliding_window", None)
    return dict(vocab_size=sizes["vocab_size"], hidden_size=sizes["hidden_size"],
                intermediate_size=sizes["ffn_size"], num_hidden_layers=sizes["n_layer"],
                num_attention_heads=sizes["n_head"], num_key_value_heads=sizes["n_kv_head"],
                head_dim=sizes["head_dim"], max_position_embeddings=sizes["context"], rms_norm_eps=eps,
                rope_theta=theta, tie_word_embeddings=tied, model_type=model_type, sliding_window=window,
                extra=extra, **ids)


def hf_ids(src: HFSource) -> Dict[str, Any]:
    """bos / pad ids and the eos id or ids (Llama 3 lists several: generation stops on any)."""
    def one(key: str) -> Any:
        v = src.get(key, None)
        if isinstance(v, list):
            return [int(x) for x in v] if key == "eos_token_id" else (int(v[0]) if v else None)
        return None if v is None else int(v)

    return dict(bos_token_id=one("bos_token_id"), eos_token_id=one("eos_token_id"), pad_token_id=one("pad_token_id"))
