# Generated bad input for every public entry point, run by tests/test_adversarial.py in a child
# process (timeout, memory cap). Not a test module itself: `python adversarial_probes.py NAME N SEED`.
"""Each probe draws inputs with hypothesis and calls one family of entry points. An input may
be refused with a clear Python exception (ValueError / TypeError / OSError with a message
naming the problem) or accepted, and then the result is checked: against numpy for the ops,
by round trip and range for tokenizers, by shape and range for models. Anything else (another
exception, a MemoryError under the cap, a signal, a hang) fails the run; hypothesis prints the
smallest input that did it.

    python tests/adversarial_probes.py ops 50 0      # 50 examples, derandomized (seed 0 = fixed)
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TINY = Path(__file__).resolve().parent / "data" / "tiny"
CLEAR = (ValueError, TypeError, OSError)
WORK = Path(tempfile.mkdtemp(prefix="pyllm-adversarial-"))


# what the interpreter says when a bad value reaches code that never checked it: such a message
# names no argument, so it is a finding even as a TypeError
INTERNAL = re.compile(r"not supported between instances|object is not (iterable|subscriptable|callable)|"
                      r"unhashable type|has no attribute|can't multiply sequence|must be real number, not|"
                      r"could not convert string to float|invalid literal for int\(\)|cannot be interpreted as an "
                      r"integer|indices must be integers|unsupported operand type|argument must be a string or a "
                      r"(real )?number|incompatible function arguments|takes \d+ positional argument")


def refused_clearly(e: BaseException) -> bool:
    """A Python exception a user can act on: the expected kinds, with a message of pyllm's own."""
    return isinstance(e, CLEAR) and not isinstance(e, MemoryError) and len(str(e)) >= 8 \
        and not INTERNAL.search(str(e))


TALLY = {"accepted": 0, "refused": 0}  # how many calls got through (their results then checked)


def attempt(fn: Callable[[], Any]) -> Optional[Any]:
    """fn() or None when it refused clearly; any other exception propagates (a finding)."""
    try:
        out = fn()
    except BaseException as e:  # noqa: BLE001 - the point is to look at every exception
        if refused_clearly(e):
            TALLY["refused"] += 1
            return None
        raise AssertionError(f"not a clear refusal: {type(e).__name__}: {e}") from e
    TALLY["accepted"] += 1
    return out


# ---- values of every kind, for arguments that expect one kind

ODD_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=1e3), st.text(max_size=5), st.binary(max_size=5),
    st.sampled_from([np.int64(3), np.float32(0.5), np.bool_(True), np.uint64(2**63 + 5), np.float64("nan")]),
)
ODD = st.one_of(ODD_SCALARS, st.lists(ODD_SCALARS, max_size=4), st.dictionaries(st.text(max_size=3), ODD_SCALARS,
                                                                                  max_size=2))
DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]


@st.composite
def arrays(draw: Any, max_dims: int = 4, max_side: int = 6, min_dims: int = 0) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims)))
    dtype = draw(st.sampled_from([np.float32] * 6 + DTYPES))  # mostly what the ops take
    n = int(np.prod(shape)) if shape else 1
    special = draw(st.booleans())
    vals = draw(st.lists(st.floats(-30, 30, width=32), min_size=n, max_size=n))
    a = np.asarray(vals, dtype=np.float64).reshape(shape)
    if special and n:
        a.reshape(-1)[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with np.errstate(invalid="ignore"):
        a = a.astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly"]))
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif layout == "readonly":
        a.setflags(write=False)
    return a


def _finite_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and bool(np.isfinite(a).all())


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, numpy {want.shape}"
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, err_msg=what)


# ---- ops, against numpy in float64 on the float32 values

