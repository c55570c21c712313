"""Make llama.cpp's reference quantizations of SmolLM2 from an F16 file of llama.cpp's own
converter, and (with --pyllm) pyllm's quantizations of the same file beside them. Not a test:
tests/test_quantize_mixtures.py makes its references the quicker way (the published Q4_1 file
decoded to F16 by pyllm); this is the recipe from a Hugging Face directory, as a user meets it.

    python scripts/make_reference_files.py --out /tmp/smollm2-refs [--pyllm] [--types Q4_K_M,Q8_0]

Steps (slow: a few minutes on two cores, most of it transformers loading the GGUF):
  1. the default SmolLM2-135M-Instruct GGUF (Q4_1) loaded by transformers (dequantized to fp32);
  2. saved as a Hugging Face directory: config, tokenizer, the state dict as safetensors
     (save_pretrained refuses GGUF-loaded models);
  3. converted to F16 by llama.cpp's convert_hf_to_gguf.py from the llama-cpp-python 0.3.36
     sdist (fetched with pip unless --llama-cpp DIR names an unpacked copy);
  4. quantized by llama.cpp's quantizer (llama_cpp.llama_model_quantize, the installed
     llama-cpp-python) to each file type; with --pyllm also by ``pyllm quantize``, and the
     tensor types and bytes of each pair compared.

Needs torch, transformers, safetensors, gguf, llama-cpp-python. Output under --out:
    hf/  SmolLM2-F16.gguf  llama-cpp/<TYPE>.gguf  [pyllm/<TYPE>.gguf]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"  # vendors llama.cpp's converter and its gguf-py
TYPES = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1", "Q5_K_S",
         "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS"]


def save_hf_dir(gguf_path: Path, out: Path) -> None:
    """transformers' fp32 reading of the GGUF file, written as a Hugging Face directory."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tok.save_pretrained(out)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


def fetch_llama_cpp(into: Path) -> Path:
    """The llama-cpp-python sdist's vendor/llama.cpp (convert_hf_to_gguf.py and gguf-py)."""
    import tarfile

    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                    "llama-cpp-python", LLAMA_CPP_SDIST, "-d", str(into)], check=True)
    (archive,) = into.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name[: -len(".tar.gz")] / "vendor" / "llama.cpp"


def convert_f16(llama_cpp: Path, hf_dir: Path, out: Path) -> None:
    """llama.cpp's converter, run as it is, in a child process with its own gguf-py first on the path."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1] + '/gguf-py', sys.argv[1]]; "
            "sys.argv = ['convert_hf_to_gguf.py', sys.argv[2], '--outtype', 'f16', '--outfile', sys.argv[3]]; "
            "runpy.run_path(sys.path[1] + '/convert_hf_to_gguf.py', run_name='__main__')")
    subprocess.run([sys.executable, "-c", code, str(llama_cpp), str(hf_dir), str(out)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated llama.cpp file types")
    ap.add_argument("--llama-cpp", type=Path, default=None, help="an unpacked vendor/llama.cpp (else fetched)")
    ap.add_argument("--pyllm", action="store_true", help="also quantize with pyllm and compare")
    args = ap.parse_args()
    import mixtures

    from pyllm.hub import resolve_model_file

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    hf = out / "hf"
    if not (hf / "model.safetensors").is_file():
        print("transformers -> Hugging Face directory", flush=True)
        save_hf_dir(resolve_model_file("SmolLM2-135M-Instruct"), hf)
    f16 = out / "SmolLM2-F16.gguf"
    if not f16.is_file():
        print("convert_hf_to_gguf.py -> F16", flush=True)
        if args.llama_cpp is not None:
            convert_f16(args.llama_cpp, hf, f16)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                convert_f16(fetch_llama_cpp(Path(tmp)), hf, f16)
    for name in args.types.split(","):
        ref = mixtures.make_mixture(f16, name, out / "llama-cpp")
        line = f"{name:7s} llama.cpp {mixtures.tensor_types(ref)}"
        if args.pyllm:
            import numpy as np
            from gguf import GGUFReader

            import pyllm

            mine = out / "pyllm" / f"{name}.gguf"
            pyllm.quantize(f16, mine, type=name)
            a = {t.name: t for t in GGUFReader(str(mine)).tensors}
            b = {t.name: t for t in GGUFReader(str(ref)).tensors}
            same_types = {n: t.tensor_type for n, t in a.items()} == {n: t.tensor_type for n, t in b.items()}
            same_bytes = same_types and all(np.array_equal(np.asarray(a[n].data), np.asarray(b[n].data)) for n in a)
            line += f"; pyllm: types {'equal' if same_types else 'DIFFER'}, bytes {'equal' if same_bytes else 'differ'}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
