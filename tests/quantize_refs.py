"""llama.cpp's own quantization of the default model, for the quantizer and
`pyllm quantize` tests: ``llama_cpp.llama_model_quantize`` (llama-cpp-python)
run in a child process on the default SmolLM2 file (Q4_1: llama.cpp
dequantizes it and quantizes again, so the source weights are the file's
decoded values), one file per file type, cached under the pyllm cache
directory by source hash and llama-cpp-python version. Regenerate by deleting
that directory; scripts/make_quant_refs.py writes the same files by hand.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

_QUANTIZE = r"""
import ctypes, sys, llama_cpp
src, dst, name = sys.argv[1:4]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + name)
p.allow_requantize = True
p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)))
"""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ref_dir(src: Path) -> Path:
    import llama_cpp

    from pyllm.hub import cache_dir

    return cache_dir() / "mixtures" / f"{_sha256(src)[:16]}-llama-cpp-{llama_cpp.__version__}"


def llama_file(src: Path, ftype: str) -> Path:
    """``<ref_dir>/<ftype>.gguf``: llama.cpp's quantizer run on ``src`` for the file type
    LLAMA_FTYPE_MOSTLY_<ftype> (kept once written: it is deterministic for one build)."""
    out_dir = ref_dir(src)
    out = out_dir / f"{ftype}.gguf"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    proc = subprocess.run([sys.executable, "-c", _QUANTIZE, str(src), str(part), ftype], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0 or not part.is_file():
        raise RuntimeError(f"llama.cpp failed to quantize {src.name} to {ftype} (exit {proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    part.replace(out)
    return out