def _ref_softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    x = x.astype(np.float32).astype(np.float64)
    m = x.max(axis=axis, keepdims=True) if x.shape[axis] else x
    z = x - m
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def probe_ops(n: int, derandomize: bool) -> None:
    from pyllm import ops

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(x=arrays(), y=arrays(), w=arrays(max_dims=1), axis=st.integers(-5, 5), eps=ODD_SCALARS,
           which=st.sampled_from(["softmax", "log_softmax", "rms_norm", "layer_norm", "matmul", "gelu", "silu",
                                  "embedding", "sdpa", "rope", "linear"]))
    def check(x: np.ndarray, y: np.ndarray, w: np.ndarray, axis: int, eps: Any, which: str) -> None:
        if x.ndim and axis % 3 == 0:  # often operands that fit x: a weight of its width, a matrix after it
            w = np.ones(x.shape[-1], np.float32) * np.float32(0.5)
            k = max(1, abs(axis))
            y = (np.arange(x.shape[-1] * k, dtype=np.float32).reshape(x.shape[-1], k) / 7) if which != "linear" \
                else np.arange(k * x.shape[-1], dtype=np.float32).reshape(k, x.shape[-1]) / 7
            if which == "linear":
                w = np.ones(k, np.float32)
            if which == "sdpa" and x.ndim in (3, 4):
                y = x.copy()
        if which in ("softmax", "log_softmax"):
            got = attempt(lambda: getattr(ops, which)(x, axis=axis))
            if got is not None and _finite_float(x) and x.ndim and -x.ndim <= axis < x.ndim:
                _close(got, _ref_softmax(x, axis, which == "log_softmax"), which)
        elif which == "rms_norm":
            e = eps if isinstance(eps, float) and eps > 1e-3 and math.isfinite(eps) else 1e-5
            got = attempt(lambda: ops.rms_norm(x, w, eps=e))
            if got is not None and _finite_float(x) and _finite_float(w) and x.ndim and x.shape[-1] == w.shape[0]:
                xf = x.astype(np.float32).astype(np.float64)
                want = xf / np.sqrt((xf ** 2).mean(-1, keepdims=True) + e) * w.astype(np.float32) if x.shape[-1] \
                    else xf
                _close(got, want, "rms_norm")
        elif which == "layer_norm":
            got = attempt(lambda: ops.layer_norm(x, w, None))
            if got is not None and _finite_float(x) and _finite_float(w) and x.ndim and x.shape[-1] == w.shape[0] \
                    and x.shape[-1]:
                xf = x.astype(np.float32).astype(np.float64)
                mu, var = xf.mean(-1, keepdims=True), xf.var(-1, keepdims=True)
                _close(got, (xf - mu) / np.sqrt(var + 1e-5) * w.astype(np.float32), "layer_norm")
        elif which == "matmul":
            got = attempt(lambda: ops.matmul(x, y))
            if _finite_float(x) and _finite_float(y):
                try:
                    want = np.matmul(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
                except ValueError:
                    assert got is None, f"matmul accepted shapes numpy refuses: {x.shape} @ {y.shape}"
                else:
                    assert got is not None, f"matmul refused shapes numpy takes: {x.shape} @ {y.shape}"
                    _close(np.asarray(got), np.asarray(want), "matmul")
        elif which in ("gelu", "silu"):
            got = attempt(lambda: getattr(ops, which)(x))
            if got is not None and _finite_float(x):
                xf = x.astype(np.float32).astype(np.float64)
                want = xf / (1 + np.exp(-xf)) if which == "silu" else \
                    0.5 * xf * (1 + np.vectorize(math.erf)(xf / math.sqrt(2))) if xf.size else xf
                _close(got, want, which)
        elif which == "embedding":
            ids = x if x.dtype.kind != "f" else x.astype(np.int64) if _finite_float(x) else x
            got = attempt(lambda: ops.embedding(ids, y))
            if got is not None:
                assert ids.dtype.kind in "iu" and y.ndim == 2, "embedding accepted non-integer ids or a non-matrix"
                _close(got, y.astype(np.float32)[ids], "embedding")
        elif which == "sdpa":
            got = attempt(lambda: ops.scaled_dot_product_attention(x, y, y, is_causal=bool(axis % 2)))
            if got is not None:
                assert got.shape == x.shape[:-1] + y.shape[-1:], f"sdpa: {x.shape}, {y.shape} -> {got.shape}"
        elif which == "rope":
            got = attempt(lambda: ops.rope(x, theta=eps if isinstance(eps, float) else 10000.0))
            if got is not None:
                assert got.shape == x.shape
        elif which == "linear":
            got = attempt(lambda: ops.linear(x, y, w))
            if got is not None and _finite_float(x) and _finite_float(y) and _finite_float(w):
                want = x.astype(np.float32).astype(np.float64) @ y.astype(np.float32).T.astype(np.float64) + \
                    w.astype(np.float32)
                _close(got, want, "linear")

    check()


# ---- tokenizers

def _tokenizers() -> Dict[str, Any]:
    from pyllm import AutoTokenizer
    from pyllm.tokenizers import CharTokenizer

    return {"bpe": AutoTokenizer.from_pretrained(TINY / "gpt2" / "hf"),
            "spm": AutoTokenizer.from_pretrained(TINY / "llama2" / "hf"),
            "char": CharTokenizer.from_text("abcdefgh ijk\n.,é漢")}


TEXTS = st.one_of(st.text(max_size=60), st.text(alphabet="abcdefgh ijk\n.,é漢", max_size=60),
                  st.text(st.characters(codec=None), max_size=20),  # lone surrogates too
                  st.sampled_from(["", " ", "\x00", "<|endoftext|>" * 3, "\ufffd", "a" * 500]))
ID_INPUTS = st.one_of(st.lists(st.integers(-5, 1000), max_size=8), ODD, arrays(max_dims=2),
                      st.lists(st.lists(st.integers(0, 50), max_size=3), max_size=3))


def _all_ints(x: Any) -> bool:
    """Whether x holds only integers (Python or numpy, not bool), however nested."""
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "iu" or x.size == 0
    if isinstance(x, (list, tuple)):
        return all(_all_ints(v) for v in x)
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def probe_tokenizers(n: int, derandomize: bool) -> None:
    toks = _tokenizers()

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(sorted(toks)), text=TEXTS, ids=ID_INPUTS, kw=st.dictionaries(
        st.sampled_from(["padding", "truncation", "max_length", "add_special_tokens", "return_tensors"]), ODD,
        max_size=2))
    def check(name: str, text: str, ids: Any, kw: Dict[str, Any]) -> None:
        tok = toks[name]
        got = attempt(lambda: tok.encode(text))
        if got is not None:
            assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in got), got
            lone = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
            if name == "bpe" and not lone:
                assert tok.decode(got) == text, (text, got)
            if name == "char":
                assert tok.decode(got) == text
        else:
            assert name == "char" or any(0xD800 <= ord(c) <= 0xDFFF for c in text), f"{name} refused {text!r}"
        for fn in (tok.decode, tok.convert_ids_to_tokens, tok.batch_decode):
            out = attempt(lambda fn=fn: fn(ids))  # type: ignore[misc]
            if out is not None:
                assert _all_ints(ids), f"{fn.__name__} accepted non-integer ids {ids!r} -> {out!r}"
        attempt(lambda: tok(text, **kw))

    check()


