"""Record what transformers + torch fp32 answers on each GGUF file type that
llama.cpp's own quantizer writes from the default model (Q2_K ... Q8_0,
IQ4_NL, IQ4_XS; tests/mixtures.py makes them). Not run by the tests; rerun it
to regenerate.

    python scripts/record_mixture_refs.py [--only Q4_K_M,Q6_K] [--work DIR]

For each file type it keeps the file's sha256 and tensor types, and the
greedy continuation of the README's chat question with the ten largest
logits and the top-1 margin at every generated position. The tests compare
pyllm with this record when they make a file with the same sha256 (the same
llama.cpp build quantizes the same way) and with transformers run live
otherwise. Needs llama-cpp-python, transformers, gguf, torch. Writes
tests/data/smollm2_mixtures.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "data" / "smollm2_mixtures.json"
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> int:
    import mixtures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated file types to redo (the others are kept)")
    parser.add_argument("--work", help="where the quantized files go (default: a temporary directory)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    import llama_cpp
    import torch
    import transformers

    from pyllm import AutoTokenizer
    from pyllm.hub import resolve_model_file

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    src = resolve_model_file("SmolLM2-135M-Instruct")
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() and args.only else {"files": {}}
    names = args.only.split(",") if args.only else mixtures.MIXTURES
    prompt = mixtures.chat_ids(AutoTokenizer.from_pretrained(src))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for name in names:
            path = mixtures.make_mixture(src, name, work)
            ref = mixtures.transformers_reference(path, prompt)
            doc["files"][name] = {"sha256": mixtures.sha256(path), "tensor_types": mixtures.tensor_types(path),
                                  **ref}
            print(f"{name}: {doc['files'][name]['tensor_types']}, smallest margin {min(ref['margin']):.3f}, "
                  f"new ids {ref['new_ids']}", flush=True)
    doc.update({
        "source": src.name,
        "source_sha256": mixtures.sha256(src),
        "quantizer": f"llama-cpp-python {llama_cpp.__version__} llama_model_quantize, allow_requantize",
        "versions": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "prompt_ids": prompt,
        "new_tokens": mixtures.NEW_TOKENS,
    })
    doc["files"] = {k: doc["files"][k] for k in mixtures.MIXTURES if k in doc["files"]}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
