"""The `pyllm` command line: generate, chat, perplexity, bench, info, pull.
Each command is a thin layer over the Python API; no logic the API lacks."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Dict, List, Optional


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load(args: argparse.Namespace) -> Any:
    from .models import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, n_threads=args.threads, n_ctx=args.n_ctx)
    if getattr(args, "verbose", False):
        _err(f"[loaded {args.model} in {time.perf_counter() - t0:.2f} s]")
    return model


def _gen_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kw = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens, do_sample=args.do_sample,
              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
              typical_p=args.typical_p, repetition_penalty=args.repetition_penalty,
              frequency_penalty=args.frequency_penalty, presence_penalty=args.presence_penalty,
              no_repeat_ngram_size=args.no_repeat_ngram_size, seed=args.seed)
    if args.stop:
        kw["stop_strings"] = args.stop
    return kw


def _generate(args: argparse.Namespace) -> int:
    model = _load(args)
    prompt: Any = args.prompt
    if args.chat:
        prompt = [{"role": "user", "content": args.prompt}]
    ids = model.encode_prompt(prompt)
    if not args.chat:
        print(args.prompt, end="", flush=True)
    t0 = time.perf_counter()
    for piece in model.stream(ids, **_gen_kwargs(args)):
        print(piece, end="", flush=True)
    print(flush=True)
    dt = time.perf_counter() - t0
    n_tok = model.n_past - len(ids) + 1  # the last token is never fed back
    if not args.quiet:
        _err(f"[{len(ids)} prompt tokens, {n_tok} new tokens in {dt:.2f} s: {n_tok / max(dt, 1e-9):.1f} tok/s]")
    return 0


def _chat(args: argparse.Namespace) -> int:
    model = _load(args)
    messages: List[Dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    interactive = sys.stdin.isatty()
    if interactive:
        _err("pyllm chat: type a message; /reset clears the history, /exit (or Ctrl-D) quits.")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        messages.append({"role": "user", "content": line})
        reply = []
        t0 = time.perf_counter()
        for piece in model.stream(messages, **_gen_kwargs(args)):
            reply.append(piece)
            print(piece, end="", flush=True)
        print(flush=True)
        text = "".join(reply).strip()
        messages.append({"role": "assistant", "content": text})
        if args.verbose:
            _err(f"[{time.perf_counter() - t0:.2f} s]")
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    model = _load(args)
    with open(args.file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if args.max_tokens:
        ids = ids[: args.max_tokens]
    if len(ids) < 2:
        raise ValueError(f"{args.file} has fewer than two tokens")
    if not args.quiet:
        _err(f"[scoring {len(ids)} tokens of {args.file} with n_ctx={model.n_ctx}, stride={args.stride or model.n_ctx // 2}]")
    t0 = time.perf_counter()
    res = model.score(ids, stride=args.stride)
    dt = time.perf_counter() - t0
    out = {"file": args.file, "tokens": len(ids), "perplexity": res.perplexity, "nll": res.nll,
           "seconds": dt, "tokens_per_second": len(ids) / dt}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"perplexity {res.perplexity:.4f} over {len(ids)} tokens ({len(ids) / dt:.0f} tok/s)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import statistics

    import numpy as np

    t0 = time.perf_counter()
    model = _load(args)
    load = time.perf_counter() - t0
    prompt = (np.arange(args.prompt_tokens) * 7919 + 13) % model.config.vocab_size
    pf, dc = [], []
    for _ in range(args.repeats):
        model.reset()
        t0 = time.perf_counter()
        model.step(prompt)
        pf.append(time.perf_counter() - t0)
        tok = 0
        t0 = time.perf_counter()
        for _ in range(args.new_tokens):
            tok = int(np.argmax(model.step([tok])))
        dc.append(time.perf_counter() - t0)
    out = {"model": args.model, "threads": model_threads(), "load_s": load,
           "prefill_tok_s": args.prompt_tokens / statistics.median(pf),
           "decode_tok_s": args.new_tokens / statistics.median(dc)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"load {load:.2f} s | prefill {out['prefill_tok_s']:.1f} tok/s ({args.prompt_tokens}-token prompt) | "
              f"decode {out['decode_tok_s']:.1f} tok/s ({args.new_tokens} tokens) | {out['threads']} threads, "
              f"median of {args.repeats}")
    return 0


def model_threads() -> int:
    import pyllm

    return pyllm.get_num_threads()


def _model_info(name_or_path: str, as_json: bool) -> int:
    from collections import Counter

    from . import hub
    from .models import GGUFFile
    from .models.llama import LlamaConfig

    path = hub.resolve_model_file(name_or_path)
    f = GGUFFile(path)
    md = f.metadata
    info: Dict[str, Any] = {
        "path": str(path),
        "size_mb": round(f.file_size / 1e6, 1),
        "architecture": md.get("general.architecture"),
        "name": md.get("general.name"),
        "tensors": len(f.tensors),
        "tensor_types": dict(Counter(t.type_name for t in f.tensors.values())),
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

    print(hub.pull(args.name or hub.DEFAULT_MODEL))
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    from .hub import DEFAULT_MODEL

    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"a .gguf path or registered name (default {DEFAULT_MODEL})")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length to allocate (default: min(trained, 4096))")
    p.add_argument("--verbose", "-v", action="store_true")


def _sampling_args(p: argparse.ArgumentParser, max_new: int) -> None:
    p.add_argument("--max-new-tokens", "-n", type=int, default=max_new)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--typical-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--no-repeat-ngram-size", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyllm", description="Run transformer language models on the CPU.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="continue a prompt, streaming the text")
    p.add_argument("prompt")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the chat template")
    p.add_argument("--quiet", "-q", action="store_true", help="no timing line on stderr")
    _model_args(p)
    _sampling_args(p, 128)
    p.set_defaults(func=_generate)

    p = sub.add_parser("chat", help="an interactive chat using the model's chat template")
    p.add_argument("--system", default=None, help="a system message")
    _model_args(p)
    _sampling_args(p, 256)
    p.set_defaults(func=_chat)

    p = sub.add_parser("perplexity", help="perplexity of a text file (sliding window)")
    p.add_argument("file")
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true")
    _model_args(p)
    p.set_defaults(func=_perplexity)

    p = sub.add_parser("bench", help="prefill and decode speed in tokens/s")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    _model_args(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("info", help="the CPU features, kernel ISA and threads in use; or a model's architecture")
    p.add_argument("model", nargs="?", help="a .gguf path or registered model name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_info)

    p = sub.add_parser("pull", help="fetch a registered model into the local cache")
    p.add_argument("name", nargs="?", default=None, help="registered model name (default: the default model)")
    p.set_defaults(func=_pull)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        _err(f"pyllm: error: {e}")
        return 1
    except KeyboardInterrupt:
        _err("")
        return 130


if __name__ == "__main__":
    sys.exit(main())