# ---- model files: GGUF bytes and Hugging Face directories, mutated

def _use(model: Any) -> None:
    """A loaded model must answer with the right shapes and in-range ids."""
    V = model.config.vocab_size
    logits = model([1, 2, 3]).logits
    assert logits.shape == (1, 3, V), logits.shape
    out = model.generate([1, 2], max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 4) and out.min() >= 0 and out.max() < V, out


def probe_gguf(n: int, derandomize: bool) -> None:
    from pyllm import AutoModelForCausalLM, GGUFFile

    seeds = [(TINY / a / f"{a}-{t}.gguf").read_bytes() for a, t in (("llama3", "f32"), ("gpt2", "q8_0"),
                                                                     ("qwen2", "f16"))]
    path = WORK / "input.gguf"

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, len(seeds) - 1), edits=st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 255)),
                                                               max_size=6),
           cut=st.one_of(st.none(), st.integers(0, 200000)), word=st.one_of(st.none(), st.tuples(
               st.integers(0, 4000), st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**63, 2**64 - 1]))))
    def check(seed: int, edits: List[Any], cut: Optional[int], word: Any) -> None:
        data = bytearray(seeds[seed])
        for at, value in edits:
            data[at % len(data)] = value
        if word is not None:  # a length or count field made huge
            at = word[0] % max(len(data) - 8, 1)
            data[at:at + 8] = struct.pack("<Q", word[1])
        if cut is not None:
            del data[cut:]
        path.write_bytes(bytes(data))
        g = attempt(lambda: GGUFFile(str(path)))
        if g is None:
            return
        model = attempt(lambda: AutoModelForCausalLM.from_pretrained(str(path), n_ctx=32))
        if model is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt(lambda: _use(model))
            model.close()

    check()


