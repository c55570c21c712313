"""GPT-2 in the Hugging Face GPT2LMHeadModel layout, trainable on the CPU (llm.c-style
forward/backward pairs over one flat parameter buffer) and usable with generate().
Not the optimizer (pyllm.optim), not the training loop, not tokenization."""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .. import _C
from .._fileio import atomic_write, write_text_atomic
from ..generation.configuration import GenerationConfig
from .base import (
    CausalLMOutput,
    PreTrainedCausalLM,
    check_labels,
    check_name_or_path,
    hf_loading_kwargs,
    lm_output,
    mask_columns,
    no_extra_args,
)
from .mapping import spec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# config.json fields that change the math and the only values pyllm implements
_FIXED_FIELDS: Dict[str, Tuple[Any, ...]] = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}


@dataclass
class GPT2Config:
    vocab_size: int = 50257  # V
    n_positions: int = 1024  # maxT, the longest sequence (learned position embeddings)
    n_embd: int = 768  # C
    n_layer: int = 12  # L
    n_head: int = 12  # NH; head size HS = n_embd / n_head
    n_inner: Optional[int] = None  # MLP width; None means 4 * n_embd
    activation_function: str = "gelu_new"  # GELU, tanh approximation
    resid_pdrop: float = 0.1  # dropout rates: kept for transformers, pyllm trains without dropout
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of the normal weight init
    scale_attn_weights: bool = True  # scores / sqrt(HS)
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True  # lm_head is transformer.wte
    bos_token_id: Optional[int] = 50256
    eos_token_id: Optional[int] = 50256
    pad_token_id: Optional[int] = None
    model_type: str = "gpt2"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def hidden_size(self) -> int:
        """transformers' alias of n_embd."""
        return self.n_embd

    @property
    def inner_size(self) -> int:
        """The MLP width (4C unless n_inner is set)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def validate(self) -> None:
        """Raise ValueError naming the first field pyllm cannot build a model from."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"GPT2Config.{name} must be a positive integer, got {v!r}")
        if self.n_inner is not None and (isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int)
                                         or self.n_inner <= 0):
            raise ValueError(f"GPT2Config.n_inner must be a positive integer or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPT2Config.n_embd={self.n_embd} is not a multiple of n_head={self.n_head}")
        if not (isinstance(self.layer_norm_epsilon, (int, float)) and self.layer_norm_epsilon > 0):
            raise ValueError(f"GPT2Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        if self.model_type != "gpt2":
            raise ValueError(f"GPT2Config.model_type must be 'gpt2', got {self.model_type!r}")
        for name, allowed in _FIXED_FIELDS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPT2Config.{name}={getattr(self, name)!r} is not supported; "
                                 f"supported: {', '.join(repr(a) for a in allowed)}")

    def to_dict(self) -> Dict[str, Any]:
        """The config.json contents transformers reads."""
        d = asdict(self)
        d["architectures"] = ["GPT2LMHeadModel"]
        d["n_ctx"] = self.n_positions
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GPT2Config":
        """From a config.json dict; keys transformers writes that do not
        change the model (architectures, task_specific_params, ...) are ignored."""
        if d.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"not a GPT-2 config: model_type is {d.get('model_type')!r}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: Union[str, "os.PathLike[str]"]) -> "GPT2Config":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read the GPT-2 config {path}: {e}") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(d)


