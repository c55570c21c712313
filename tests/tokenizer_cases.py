"""The tokenizer fixtures of tests/data/tokenizers (written by scripts/make_tokenizer_fixtures.py):
the shared texts, transformers' recorded answers, and pyllm's tokenizer for each recorded case.
Not a test module."""

from __future__ import annotations

import gzip
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "tokenizers"
TEXTS: List[str] = json.loads((FIXTURES / "texts.json").read_text(encoding="utf-8"))
with gzip.open(FIXTURES / "refs.json.gz") as _f:
    REFS: Dict[str, Any] = json.loads(_f.read())
CASES = sorted(k for k in REFS if k != "versions")
SPM_DIRS = ["llama_tiny", "llama_medium", "mistral_tiny", "gemma_tiny", "spm_file_pipeline"]


@lru_cache(maxsize=None)
def smollm2_metadata() -> Dict[str, Any]:
    with gzip.open(DATA / "smollm2_tokenizer.json.gz") as f:
        md: Dict[str, Any] = json.loads(f.read())
    return md


def bytelevel_dir(name: str, out: Path) -> Path:
    """A directory with SmolLM2's vocabulary and the variant ``name``'s tokenizer.json fields and config."""
    from pyllm.tokenizers import BPETokenizer
    from pyllm.tokenizers.files import bpe_to_hf_json

    variant = json.loads((FIXTURES / "bytelevel_variants.json").read_text(encoding="utf-8"))[name]
    obj = bpe_to_hf_json(BPETokenizer.from_gguf_metadata(smollm2_metadata()))
    for key, value in variant["tokenizer"].items():
        if key == "model":
            obj["model"].update(value)
        else:
            obj[key] = value
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(variant["config"], ensure_ascii=False), encoding="utf-8")
    return out


def write_tokenizer_gguf(md: Dict[str, Any], path: Path) -> Path:
    """A GGUF file holding only byte-level tokenizer metadata (and general.architecture = llama)."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    g = {k[len("tokenizer.ggml."):]: v for k, v in md.items() if k.startswith("tokenizer.ggml.")}
    w.add_tokenizer_model(g["model"])
    w.add_tokenizer_pre(g["pre"])
    w.add_token_list(g["tokens"])
    w.add_token_types(g["token_type"])
    w.add_token_merges(g["merges"])
    for key, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                     ("unknown_token_id", w.add_unk_token_id), ("padding_token_id", w.add_pad_token_id)):
        if g.get(key) is not None:
            add(g[key])
    if g.get("add_bos_token") is not None:
        w.add_add_bos_token(g["add_bos_token"])
    if md.get("tokenizer.chat_template"):
        w.add_chat_template(md["tokenizer.chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def model_only_dir(name: str, out: Path) -> Path:
    """A fixture directory without its tokenizer.json (tokenizer.model and the config only)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in ("tokenizer.model", "tokenizer_config.json", "chat_template.jinja"):
        if (FIXTURES / name / f).is_file():
            shutil.copy(FIXTURES / name / f, out / f)
    return out


def case_source(case: str, tmp: Path) -> Path:
    """The file or directory a recorded case was made from (built under ``tmp`` when it is not stored)."""
    parts = case.split("/")
    if parts[0] == "smollm2":
        if parts[-1] == "dir":
            return bytelevel_dir(parts[1], tmp / parts[1])
        md = dict(smollm2_metadata(), **{"tokenizer.ggml.pre": parts[1][:-len(".gguf")]})
        return write_tokenizer_gguf(md, tmp / parts[1])
    if parts[1] == "dir":
        return FIXTURES / parts[0]
    if parts[1] == "model":
        return model_only_dir(parts[0], tmp / parts[0])
    return FIXTURES / parts[0] / parts[1]


def load_case(case: str, tmp: Path) -> Any:
    """pyllm's tokenizer for a recorded case."""
    from pyllm.tokenizers import load_tokenizer, tokenizer_from_gguf_metadata

    parts = case.split("/")
    if parts[0] == "smollm2" and parts[-1].endswith(".gguf"):
        return tokenizer_from_gguf_metadata(dict(smollm2_metadata(), **{"tokenizer.ggml.pre": parts[1][:-5]}))
    return load_tokenizer(case_source(case, tmp))