CONFIG_KEYS = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "head_dim", "intermediate_size", "max_position_embeddings", "rms_norm_eps", "rope_theta",
               "tie_word_embeddings", "model_type", "hidden_act", "rope_scaling", "n_embd", "n_layer", "n_head",
               "n_positions", "layer_norm_epsilon", "activation_function", "n_inner", "bos_token_id"]
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=6),
                        st.lists(st.integers(-3, 3), max_size=3), st.sampled_from(["llama", "gpt2", "silu", 0, 1]),
                        st.dictionaries(st.sampled_from(["rope_type", "factor", "type"]), st.one_of(
                            st.floats(), st.text(max_size=6)), max_size=2))


def probe_hfdir(n: int, derandomize: bool) -> None:
    from pyllm import AutoModelForCausalLM

    sources = {"llama3": TINY / "llama3" / "hf", "gpt2": TINY / "gpt2" / "hf", "qwen3": TINY / "qwen3" / "hf"}

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(arch=st.sampled_from(sorted(sources)), edits=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES,
                                                                       max_size=3),
           header=st.lists(st.tuples(st.sampled_from(["shape", "dtype", "data_offsets", "drop"]), JSON_VALUES),
                           max_size=2), pick=st.integers(0, 1000), raw=st.one_of(st.none(), st.binary(max_size=40)))
    def check(arch: str, edits: Dict[str, Any], header: List[Any], pick: int, raw: Optional[bytes]) -> None:
        d = WORK / "hf"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(sources[arch], d)
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(edits)
        (d / "config.json").write_text(json.dumps(cfg))
        blob = (d / "model.safetensors").read_bytes()
        (hlen,) = struct.unpack("<Q", blob[:8])
        head = json.loads(blob[8:8 + hlen])
        for field, value in header:
            names = sorted(k for k in head if k != "__metadata__")
            if not names:
                break
            name = names[pick % len(names)]
            if field == "drop":
                head.pop(name)
            else:
                head[name][field] = value
        h = json.dumps(head).encode() if raw is None else raw
        (d / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + blob[8 + hlen:])
        model = attempt(lambda: AutoModelForCausalLM.from_pretrained(d, n_ctx=32))
        if model is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt(lambda: _use(model))

    check()


# ---- generate / stream / score on a tiny model

GEN_KW = {"max_new_tokens": st.integers(1, 8), "temperature": st.floats(0.1, 3), "top_k": st.integers(0, 500),
          "top_p": st.floats(0.05, 1), "do_sample": st.booleans(), "repetition_penalty": st.floats(0.5, 2),
          "seed": st.integers(0, 9), "num_beams": st.integers(1, 3), "num_return_sequences": st.integers(1, 2),
          "min_new_tokens": st.integers(0, 3), "stop_strings": st.lists(st.text(min_size=1, max_size=3), max_size=2),
          "no_repeat_ngram_size": st.integers(0, 3), "min_p": st.one_of(st.floats(0, 1), st.none()),
          "max_length": st.integers(1, 40), "typical_p": st.floats(0.05, 1), "frequency_penalty": st.floats(-2, 2)}
# the valid arguments, then (half the time) one of them given a value of another kind or range
GEN_ARGS = st.tuples(st.fixed_dictionaries({}, optional=GEN_KW), st.one_of(st.none(), st.tuples(
    st.sampled_from(sorted(GEN_KW)), st.one_of(ODD_SCALARS, st.integers(-3, 0), st.floats(-2, 0)))))
VALID_IDS = st.lists(st.integers(0, 383), min_size=1, max_size=12)
PROMPTS = st.one_of(VALID_IDS, VALID_IDS, VALID_IDS, VALID_IDS, VALID_IDS, st.text(min_size=1, max_size=30), st.lists(
                    st.integers(-3, 400), max_size=10), TEXTS, ODD, arrays(max_dims=2),
                    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x"]),
                                                    "content": st.text(max_size=10)}), max_size=2))