def _physical_memory() -> Optional[int]:
    """Bytes of RAM in this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(nbytes: int, what: str) -> None:
    """Refuse an allocation larger than the machine's RAM before making it (it could only end in
    a MemoryError deep inside, or the system swapping and killing the process)."""
    ram = _physical_memory()
    if ram is not None and nbytes > ram:
        raise ValueError(f"{what} needs {nbytes / 1e9:,.1f} GB, more than this machine's {ram / 1e9:,.1f} GB of RAM")


def parameter_count(config: GPT2Config) -> int:
    """Number of parameters (tied head counted once), computed without listing them."""
    C, V, F, L = config.n_embd, config.vocab_size, config.inner_size, config.n_layer
    per_layer = C * 3 * C + C * C + C * F + F * C + 2 * C + 3 * C + C + 2 * C + F + C
    return V * C + config.n_positions * C + L * per_layer + 2 * C


def parameter_shapes(config: GPT2Config) -> List[Tuple[str, Tuple[int, ...]]]:
    """(HF name, shape) of every parameter in the order of the flat buffer:
    the matrices (weight decay) first, then biases and norms (no decay).
    Conv1D weights are (in, out): y = x @ W + b."""
    C, V, F = config.n_embd, config.vocab_size, config.inner_size
    mats: List[Tuple[str, Tuple[int, ...]]] = [("transformer.wte.weight", (V, C)),
                                               ("transformer.wpe.weight", (config.n_positions, C))]
    vecs: List[Tuple[str, Tuple[int, ...]]] = []
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        mats += [(h + "attn.c_attn.weight", (C, 3 * C)), (h + "attn.c_proj.weight", (C, C)),
                 (h + "mlp.c_fc.weight", (C, F)), (h + "mlp.c_proj.weight", (F, C))]
        vecs += [(h + "ln_1.weight", (C,)), (h + "ln_1.bias", (C,)),
                 (h + "attn.c_attn.bias", (3 * C,)), (h + "attn.c_proj.bias", (C,)),
                 (h + "ln_2.weight", (C,)), (h + "ln_2.bias", (C,)),
                 (h + "mlp.c_fc.bias", (F,)), (h + "mlp.c_proj.bias", (C,))]
    vecs += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return mats + vecs


def _views(flat: np.ndarray, shapes: List[Tuple[str, Tuple[int, ...]]]) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    off = 0
    for name, shape in shapes:
        n = math.prod(shape)
        out[name] = flat[off:off + n].reshape(shape)
        off += n
    return out


class _Activations:
    """Forward activations kept for backward, plus backward scratch, for one
    (B, T); every array is 2-D (rows B*T) unless said otherwise."""

    def __init__(self, cfg: GPT2Config, B: int, T: int):
        L, C, V, F, NH = cfg.n_layer, cfg.n_embd, cfg.vocab_size, cfg.inner_size, cfg.n_head
        R = B * T
        floats = R * C * (1 + 7 * L + 4) + L * R * (4 + 3 * C + 2 * F) + L * B * NH * T * T + R * (V + 3 + F * 2) \
            + 3 * R * C  # everything below, roughly
        _check_fits(4 * floats, f"training activations for batch {B} x {T} tokens")
        f32 = np.float32
        self.B, self.T = B, T
        self.encoded = np.empty((B, T, C), f32)  # wte[ids] + wpe, the first residual
        self.ln1 = np.empty((L, R, C), f32)
        self.ln1_mean = np.empty((L, R), f32)
        self.ln1_rstd = np.empty((L, R), f32)
        self.qkv = np.empty((L, B, T, 3 * C), f32)  # [q | k | v] along the last axis
        self.atty = np.empty((L, B, T, C), f32)  # attention output, heads concatenated
        self.att = np.empty((L, B, NH, T, T), f32)  # causal softmax probabilities
        self.res2 = np.empty((L, R, C), f32)  # residual after attention
        self.ln2 = np.empty((L, R, C), f32)
        self.ln2_mean = np.empty((L, R), f32)
        self.ln2_rstd = np.empty((L, R), f32)
        self.fch = np.empty((L, R, F), f32)  # MLP pre-activation
        self.fch_gelu = np.empty((L, R, F), f32)
        self.res3 = np.empty((L, R, C), f32)  # residual after the MLP (the layer's output)
        self.lnf = np.empty((R, C), f32)
        self.lnf_mean = np.empty((R,), f32)
        self.lnf_rstd = np.empty((R,), f32)
        self.logits = np.empty((R, V), f32)  # overwritten by dlogits in backward
        self.losses = np.empty((R,), f32)
        self.proj = np.empty((R, C), f32)  # scratch: c_proj outputs before the residual add
        # backward scratch
        self.dres = np.empty((R, C), f32)  # gradient of the residual stream
        self.dln = np.empty((R, C), f32)  # gradient of a layernorm output
        self.datty = np.empty((B, T, C), f32)
        self.dqkv = np.empty((B, T, 3 * C), f32)
        self.dfch = np.empty((R, F), f32)
        self.dfch_gelu = np.empty((R, F), f32)


class GPT2LMHeadModel(PreTrainedCausalLM):
    """GPT-2 with a language-model head tied to the token embedding, as
    transformers' ``GPT2LMHeadModel``; trains (``forward_backward``) and
    generates (``generate`` with a KV cache).

    All parameters live in one flat float32 buffer and all gradients in
    another; ``named_parameters()`` / ``named_gradients()`` yield views of
    them with Hugging Face names. Activations are allocated for one batch
    shape (B, T) and reused while it stays the same.

    Thread safety: a model object serializes ``forward_backward``, ``loss``,
    ``__call__``, optimizer steps (``pyllm.AdamW`` takes the same lock) and
    generation with one lock, so threads sharing it take turns.

    >>> cfg = GPT2Config(vocab_size=65, n_positions=32, n_embd=48, n_layer=2, n_head=4)
    >>> model = GPT2LMHeadModel(cfg, seed=0)
    >>> ids = np.arange(16).reshape(2, 8)
    >>> round(model.forward_backward(ids, ids + 1), 1)   # near log(65) at init
    4.3
    """

    config: GPT2Config

    def __init__(self, config: GPT2Config, seed: int = 0, tokenizer: Any = None, init_weights: bool = True):
        # init_weights=False leaves every parameter 0 (from_pretrained fills them all)
        if not isinstance(config, GPT2Config):
            raise ValueError(f"config must be a GPT2Config, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.n_ctx = config.n_positions
        self._lock = threading.RLock()
        _check_fits(8 * parameter_count(config), f"a GPT-2 of {parameter_count(config):,} parameters (weights and "
                    "gradients)")
        self._shapes = parameter_shapes(config)
        n = sum(math.prod(s) for _, s in self._shapes)
        self._params = np.zeros(n, dtype=np.float32)
        self._grads = np.zeros(n, dtype=np.float32)
        self.params = _views(self._params, self._shapes)
        self.grads = _views(self._grads, self._shapes)
        self._acts: Optional[_Activations] = None
        if init_weights:
            self._init_weights(seed)
        # inference runs on the decoder runtime (its own KV cache), built from
        # the parameters when first needed and again after they change
        self._runtime: Optional[_C.DecoderModel] = None
        self._runtime_key: Any = None  # (n_ctx, a sample of the parameters) it was built from
        self._cached: List[int] = []  # the token ids whose keys/values are in the cache
        self._tokenizer = tokenizer
        self.generation_config = GenerationConfig.from_model_config(config)

    def _init_weights(self, seed: int) -> None:
        # as transformers: N(0, 0.02) for matrices, scaled by 1/sqrt(2L) for the
        # projections into the residual stream; zero biases, unit norm weights
        rng = np.random.default_rng(seed)
        std = self.config.initializer_range
        for name, shape in self._shapes:
            view = self.params[name]
            if len(shape) == 2:
                s = std / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") else std
                view[...] = rng.standard_normal(shape, dtype=np.float32) * np.float32(s)
            elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                view[...] = 1.0
            else:
                view[...] = 0.0

    # ---- parameters

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(HF name, live float32 view) of every parameter; writes go into the model."""
        return iter(self.params.items())

    def named_gradients(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(HF name, live float32 view) of every parameter's accumulated gradient."""
        return iter(self.grads.items())

    def flat_buffers(self) -> Tuple[np.ndarray, np.ndarray, List[Tuple[str, int, Tuple[int, ...]]]]:
        """The flat parameter and gradient buffers and (name, offset, shape) of
        each parameter in them (what the optimizer works on)."""
        spans = []
        off = 0
        for name, shape in self._shapes:
            spans.append((name, off, shape))
            off += math.prod(shape)
        return self._params, self._grads, spans

    def num_parameters(self) -> int:
        """Number of parameters (the tied lm_head counted once)."""
        return int(self._params.size)

    def zero_grad(self) -> None:
        """Set every gradient to zero (forward_backward accumulates)."""
        with self._lock:
            self._grads.fill(0.0)

    # ---- training

    def _context_limit(self) -> Tuple[str, int]:
        return "n_positions", self.config.n_positions  # the position embeddings, also for training

    def _targets(self, labels: Any, shape: Tuple[int, ...]) -> np.ndarray:
        """``labels`` (no shift; -100 ignored) as the flat int64 targets of the loss kernel."""
        return np.ascontiguousarray(check_labels(labels, shape, self.config.vocab_size)).reshape(-1)

    def _activations(self, B: int, T: int) -> _Activations:
        if self._acts is None or (self._acts.B, self._acts.T) != (B, T):
            self._acts = None  # free the old set first
            self._acts = _Activations(self.config, B, T)
        return self._acts

    def _forward(self, ids: np.ndarray) -> _Activations:
        """Run the model on ids (B, T) int64, keeping what backward needs; the
        logits end up in acts.logits (B*T, V)."""
        cfg, k, p = self.config, _C, self.params
        B, T = ids.shape
        R, C = B * T, cfg.n_embd
        a = self._activations(B, T)
        eps = float(cfg.layer_norm_epsilon)
        k.encoder_forward(a.encoded, ids, p["transformer.wte.weight"], p["transformer.wpe.weight"])
        x = a.encoded.reshape(R, C)
        for i in range(cfg.n_layer):
            h = f"transformer.h.{i}."
            k.layernorm_forward(a.ln1[i], a.ln1_mean[i], a.ln1_rstd[i], x, p[h + "ln_1.weight"], p[h + "ln_1.bias"],
                                eps)
            qkv = a.qkv[i].reshape(R, 3 * C)
            k.sgemm(qkv, a.ln1[i], p[h + "attn.c_attn.weight"], bias=p[h + "attn.c_attn.bias"])
            k.attention_forward(a.atty[i], a.att[i], a.qkv[i], cfg.n_head)
            k.sgemm(a.proj, a.atty[i].reshape(R, C), p[h + "attn.c_proj.weight"], bias=p[h + "attn.c_proj.bias"])
            k.residual_forward(a.res2[i], x, a.proj)
            k.layernorm_forward(a.ln2[i], a.ln2_mean[i], a.ln2_rstd[i], a.res2[i], p[h + "ln_2.weight"],
                                p[h + "ln_2.bias"], eps)
            k.sgemm(a.fch[i], a.ln2[i], p[h + "mlp.c_fc.weight"], bias=p[h + "mlp.c_fc.bias"])
            k.gelu_forward(a.fch_gelu[i], a.fch[i])
            k.sgemm(a.proj, a.fch_gelu[i], p[h + "mlp.c_proj.weight"], bias=p[h + "mlp.c_proj.bias"])
            k.residual_forward(a.res3[i], a.res2[i], a.proj)
            x = a.res3[i]
        k.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, x, p["transformer.ln_f.weight"],
                            p["transformer.ln_f.bias"], eps)
        k.sgemm(a.logits, a.lnf, p["transformer.wte.weight"], trans_b=True)  # (R,C) @ (V,C).T
        return a

    def _backward(self, a: _Activations, ids: np.ndarray, targets: np.ndarray, n_valid: int) -> None:
        """Accumulate every parameter's gradient of mean cross-entropy; turns
        a.logits into dlogits."""
        cfg, k, p, g = self.config, _C, self.params, self.grads
        B, T = ids.shape
        R, C = B * T, cfg.n_embd
        wte = p["transformer.wte.weight"]
        k.crossentropy_backward(a.logits, a.logits, targets, 1.0 / n_valid)
        k.sgemm(g["transformer.wte.weight"], a.logits, a.lnf, trans_a=True, accumulate=True)  # (V,C) += dlogits.T @ lnf
        k.sgemm(a.dln, a.logits, wte)  # (R,C) = dlogits @ wte
        a.dres.fill(0.0)
        last = a.res3[cfg.n_layer - 1] if cfg.n_layer else a.encoded.reshape(R, C)
        k.layernorm_backward(a.dres, g["transformer.ln_f.weight"], g["transformer.ln_f.bias"], a.dln, last,
                             p["transformer.ln_f.weight"], a.lnf_mean, a.lnf_rstd)
        for i in reversed(range(cfg.n_layer)):
            h = f"transformer.h.{i}."
            x = a.res3[i - 1] if i > 0 else a.encoded.reshape(R, C)
            # MLP: res3 = res2 + gelu(ln2 @ Wfc + bfc) @ Wproj + bproj
            k.sgemm(a.dfch_gelu, a.dres, p[h + "mlp.c_proj.weight"], trans_b=True)
            k.sgemm(g[h + "mlp.c_proj.weight"], a.fch_gelu[i], a.dres, trans_a=True, accumulate=True)
            k.bias_backward(g[h + "mlp.c_proj.bias"], a.dres)
            a.dfch.fill(0.0)
            k.gelu_backward(a.dfch, a.fch[i], a.dfch_gelu)
            k.sgemm(a.dln, a.dfch, p[h + "mlp.c_fc.weight"], trans_b=True)
            k.sgemm(g[h + "mlp.c_fc.weight"], a.ln2[i], a.dfch, trans_a=True, accumulate=True)
            k.bias_backward(g[h + "mlp.c_fc.bias"], a.dfch)
            k.layernorm_backward(a.dres, g[h + "ln_2.weight"], g[h + "ln_2.bias"], a.dln, a.res2[i],
                                 p[h + "ln_2.weight"], a.ln2_mean[i], a.ln2_rstd[i])
            # attention: res2 = x + attn(ln1 @ Wqkv + bqkv) @ Wproj + bproj
            datty = a.datty.reshape(R, C)
            k.sgemm(datty, a.dres, p[h + "attn.c_proj.weight"], trans_b=True)
            k.sgemm(g[h + "attn.c_proj.weight"], a.atty[i].reshape(R, C), a.dres, trans_a=True, accumulate=True)
            k.bias_backward(g[h + "attn.c_proj.bias"], a.dres)
            a.dqkv.fill(0.0)
            k.attention_backward(a.dqkv, a.datty, a.qkv[i], a.att[i], cfg.n_head)
            dqkv = a.dqkv.reshape(R, 3 * C)
            k.sgemm(a.dln, dqkv, p[h + "attn.c_attn.weight"], trans_b=True)
            k.sgemm(g[h + "attn.c_attn.weight"], a.ln1[i], dqkv, trans_a=True, accumulate=True)
            k.bias_backward(g[h + "attn.c_attn.bias"], dqkv)
            k.layernorm_backward(a.dres, g[h + "ln_1.weight"], g[h + "ln_1.bias"], a.dln, x,
                                 p[h + "ln_1.weight"], a.ln1_mean[i], a.ln1_rstd[i])
        k.encoder_backward(g["transformer.wte.weight"], g["transformer.wpe.weight"], a.dres.reshape(B, T, C), ids)

    def _mean_loss(self, a: _Activations, targets: np.ndarray) -> Tuple[float, int]:
        n_valid = int(np.count_nonzero(targets != -100))
        if n_valid == 0:
            raise ValueError("every label is -100: there is no target to compute a loss on")
        _C.crossentropy_forward(a.losses, a.logits, targets)
        return float(a.losses.sum(dtype=np.float64) / n_valid), n_valid

    def forward_backward(self, input_ids: Any, labels: Any) -> float:
        """Mean cross-entropy of ``logits[b, t]`` against ``labels[b, t]``
        (no shift: labels are the next tokens already; -100 is ignored) and
        its gradient, added to the accumulated gradients.

        input_ids, labels: integer arrays (B, T), T <= n_positions.
        """
        with self._lock:
            ids = self._check_ids(input_ids)
            targets = self._targets(labels, ids.shape)
            a = self._forward(ids)
            loss, n_valid = self._mean_loss(a, targets)
            self._backward(a, ids, targets, n_valid)
            return loss

    def loss(self, input_ids: Any, labels: Any) -> float:
        """The loss of ``forward_backward`` without the backward pass (evaluation)."""
        with self._lock:
            ids = self._check_ids(input_ids)
            targets = self._targets(labels, ids.shape)
            return self._mean_loss(self._forward(ids), targets)[0]

    def __call__(self, input_ids: Any, attention_mask: Any = None, labels: Any = None,
                 output_hidden_states: Optional[bool] = None, **kwargs: Any) -> CausalLMOutput:
        """Logits for every position, as transformers' ``model(input_ids).logits``:
        (B, T, V) float32 (a 1-D input is a batch of one; torch in, torch out).
        With an ``attention_mask`` (0 = padding, on one side) each row's real
        tokens run alone from position 0 and padded positions get zero logits;
        with ``labels``, ``.loss`` is transformers' shifted mean cross-entropy
        (-100 ignored); with ``output_hidden_states=True``, ``.hidden_states`` as
        transformers': the embeddings, each block's output but the last, then ln_f's.
        Training uses :meth:`forward_backward` (no shift)."""
        no_extra_args(kwargs)
        with self._lock:
            ids = self._check_ids(input_ids)
            B, T = ids.shape
            rows = mask_columns(attention_mask, ids.shape)
            cfg = self.config
            logits = np.zeros((B, T, cfg.vocab_size), dtype=np.float32)
            hidden = np.zeros((cfg.n_layer + 1, B, T, cfg.n_embd), np.float32) if output_hidden_states else None
            if rows is None:  # the batch at once
                runs = [(slice(None), np.arange(T), ids)]
            else:  # each row's real tokens alone
                runs = [(slice(b, b + 1), cols, ids[b:b + 1, cols]) for b, cols in enumerate(rows) if cols.size]
            for bs, cols, x in runs:
                a = self._forward(x)
                shape = (x.shape[0], cols.size, -1)
                logits[bs, cols] = a.logits.reshape(shape)
                if hidden is not None:
                    for layer, h in enumerate([a.encoded, *a.res3[:-1], a.lnf]):
                        hidden[layer][bs, cols] = h.reshape(shape)
            return lm_output(input_ids, logits, labels, cfg.vocab_size, hidden)

    # ---- checkpoints

    def save_pretrained(self, save_directory: Union[str, "os.PathLike[str]"]) -> None:
        """Write config.json and model.safetensors (HF names, lm_head tied so
        not stored) into ``save_directory``; transformers'
        ``GPT2LMHeadModel.from_pretrained`` reads them. Each file is written to
        a temporary name and renamed, so a crash never leaves a torn file."""
        from safetensors.numpy import save_file

        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tensors = {name: np.ascontiguousarray(v) for name, v in self.params.items()}
            atomic_write(d / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
        text = self.config.to_json_string()
        write_text_atomic(d / CONFIG_NAME, text)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, "os.PathLike[str]"],
                        tokenizer: Any = None, **kwargs: Any) -> "GPT2LMHeadModel":
        """Load a Hugging Face GPT-2 directory (config.json + model.safetensors,
        or a sharded model.safetensors.index.json), as written by
        ``save_pretrained`` here or in transformers. Tensor names may carry
        the ``transformer.`` prefix or not; ``lm_head.weight``, if present,
        must equal the token embedding (tied). transformers' ``torch_dtype`` /
        ``dtype`` / ``device_map`` are accepted as in AutoModelForCausalLM."""
        check_name_or_path(pretrained_model_name_or_path)
        hf_loading_kwargs(kwargs)
        d = Path(pretrained_model_name_or_path)
        if not d.is_dir():
            raise ValueError(f"{d} is not a directory holding config.json and model.safetensors")
        config = GPT2Config.from_json_file(d / CONFIG_NAME)
        ckpt = _open_safetensors(d)  # headers read and checked; the weights mapped, not read
        # every name, shape and dtype checked against the config before anything is allocated
        plan, lm_head = _load_plan(config, {k: (ckpt.shape(k), ckpt.dtype(k) in _FLOAT_DTYPES) for k in ckpt.names})
        model = cls(config, tokenizer=tokenizer, init_weights=False)
        with model._lock:
            for name, key in plan.items():
                model.params[name][...] = ckpt.float32(key)
            wte = model.params["transformer.wte.weight"]
            if lm_head is not None and not np.array_equal(ckpt.float32(lm_head), wte):
                raise ValueError("lm_head.weight differs from transformer.wte.weight: untied output "
                                 "embeddings are not supported")
        return model

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under their HF names."""
        with self._lock:
            return {name: v.copy() for name, v in self.params.items()}

    def load_state_dict(self, tensors: Dict[str, np.ndarray]) -> None:
        """Copy HF-named tensors into the parameters; every parameter must be
        present with its shape (ValueError otherwise)."""
        arrays = {key: np.asarray(value) for key, value in tensors.items()}
        plan, lm_key = _load_plan(self.config, {k: (a.shape, a.dtype.kind == "f") for k, a in arrays.items()})
        named = {name: arrays[key] for name, key in plan.items()}
        if lm_key is not None:
            lm = arrays[lm_key]
            wte = named["transformer.wte.weight"]
            if lm.shape != wte.shape or not np.array_equal(lm, wte):
                raise ValueError("lm_head.weight differs from transformer.wte.weight: untied output "
                                 "embeddings are not supported")
        with self._lock:
            for name, value in named.items():
                self.params[name][...] = value
            self.reset()

    # ---- inference with a KV cache (the interface GenerationMixin builds on)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer given to from_pretrained or assigned here (needed for
        text prompts and stop strings)."""
        if self._tokenizer is None:
            raise ValueError("this GPT-2 model has no tokenizer: pass tokenizer= to from_pretrained "
                             "or assign model.tokenizer")
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tok: Any) -> None:
        self._tokenizer = tok

    def reset(self) -> None:
        """Empty the KV cache (and rebuild the inference weights from the parameters on next use:
        call it after editing parameters by hand)."""
        with self._lock:
            self._cached = []
            self._runtime = None

    def _step_token(self, token: int) -> np.ndarray:
        # the runtime as built by the prefill: _live() would hash a sample of the parameters per token
        with self._lock:
            assert self._runtime is not None  # generation prefills first
            logits = self._runtime.forward(np.array((token,), dtype=np.int32), False)
            self._cached.append(token)
            return logits

    def _live(self) -> _C.DecoderModel:
        """The runtime over the current parameters: rebuilt (cache emptied) when n_ctx or the
        parameters changed since it was built (training steps change nearly every parameter; a
        strided sample of them tells)."""
        key = (self.n_ctx, self._params[::257].tobytes())
        if self._runtime is None or key != self._runtime_key:
            self._runtime = _C.DecoderModel(*runtime_weights(self.config, self.params, self.n_ctx))
            self._runtime_key = key
            self._cached = []
        return self._runtime

    def __repr__(self) -> str:
        c = self.config
        return (f"GPT2LMHeadModel(layers={c.n_layer}, n_embd={c.n_embd}, heads={c.n_head}, "
                f"vocab={c.vocab_size}, n_positions={c.n_positions}, parameters={self.num_parameters():,})")


