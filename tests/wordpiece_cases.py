"""Shared by the WordPiece tests: the recorded transformers results (scripts/record_wordpiece_refs.py)
and the model directories with each recorded normalizer setting."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
REFS = json.loads(gzip.decompress((DATA / "wordpiece_refs.json.gz").read_bytes()))


def model_dir() -> Path:
    from pyllm.hub import resolve_model_dir

    return resolve_model_dir("all-MiniLM-L6-v2")


def variant_dir(dst: Path, norm) -> Path:
    """all-MiniLM-L6-v2's tokenizer files with the normalizer set as ``norm`` (None: as shipped),
    written as scripts/record_wordpiece_refs.py writes them."""
    src = model_dir()
    dst.mkdir(parents=True, exist_ok=True)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    if norm is not None:
        tj["normalizer"].update(norm)
        cfg.update(do_lower_case=norm["lowercase"], strip_accents=norm["strip_accents"],
                   tokenize_chinese_chars=norm["handle_chinese_chars"])
    (dst / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (dst / "vocab.txt").write_bytes((src / "vocab.txt").read_bytes())
    return dst


def plain(enc) -> dict:
    """An encoding as the recorded lists (offsets as [start, end] lists)."""
    return {k: [[list(p) for p in r] if k == "offset_mapping" else list(r) for r in v] for k, v in enc.items()}