def probe_generate(n: int, derandomize: bool) -> None:
    from pyllm import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(TINY / "llama3" / "llama3-f32.gguf", n_ctx=48)
    V = model.config.vocab_size

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(prompt=PROMPTS, args=GEN_ARGS, how=st.sampled_from(["generate", "stream", "score"]),
           stride=st.one_of(st.none(), st.integers(1, 48), st.integers(-2, 60), ODD_SCALARS))
    def check(prompt: Any, args: Any, how: str, stride: Any) -> None:
        kw = dict(args[0])
        if args[1] is not None:
            kw[args[1][0]] = args[1][1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "generate":
                out = attempt(lambda: model.generate(prompt, **kw))
                if out is not None:
                    assert out.ndim == 2 and out.dtype.kind in "iu" and out.min() >= 0 and out.max() < V, out
            elif how == "stream":
                pieces = attempt(lambda: list(model.stream(prompt, **kw)))
                if pieces is not None:
                    assert all(isinstance(p, str) for p in pieces)
            else:
                res = attempt(lambda: model.score(prompt, stride=stride))
                if res is not None:
                    assert res.logprobs.shape == (len(res.token_ids) - 1,)
                    assert np.isfinite(res.perplexity) and res.scored.any()
                    assert not np.isnan(res.logprobs[: model.n_ctx - 1]).any()

    check()


# ---- training: arguments, datasets, a few steps

TRAIN_KW = {"max_steps": st.one_of(st.integers(1, 3), st.integers(-1, 3), ODD_SCALARS),
            "per_device_train_batch_size": st.one_of(st.integers(1, 3), st.integers(-1, 3), ODD_SCALARS),
            "learning_rate": st.one_of(st.floats(0, 1), st.floats(-1, 1), ODD_SCALARS),
            "weight_decay": st.floats(-1, 1),
            "gradient_accumulation_steps": st.integers(-1, 3), "warmup_steps": st.integers(-1, 3),
            "lr_scheduler_type": st.one_of(st.sampled_from(["linear", "cosine", "bogus"]), ODD_SCALARS),
            "max_grad_norm": st.one_of(st.floats(-1, 2), ODD_SCALARS), "adam_beta2": st.floats(-1, 2),
            "eval_strategy": st.sampled_from(["no", "steps", "epoch"]), "save_steps": st.integers(-1, 3),
            "seed": st.one_of(st.integers(0, 5), ODD_SCALARS)}


def probe_trainer(n: int, derandomize: bool) -> None:
    from pyllm import GPT2Config, GPT2LMHeadModel
    from pyllm.training import TokenDataset, Trainer, TrainingArguments

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(kw=st.fixed_dictionaries({}, optional=TRAIN_KW), tokens=st.one_of(
               st.lists(st.integers(0, 15), min_size=0, max_size=80).map(lambda v: np.asarray(v, dtype=np.uint16)),
               st.lists(st.integers(-2, 40), max_size=80).map(np.asarray), arrays(max_dims=2, max_side=40)),
           block=st.one_of(st.integers(1, 12), st.integers(-1, 12), ODD_SCALARS))
    def check(kw: Dict[str, Any], tokens: np.ndarray, block: Any) -> None:
        out = WORK / "train"
        shutil.rmtree(out, ignore_errors=True)
        args = attempt(lambda: TrainingArguments(str(out), disable_tqdm=True, logging_steps=1, **kw))
        data = attempt(lambda: TokenDataset(tokens, block))
        if args is None or data is None:
            return
        model = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_positions=16, n_embd=8, n_layer=1, n_head=2))
        if args.max_steps <= 0:
            return  # epochs of a random dataset: not what this probe is about
        trainer = attempt(lambda: Trainer(model, args, train_dataset=data, eval_dataset=data,
                                          log_file=io.StringIO()))
        if trainer is None:
            return
        try:
            res = trainer.train()
        except FloatingPointError as e:  # TrainingDivergedError: the loss or gradients became non-finite
            assert "training stopped at step" in str(e)
            return
        except BaseException as e:  # noqa: BLE001
            if not refused_clearly(e):
                raise
            return
        assert res.global_step == args.max_steps and math.isfinite(res.training_loss)

    check()


