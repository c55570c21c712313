"""Coverage-guided fuzzing of model-directory loading (config.json + model.safetensors:
pyllm/models/hfdir.py, the architecture loaders, GPT-2 directories) with atheris. Not a unit
test: CONTRIBUTING.md says how to run it.

An input is a config.json and a safetensors file joined by SEP (without SEP, the whole input is
the safetensors file beside the tiny llama3 config). Both are written into a directory and
loaded: a malformed pair must raise ValueError, TypeError or OSError; a model that loads must
answer a forward pass with (1, T, vocab_size) logits. Anything else is a finding;
tests/test_fuzz_corpus.py replays the seeds and every saved finding.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

SEP = b"\n--pyllm-fuzz--\n"
TINY = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny"
_dir: Optional[Path] = None


def seeds() -> Dict[str, bytes]:
    """name -> input: the tiny llama3, qwen3 and GPT-2 directories, whole and with cut weights."""
    out = {}
    for arch in ("llama3", "qwen3", "gpt2"):
        cfg = (TINY / arch / "hf" / "config.json").read_bytes()
        st = (TINY / arch / "hf" / "model.safetensors").read_bytes()
        out[arch] = cfg + SEP + st
        out[f"{arch}_cut"] = cfg + SEP + st[: len(st) // 2]
        out[f"{arch}_header"] = cfg + SEP + st[:4096]
    return out


def check_dir(data: bytes) -> None:
    global _dir
    from pyllm import AutoModelForCausalLM

    if _dir is None:
        tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
        _dir = Path(tempfile.mkdtemp(prefix="pyllm-fuzz-", dir=tmp)) / "model"
    shutil.rmtree(_dir, ignore_errors=True)
    _dir.mkdir(parents=True)
    cfg, sep, st = data.partition(SEP)
    if not sep:
        cfg, st = (TINY / "llama3" / "hf" / "config.json").read_bytes(), data
    (_dir / "config.json").write_bytes(cfg)
    (_dir / "model.safetensors").write_bytes(st)
    try:
        model = AutoModelForCausalLM.from_pretrained(_dir, n_ctx=16)
    except (ValueError, TypeError, OSError):
        return
    logits = model([1, 2, 3]).logits
    assert logits.shape == (1, 3, model.config.vocab_size), logits.shape


def main() -> None:
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, check_dir)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