def runtime_weights(cfg: GPT2Config, p: Dict[str, np.ndarray], n_ctx: int
                    ) -> Tuple[Dict[str, Any], Dict[str, Any], List[Any], bool]:
    """(spec, tensors, rope tables, release) of the decoder runtime for these parameters: the
    Conv1D matrices (in, out) transposed into (out, in) copies, the rest used in place."""
    C, F, L = cfg.n_embd, cfg.inner_size, cfg.n_layer

    def mat(a: np.ndarray) -> Tuple[np.ndarray, int, int, int]:
        a = np.ascontiguousarray(a, dtype=np.float32)
        return (a, 0, a.shape[0], a.shape[1])

    wte = mat(p["transformer.wte.weight"])
    t: Dict[str, Any] = {"token_embd": wte, "output": wte, "position_embd": mat(p["transformer.wpe.weight"][:n_ctx]),
                         "output_norm": p["transformer.ln_f.weight"], "output_norm.bias": p["transformer.ln_f.bias"]}
    for i in range(L):
        h, b = f"transformer.h.{i}.", f"blk.{i}."
        qkv, qkv_b = p[h + "attn.c_attn.weight"].T, p[h + "attn.c_attn.bias"]
        for j, slot in enumerate(("attn_q", "attn_k", "attn_v")):
            t[b + slot] = mat(qkv[j * C:(j + 1) * C])
            t[b + slot + ".bias"] = np.ascontiguousarray(qkv_b[j * C:(j + 1) * C])
        t[b + "attn_output"], t[b + "attn_output.bias"] = mat(p[h + "attn.c_proj.weight"].T), p[h + "attn.c_proj.bias"]
        t[b + "ffn_up"], t[b + "ffn_up.bias"] = mat(p[h + "mlp.c_fc.weight"].T), p[h + "mlp.c_fc.bias"]
        t[b + "ffn_down"], t[b + "ffn_down.bias"] = mat(p[h + "mlp.c_proj.weight"].T), p[h + "mlp.c_proj.bias"]
        t[b + "attn_norm"], t[b + "attn_norm.bias"] = p[h + "ln_1.weight"], p[h + "ln_1.bias"]
        t[b + "ffn_norm"], t[b + "ffn_norm.bias"] = p[h + "ln_2.weight"], p[h + "ln_2.bias"]
    sizes = dict(vocab_size=cfg.vocab_size, hidden_size=C, n_layer=L, n_head=cfg.n_head, n_kv_head=cfg.n_head,
                 head_dim=C // cfg.n_head, ffn_size=F)
    s = spec(sizes, eps=float(cfg.layer_norm_epsilon), norm="layer", act="gelu", rope="none")
    return {**s, "n_ctx": n_ctx}, t, [], False


_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of old checkpoints


def _open_safetensors(d: Path) -> Any:
    """The directory's safetensors files (one, or the shards of model.safetensors.index.json) with
    their headers parsed and checked against the file sizes; the weights are mapped, not read."""
    from .hfdir import HFCheckpoint

    if not (d / WEIGHTS_NAME).is_file() and not (d / (WEIGHTS_NAME + ".index.json")).is_file():
        raise ValueError(f"{d} has no {WEIGHTS_NAME} (pyllm reads safetensors checkpoints only)")
    try:
        return HFCheckpoint(d)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the weights in {d}: {e}") from e


def _load_plan(config: GPT2Config, found: Dict[str, Tuple[Tuple[int, ...], bool]]
               ) -> Tuple[Dict[str, str], Optional[str]]:
    """Which stored tensor fills which parameter: ``found`` maps each stored name to (shape, is
    floating point). Returns {parameter: stored name} and the stored lm_head's name (or None);
    raises ValueError naming the first tensor that is missing, unexpected or of the wrong shape."""
    shapes = dict(parameter_shapes(config))
    plan: Dict[str, str] = {}
    lm_head = None
    for key in found:
        if key in ("lm_head.weight", "transformer.lm_head.weight"):
            lm_head = key
            continue
        name = key if key.startswith("transformer.") else "transformer." + key
        if name.endswith(_IGNORED):
            continue
        if name not in shapes:
            raise ValueError(f"unexpected tensor {key!r} in the checkpoint: not a GPT-2 parameter "
                             f"(n_layer={config.n_layer})")
        plan[name] = key
    missing = [n for n in shapes if n not in plan]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"the checkpoint lacks {', '.join(missing[:5])}{more}")
    for name, key in plan.items():
        shape, floating = found[key]
        if not floating:
            raise ValueError(f"tensor {name} is not floating point; expected float32, float16, bfloat16 or float64")
        if tuple(shape) != shapes[name]:
            raise ValueError(f"tensor {name} has shape {tuple(shape)}; the config implies {shapes[name]}")
    if lm_head is not None and tuple(found[lm_head][0]) != shapes["transformer.wte.weight"]:
        raise ValueError("lm_head.weight differs from transformer.wte.weight: untied output "
                         "embeddings are not supported")
    return plan, lm_head
