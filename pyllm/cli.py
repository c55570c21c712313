"""The `pyllm` command line: info, pull (generation and training commands
build on these). Not a place for logic the Python API lacks."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import List, Optional


def _model_info(name_or_path: str, as_json: bool) -> int:
    from collections import Counter

    from . import hub
    from .models import GGUFFile
    from .models.llama import LlamaConfig

    path = hub.resolve_model_file(name_or_path)
    f = GGUFFile(path)
    md = f.metadata
    types = Counter(t.type_name for t in f.tensors.values())
    info = {
        "path": str(path),
        "size_mb": round(f.file_size / 1e6, 1),
        "architecture": md.get("general.architecture"),
        "name": md.get("general.name"),
        "tensors": len(f.tensors),
        "tensor_types": dict(types),
        "parameters": sum(math.prod(t.shape) for t in f.tensors.values()),
    }
    if info["architecture"] == "llama":
        info["config"] = LlamaConfig.from_gguf(f).to_dict()
    if as_json:
        print(json.dumps(info))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key}: {value}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import pyllm

    if args.model:
        return _model_info(args.model, args.json)
    info = pyllm.cpu_info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"pyllm {pyllm.__version__}")
        for key, value in info.items():
            if isinstance(value, list):
                value = ", ".join(value)
            print(f"  {key}: {value}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from . import hub

    name = args.name or hub.DEFAULT_MODEL
    print(hub.pull(name))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="the CPU features, kernel ISA and threads in use; or a model's architecture")
    p_info.add_argument("model", nargs="?", help="a .gguf path or registered model name")
    p_info.add_argument("--json", action="store_true", help="print one JSON object")
    p_info.set_defaults(func=_info)
    p_pull = sub.add_parser("pull", help="fetch a registered model into the local cache")
    p_pull.add_argument("name", nargs="?", default=None, help="registered model name (default: the default model)")
    p_pull.set_defaults(func=_pull)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        print(f"pyllm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
