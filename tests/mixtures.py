"""The GGUF file types llama.cpp's own quantizer writes, made from the default
model, and what transformers + torch fp32 answers on each (shared by
tests/test_mixtures.py, test_quantize_types.py, test_quantize_mixtures.py,
bench/model.py and scripts/record_mixture_refs.py).

A mixture is made by ``llama_cpp.llama_model_quantize`` (llama-cpp-python)
from the default SmolLM2-135M-Instruct file, requantizing its tensors (the
file is Q4_1), in a child process (llama.cpp writes its log to stderr and a
crash there must not take the tests down). Its width, 576, is not a multiple
of 256, so llama.cpp's K recipes give most matrices a 32-element fallback
type: every mixture still holds the K type it is named after on the
matrices that can take it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

# file type names as llama.cpp's quantizer knows them (LLAMA_FTYPE_MOSTLY_<name>)
MIXTURES = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1", "Q5_K_S",
            "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS"]

# the reference's prompt: the chat question of the README, as ids, and how far greedy goes
CHAT = "What is the capital of France?"
NEW_TOKENS = 16

_QUANTIZE = r"""
import ctypes, sys, llama_cpp
src, dst, name = sys.argv[1:4]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + name)
p.allow_requantize = True
p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)))
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mixture_dir(src: Path) -> Path:
    """Where llama.cpp's files made from ``src`` are kept: one directory per source file and
    llama.cpp build under the pyllm cache, so later runs reuse them."""
    import llama_cpp

    from pyllm.hub import cache_dir

    return cache_dir() / "mixtures" / f"{sha256(src)[:16]}-llama-cpp-{llama_cpp.__version__}"


def make_mixture(src: Path, name: str, out_dir: Path) -> Path:
    """``out_dir/<name>.gguf`` quantized by llama.cpp from ``src`` (kept when it exists: the
    quantizer is deterministic for one llama.cpp build)."""
    out = out_dir / f"{name}.gguf"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    proc = subprocess.run([sys.executable, "-c", _QUANTIZE, str(src), str(part), name], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0 or not part.is_file():
        raise RuntimeError(f"llama.cpp failed to quantize {src.name} to {name} (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    part.replace(out)
    return out


def hf_directory_from_gguf(path: Path, out: Path) -> Path:
    """The Hugging Face directory transformers makes of a GGUF file: its GGUF loader's model
    (weights dequantized by the gguf package, Q/K rows put back in HF's order) written as fp32
    safetensors with its config, and its tokenizer. ``save_pretrained`` refuses GGUF-loaded
    models, so the state dict is written directly (the tied head left out, as transformers does)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    kw = {"gguf_file": path.name}
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kw)
    tied = bool(model.config.tie_word_embeddings)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(path.parent, **kw).save_pretrained(out)
    return out


def tensor_types(path: Path) -> Dict[str, int]:
    """How many tensors of each GGUF type the file holds."""
    from gguf import GGUFReader

    return dict(sorted(Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors).items()))


def transformers_reference(path: Path, prompt_ids: List[int], new_tokens: int = NEW_TOKENS) -> dict:
    """transformers + torch fp32 on the GGUF file (dequantized by the gguf package): the greedy
    continuation and, at every generated position, the ten largest logits and the top-1 margin."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=0)[0].tolist()
        logits = model(torch.tensor([out])).logits[0, len(prompt_ids) - 1 : len(out) - 1].float()
    top = torch.topk(logits, 10, dim=-1)
    return {
        "new_ids": out[len(prompt_ids):],
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "margin": (top.values[:, 0] - top.values[:, 1]).tolist(),
    }


def chat_ids(tokenizer) -> List[int]:
    return [int(i) for i in tokenizer.apply_chat_template([{"role": "user", "content": CHAT}],
                                                          add_generation_prompt=True, tokenize=True)]


def tensor_type_map(path: Path) -> Dict[str, str]:
    """The GGUF type of every tensor of the file, by name."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


# llama.cpp's AMX matrix kernels (its extra buffer type on CPUs with AMX) crash with
# SIGSEGV in ggml_backend_amx_mul_mat on a prompt of more than a few tokens
# (llama-cpp-python 0.3.36): there, models load without the extra (repacking)
# buffer types. Code for a child process, run before it makes a llama_cpp.Llama.
LLAMA_CPP_WITHOUT_AMX = r"""
import llama_cpp.llama_cpp as _lc
try:
    _amx = "amx_int8" in open("/proc/cpuinfo").read()
except OSError:
    _amx = False
if _amx:
    _default = _lc.llama_model_default_params
    def _no_extra_buffers():
        p = _default()
        p.use_extra_bufts = False
        return p
    _lc.llama_model_default_params = _no_extra_buffers
"""

_PERPLEXITY = LLAMA_CPP_WITHOUT_AMX + r"""
import json, sys
import numpy as np
import llama_cpp
path, text_file = sys.argv[1:3]
llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=1024, logits_all=True, n_threads=2, verbose=False)
ids = llm.tokenize(open(text_file, encoding="utf-8").read().encode("utf-8"), add_bos=True)
llm.eval(ids)
logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)   # (T-1, V): position t predicts ids[t+1]
logits -= logits.max(axis=1, keepdims=True)
logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
nll = -logp[np.arange(len(ids) - 1), ids[1:]]
print(json.dumps({"perplexity": float(np.exp(nll.mean())), "tokens": len(ids)}))
"""


def llama_cpp_perplexity(path: Path, text_file: Path) -> Dict[str, float]:
    """llama.cpp's (llama-cpp-python's) perplexity of the file on a text, from its logits at
    every position (``logits_all``), in a child process: {"perplexity", "tokens"}."""
    import json

    proc = subprocess.run([sys.executable, "-c", _PERPLEXITY, str(path), str(text_file)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp failed on {path.name} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
