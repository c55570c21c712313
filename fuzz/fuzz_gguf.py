"""Coverage-guided fuzzing of the GGUF reader (csrc/runtime/gguf.cpp) through
pyllm.GGUFFile, with atheris. Not a unit test: CONTRIBUTING.md says how to run it.

Every input is written to a file and opened: a malformed file must raise
ValueError, a well-formed one must give back consistent metadata and tensors.
Anything else (a crash, a sanitizer report, another exception) is a finding;
tests/test_fuzz_corpus.py replays the seeds and every saved finding.
"""

import os
import sys
import tempfile
from typing import Optional

import pyllm
import pyllm.quant
from pyllm.tokenizers import BPETokenizer

_path: Optional[str] = None


def check_gguf(data: bytes) -> None:
    global _path
    if _path is None:
        tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
        _path = os.path.join(tempfile.mkdtemp(prefix="pyllm-fuzz-", dir=tmp), "input.gguf")
    with open(_path, "wb") as f:
        f.write(data)
    try:
        g = pyllm.GGUFFile(_path)
    except ValueError:
        return
    assert g.version in (2, 3), g.version
    md = g.metadata
    assert all(isinstance(k, str) for k in md)
    for name, info in g.tensors.items():
        raw = g.tensor_bytes(name)
        assert raw.nbytes == info.nbytes and info.offset + info.nbytes <= g.file_size, name
        n = 1
        for d in info.shape:
            n *= d
        if n <= 4096 and info.type_name in pyllm.quant.SUPPORTED_TYPES:
            out = pyllm.quant.dequantize(raw, info.type_name, info.shape)
            assert out.shape == info.shape, (name, out.shape, info.shape)
    if md.get("tokenizer.ggml.model") == "gpt2":
        try:
            tok = BPETokenizer.from_gguf_metadata(md)
        except (ValueError, TypeError):
            return
        ids = tok.encode("Hello, world! 123")
        assert all(0 <= i < len(tok) for i in ids), ids
        tok.decode(ids)


def main() -> None:
    import atheris

    atheris.instrument_all()  # the Python layer; the native code is built instrumented (PYLLM_FUZZ)
    atheris.Setup(sys.argv, check_gguf)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