# ---- the command line

SAMPLING = ["-n", "--temperature", "--top-k", "--top-p", "--seed", "--min-p", "--do-sample", "--stop",
            "--repetition-penalty", "--no-repeat-ngram-size"]
MODEL = ["--threads", "--n-ctx"]
FLAGS = {"generate": SAMPLING + MODEL + ["--chat"], "perplexity": MODEL + ["--stride", "--max-tokens", "--json"],
         "bench": MODEL + ["--prompt-tokens", "--new-tokens", "--repeats", "--json"], "info": ["--json"],
         "train": ["--n-layer", "--n-head", "--n-embd", "--block-size", "--max-steps", "--batch-size", "--eval-every",
                   "--val-fraction", "--lr", "--resume", "--tokenizer", "--vocab-size", "--warmup", "--grad-accum",
                   "--eval-batches", "--save-every", "--grad-clip", "--threads", "--bogus"]}
SWITCHES = ("--do-sample", "--chat", "--json", "--resume")
CODES: Dict[Any, int] = {}
FLAG_VALUES = st.one_of(st.integers(-3, 40).map(str), st.sampled_from(["0", "1e-8", "nan", "inf", "-1", "", "x",
                                                                        "1.5", "char", "bpe", "99999999999"]))


def probe_cli(n: int, derandomize: bool) -> None:
    from pyllm import cli

    text = WORK / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 30, encoding="utf-8")
    bad = WORK / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(200))
    models = [str(TINY / "llama3" / "llama3-f32.gguf"), str(TINY / "gpt2" / "hf"), str(bad), str(WORK / "none")]

    @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(command=st.sampled_from(["generate", "perplexity", "bench", "info", "train"]),
           model=st.sampled_from(models), picks=st.lists(st.tuples(st.integers(0, 100), FLAG_VALUES), max_size=3))
    def check(command: str, model: str, picks: List[Any]) -> None:
        flags = [(FLAGS[command][i % len(FLAGS[command])], v) for i, v in picks]
        if command == "generate":
            argv = ["generate", "Once", "--model", model, "-q"]
        elif command == "perplexity":
            argv = ["perplexity", str(text), "--model", model, "-q", "--max-tokens", "60"]
        elif command == "bench":
            argv = ["bench", "--model", model, "--prompt-tokens", "4", "--new-tokens", "2", "--repeats", "1"]
        elif command == "info":
            argv = ["info", model]
        else:
            out = WORK / "run"
            shutil.rmtree(out, ignore_errors=True)
            argv = ["train", "--data", str(text), "--out", str(out), "--n-layer", "1", "--n-embd", "16",
                    "--n-head", "2", "--block-size", "16", "--batch-size", "2", "--max-steps", "2",
                    "--eval-every", "0", "--no-progress"]
        for flag, value in flags:
            argv += [flag] if flag in SWITCHES else [flag, value]
        if command in ("generate", "bench") and not any(f in ("-n", "--max-new-tokens") for f, _ in flags):
            argv += ["-n", "3"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse: a malformed command line
                code = e.code
        said = err.getvalue()
        CODES[code] = CODES.get(code, 0) + 1
        assert code in (0, 1, 2), (argv, code, said[-500:])
        assert "Traceback" not in said, (argv, said[-2000:])
        if code == 1:
            assert "pyllm: error: " in said, (argv, said[-500:])

    check()
    print(f"cli exit codes: {CODES}")


PROBES = {"ops": probe_ops, "tokenizers": probe_tokenizers, "gguf": probe_gguf, "hfdir": probe_hfdir,
          "generate": probe_generate, "trainer": probe_trainer, "cli": probe_cli}


def main() -> None:
    name, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import pyllm

    pyllm.set_num_threads(1)
    try:
        PROBES[name](n, derandomize=seed == 0)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{name}: {n} examples, no finding ({TALLY['accepted']} calls accepted and checked, "
          f"{TALLY['refused']} refused clearly)")


if __name__ == "__main__":
    main()
