"""The `pyllm` command line: generate, chat, perplexity, bench, info, pull, train, serve, classify, embed.
Each command is a thin layer over the Python API; no logic the API lacks."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    _err(f"pyllm: warning: {msg}")


def _cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _trained_context(name_or_path: str) -> Optional[int]:
    """The context the model was trained for (GGUF context_length, GPT-2 n_positions), or None."""
    from . import hub
    from .models import GGUFFile
    from .models.auto import _hf_dir

    d = _hf_dir(name_or_path)
    if d is not None:
        n = json.loads((d / "config.json").read_text(encoding="utf-8")).get("n_positions")
        return int(n) if isinstance(n, int) else None
    md = GGUFFile(hub.resolve_model_file(name_or_path)).metadata
    arch = md.get("general.architecture")
    n = md.get(f"{arch}.context_length")
    return int(n) if isinstance(n, int) else None


def _check_threads(args: argparse.Namespace) -> None:
    if args.threads is not None and not 1 <= args.threads <= 1 << 16:
        raise ValueError(f"--threads must be a positive number of threads, got {args.threads}")


def _load(args: argparse.Namespace) -> Any:
    from .models import AutoModelForCausalLM

    _check_threads(args)
    if args.threads is not None and args.threads > _cores():
        _warn(f"--threads {args.threads} is more than the {_cores()} cores this process may use; "
              "extra threads only wait for each other")
    n_ctx = args.n_ctx
    if n_ctx is not None:
        if n_ctx <= 0:
            raise ValueError(f"--n-ctx must be positive, got {n_ctx}")
        trained = _trained_context(args.model)
        if trained is not None and n_ctx > trained:
            _warn(f"--n-ctx {n_ctx} is above the context the model was trained for ({trained} tokens); "
                  f"using {trained}")
            n_ctx = trained
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, n_threads=args.threads, n_ctx=n_ctx)
    except (RuntimeError, UnicodeDecodeError, KeyError) as e:  # a malformed file, said as such
        raise ValueError(f"cannot load {args.model}: {e}") from e
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


def _fit_new_tokens(model: Any, n_prompt: int, args: argparse.Namespace, kw: Dict[str, Any],
                    quiet: bool = False) -> Dict[str, Any]:
    """``kw`` with max_new_tokens set: the one asked for, or the command's default clamped to what
    the context leaves after the prompt (a prompt that fills the context is an error)."""
    room = model.n_ctx - n_prompt
    if room <= 0:
        raise ValueError(f"the prompt is {n_prompt} tokens and the model's context is n_ctx={model.n_ctx} "
                         "(what it was trained for, or --n-ctx): no room for new tokens; shorten the prompt")
    if args.max_new_tokens is not None:
        return kw  # the caller's choice; generate says if it does not fit
    n = min(args.default_new_tokens, room)
    if n < args.default_new_tokens and not quiet:
        _err(f"[generating up to {n} tokens: the {n_prompt}-token prompt leaves {room} of the context's "
             f"{model.n_ctx}]")
    return {**kw, "max_new_tokens": n}


def _generate(args: argparse.Namespace) -> int:
    model = _load(args)
    prompt: Any = args.prompt
    if args.chat:
        prompt = [{"role": "user", "content": args.prompt}]
    ids = model.encode_prompt(prompt)
    kw = _fit_new_tokens(model, len(ids), args, _gen_kwargs(args), quiet=args.quiet)
    pieces = model.stream(ids, **kw)  # checks the arguments before anything is printed
    if not args.chat:
        print(args.prompt, end="", flush=True)
    t0 = time.perf_counter()
    for piece in pieces:
        print(piece, end="", flush=True)
    print(flush=True)
    dt = time.perf_counter() - t0
    n_tok = model.n_past - len(ids) + 1  # the last token is never fed back
    if not args.quiet:
        _err(f"[{len(ids)} prompt tokens, {n_tok} new tokens in {dt:.2f} s: {n_tok / max(dt, 1e-9):.1f} tok/s]")
    return 0


CHAT_HELP = ("type a message; /reset clears the history, /exit (or Ctrl-D, or Ctrl-C here) quits; "
             "Ctrl-C during a reply stops it and keeps the part shown in the history.")


def chat_repl(model: Any, gen_kwargs: Dict[str, Any], args: argparse.Namespace,
              read_line: Callable[[], str], write: Callable[[str], None], interactive: bool) -> int:
    """The chat loop: ``read_line()`` returns a line ("" at the end of input); a KeyboardInterrupt
    while a reply streams stops that reply, keeps what was shown of it in the history and returns
    to the prompt; anywhere else (at the prompt) it quits, as the end of input does."""
    messages: List[Dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    try:
        if interactive or args.verbose:
            _err(f"pyllm chat: {CHAT_HELP}")
        while True:
            if interactive:
                write("> ")
            line = read_line()
            if not line:
                if interactive:
                    write("\n")
                return 0
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.strip() in ("/exit", "/quit"):
                return 0
            if line.strip() == "/reset":
                messages = messages[:1] if args.system else []
                continue
            messages.append({"role": "user", "content": line})
            t0 = time.perf_counter()
            ids = model.encode_prompt(messages)
            kw = _fit_new_tokens(model, len(ids), args, gen_kwargs, quiet=not args.verbose)
            reply: List[str] = []
            pieces = model.stream(ids, **kw)
            try:
                for piece in pieces:
                    reply.append(piece)
                    write(piece)
            except KeyboardInterrupt:
                pieces.close()
                write(" [stopped]")
            messages.append({"role": "assistant", "content": "".join(reply).strip()})
            write("\n")
            if args.verbose:
                _err(f"[{time.perf_counter() - t0:.2f} s]")
    except KeyboardInterrupt:
        write("\n")
        return 0


def _chat(args: argparse.Namespace) -> int:
    from .generation import GenerationConfig

    GenerationConfig().update(**_gen_kwargs(args)).validate()  # bad sampling flags stop before loading
    model = _load(args)

    def write(text: str) -> None:
        print(text, end="", flush=True)

    return chat_repl(model, _gen_kwargs(args), args, sys.stdin.readline, write, sys.stdin.isatty())


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
    scored = int(res.scored.sum())  # all but the first, unless --stride n_ctx leaves windows' first tokens out
    out = {"file": args.file, "tokens": len(ids), "scored": scored, "perplexity": res.perplexity, "nll": res.nll,
           "seconds": dt, "tokens_per_second": len(ids) / dt}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"perplexity {res.perplexity:.4f} over {scored} scored of {len(ids)} tokens "
              f"({len(ids) / dt:.0f} tok/s)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import statistics

    import numpy as np

    t0 = time.perf_counter()
    model = _load(args)
    load = time.perf_counter() - t0
    for flag, n in (("--prompt-tokens", args.prompt_tokens), ("--new-tokens", args.new_tokens),
                    ("--repeats", args.repeats)):
        if n < 1:
            raise ValueError(f"{flag} must be at least 1, got {n}")
    if args.prompt_tokens + args.new_tokens > model.n_ctx:
        raise ValueError(f"--prompt-tokens {args.prompt_tokens} + --new-tokens {args.new_tokens} do not fit the "
                         f"context of {model.n_ctx} tokens (--n-ctx)")
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


def _train_tokenizer(args: argparse.Namespace, text: str) -> Any:
    """The tokenizer a new training run uses: the --init-from model's, or a new
    one (--tokenizer char|bpe) or a saved one (a path). A resumed run's is
    :func:`_resumed_tokenizer`."""
    from .tokenizers.files import find_tokenizer, load_tokenizer
    from .training import CharTokenizer, train_bpe

    if args.init_from:
        if find_tokenizer(args.init_from) is not None:
            if args.tokenizer not in (None, "char", "bpe"):
                return load_tokenizer(args.tokenizer)
            if args.tokenizer is not None:
                raise ValueError(f"--init-from {args.init_from} brings its own tokenizer; drop --tokenizer "
                                 f"{args.tokenizer} (a new vocabulary would not fit the model's embeddings)")
            return load_tokenizer(args.init_from)
        if args.tokenizer in (None, "char", "bpe"):
            raise ValueError(f"{args.init_from} has no tokenizer files: pass --tokenizer PATH to the one "
                             "the model was trained with")
    kind = args.tokenizer or "char"
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        t0 = time.perf_counter()
        tok = train_bpe(text, args.vocab_size or DEFAULT_ARCH["vocab_size"])
        _err(f"[trained a byte-level BPE vocabulary of {tok.vocab_size} tokens in {time.perf_counter() - t0:.1f} s]")
        return tok
    return load_tokenizer(kind)


# the flags that fix a trained model's shape, their config field and their default for a new run
DEFAULT_ARCH: Dict[str, int] = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "vocab_size": 4096}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _resumed_tokenizer(args: argparse.Namespace, checkpoint: Path) -> Any:
    """The tokenizer saved in the checkpoint being resumed (never one rebuilt from --data, whose
    ids could differ); --tokenizer / --vocab-size, when given, must describe that same tokenizer."""
    from .tokenizers import BPETokenizer, CharTokenizer
    from .tokenizers.files import find_tokenizer, load_tokenizer

    if find_tokenizer(checkpoint) is None:
        raise ValueError(f"--resume: {checkpoint} holds no tokenizer; the ids it was trained on cannot be "
                         "reproduced from --data. Start a new --out")
    tok = load_tokenizer(checkpoint)
    kind = "char" if isinstance(tok, CharTokenizer) else "bpe" if isinstance(tok, BPETokenizer) else None
    if args.tokenizer in ("char", "bpe"):
        if args.tokenizer != kind:
            raise ValueError(f"--resume: --tokenizer {args.tokenizer} differs from the checkpoint's tokenizer "
                             f"({type(tok).__name__}, {checkpoint}); drop --tokenizer to use it")
    elif args.tokenizer is not None:
        given = load_tokenizer(args.tokenizer)
        if _tokenizer_fingerprint(given) != _tokenizer_fingerprint(tok):
            raise ValueError(f"--resume: --tokenizer {args.tokenizer} is not the tokenizer the checkpoint "
                             f"{checkpoint} was trained with; drop --tokenizer to use the checkpoint's")
    if args.vocab_size is not None and kind == "bpe" and args.vocab_size != tok.vocab_size:
        raise ValueError(f"--resume: --vocab-size {args.vocab_size} differs from the checkpoint's "
                         f"{tok.vocab_size}; drop --vocab-size to use the checkpoint's tokenizer")
    return tok


def _resumed_architecture(args: argparse.Namespace, checkpoint: Path) -> Dict[str, int]:
    """n_layer, n_head, n_embd and block_size of the checkpoint being resumed; an architecture flag
    given on the command line must agree with it (a checkpoint cannot change shape)."""
    from .models.gpt2 import GPT2Config
    from .training.checkpoint import TRAINER_STATE_FILE

    config = GPT2Config.from_json_file(checkpoint / "config.json")
    try:
        block = json.loads((checkpoint / TRAINER_STATE_FILE).read_text()).get("block_size")
    except (OSError, ValueError, AttributeError):
        block = None
    have = {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
            "block_size": int(block) if isinstance(block, int) else config.n_positions}
    for name, value in have.items():
        given = getattr(args, name)
        if given is not None and given != value:
            raise ValueError(f"--resume: {_flag(name)} {given} differs from the checkpoint's {name}={value} "
                             f"({checkpoint}); drop {_flag(name)} to continue with {value}, or start a new --out")
    return have



def _tokenizer_fingerprint(tok: Any) -> str:
    import hashlib

    from .tokenizers import BPETokenizer, CharTokenizer
    from .tokenizers.files import bpe_to_hf_json

    if isinstance(tok, CharTokenizer):
        text = tok.to_json()
    elif isinstance(tok, BPETokenizer):
        text = json.dumps(bpe_to_hf_json(tok), sort_keys=True)
    else:
        text = repr(tok)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _train(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from .models.gpt2 import GPT2Config, GPT2LMHeadModel
    from .training import Trainer, TrainingArguments, load_splits, prepare_data, read_text
    from .training.checkpoint import last_checkpoint
    from .training.data import encode_text, read_meta, sidecar
    from .training.distributed import get_world

    _check_threads(args)
    world = get_world()  # under mpirun: this rank (each takes its share of the cores unless --threads says)
    say = _err if world.is_main else (lambda msg: None)
    if args.threads is not None:
        from . import set_num_threads

        set_num_threads(args.threads)
    out = Path(args.out)
    resume = last_checkpoint(out) if args.resume else None
    if args.resume and resume is None:
        raise ValueError(f"--resume: {out} holds no checkpoint-* directory to resume from")
    text = read_text(args.data)
    if resume is not None:
        for name, value in _resumed_architecture(args, resume).items():
            setattr(args, name, value)
        tok = _resumed_tokenizer(args, resume)
        try:
            encode_text(text, tok)  # refuses a character the saved vocabulary lacks
        except ValueError as e:
            raise ValueError(f"--resume: {args.data} does not fit the checkpoint's tokenizer ({e}); resume with "
                             "the text the run was trained on, or start a new --out") from None
    else:
        for name, value in DEFAULT_ARCH.items():
            if getattr(args, name) is None and name != "vocab_size":
                setattr(args, name, value)
        tok = _train_tokenizer(args, text)

    # tokens, re-encoded only when the text or the tokenizer changed
    fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def reusable(path: Path) -> bool:
        if not (path.is_file() and sidecar(path).is_file()):
            return False
        try:
            meta = read_meta(path)
        except (ValueError, OSError):
            return False
        return bool(meta.get("text_sha256") == fingerprint and meta.get("vocab_size") == tok.vocab_size
                    and meta.get("val_fraction") == args.val_fraction
                    and meta.get("tokenizer") == _tokenizer_fingerprint(tok))

    def prepare(path: Path) -> None:
        t0 = time.perf_counter()
        meta = prepare_data(args.data, tok, path, val_fraction=args.val_fraction, text=text,
                            extra={"val_fraction": args.val_fraction, "tokenizer": _tokenizer_fingerprint(tok)})
        say(f"[{meta['n_tokens']:,} tokens ({tok.vocab_size} in the vocabulary) written to {path} "
            f"in {time.perf_counter() - t0:.1f} s]")

    # rank 0 writes the token file; another rank uses it when it sees the same directory, else writes its own
    bin_path = out / "data" / "tokens.bin"
    if world.is_main and not reusable(bin_path):
        prepare(bin_path)
    world.barrier("waiting for rank 0 to write the token file")
    if not world.is_main and not reusable(bin_path):
        bin_path = out / "data" / f"rank{world.rank}" / "tokens.bin"
        if not reusable(bin_path):
            prepare(bin_path)
    try:
        train, val = load_splits(bin_path, args.block_size, validation=bool(args.eval_every))
    except ValueError as e:
        if "validation split" not in str(e):
            raise
        raise ValueError(f"{e} (or raise --val-fraction, or pass --eval-every 0 to train without evaluating)") from None
    if args.eval_every and val is None:
        raise ValueError("evaluation needs a validation split: use --val-fraction > 0, or --eval-every 0")

    if resume is not None:
        model = GPT2LMHeadModel.from_pretrained(resume)  # the trainer loads its weights and state again
    elif args.init_from:
        model = GPT2LMHeadModel.from_pretrained(args.init_from)
        if model.config.vocab_size < tok.vocab_size:
            raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model from {args.init_from} has "
                             f"vocab_size={model.config.vocab_size}: mismatched model and tokenizer")
    else:
        eos = getattr(tok, "eos_token_id", None)
        config = GPT2Config(vocab_size=tok.vocab_size, n_positions=args.block_size, n_embd=args.n_embd,
                            n_layer=args.n_layer, n_head=args.n_head, bos_token_id=eos, eos_token_id=eos)
        model = GPT2LMHeadModel(config, seed=args.seed)
    say(f"[GPT-2: {model.config.n_layer} layers, {model.config.n_head} heads, n_embd {model.config.n_embd}, "
         f"context {model.config.n_positions}, {model.num_parameters():,} parameters; "
         f"{len(train):,} training tokens" + (f", {len(val):,} validation tokens]" if val is not None else "]"))

    eval_every = args.eval_every if val is not None else 0
    targs = TrainingArguments(
        output_dir=str(out), max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr, weight_decay=args.weight_decay, adam_beta1=0.9, adam_beta2=args.beta2,
        max_grad_norm=args.grad_clip, lr_scheduler_type=args.schedule,
        lr_scheduler_kwargs={"min_lr_rate": args.min_lr_rate} if args.schedule == "cosine_with_min_lr" else {},
        warmup_steps=args.warmup, logging_steps=args.log_every,
        eval_strategy="steps" if eval_every else "no", eval_steps=eval_every or None,
        max_eval_batches=args.eval_batches, save_steps=args.save_every or eval_every or args.max_steps,
        save_total_limit=args.save_total_limit, seed=args.seed, disable_tqdm=args.no_progress)
    trainer = Trainer(model, targs, train_dataset=train, eval_dataset=val, tokenizer=tok)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))
    if world.distributed:
        say(f"[{world.size} ranks, {world.size * args.batch_size} blocks a step between them]")
    say(f"[trained to step {result.global_step}; model and tokenizer saved in {out}; try: "
         f"pyllm generate --model {out} \"PROMPT\" --do-sample]")
    return 0


def model_threads() -> int:
    import pyllm

    return pyllm.get_num_threads()


def _model_info(name_or_path: str, as_json: bool) -> int:
    from collections import Counter

    from . import hub
    from .models import GGUFFile, registry
    from .models.hfdir import HFCheckpoint

    d = Path(name_or_path)
    if d.is_dir() and (d / "config.json").is_file() and not any(d.glob("*.gguf")):
        ckpt = HFCheckpoint(d)
        model_type = ckpt.config.get("model_type")
        hf_info: Dict[str, Any] = {"path": str(d), "model_type": model_type, "tensors": len(ckpt.names),
                                   "parameters": sum(math.prod(ckpt.shape(n)) for n in ckpt.names)}
        if model_type != "gpt2":
            hf_info["config"] = registry.for_model_type(model_type, str(d)).from_hf(ckpt).config.to_dict()
        return _print_info(hf_info, as_json)
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
    arch = registry.for_gguf(info["architecture"], str(path))
    info["config"] = arch.from_gguf(f).config.to_dict()
    return _print_info(info, as_json)


def _print_info(info: Dict[str, Any], as_json: bool) -> int:
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


def _serve(args: argparse.Namespace) -> int:
    from . import serve
    from .hub import DEFAULT_MODEL

    if args.max_parallel < 1:
        raise ValueError(f"--max-parallel must be positive, got {args.max_parallel}")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        _warn(f"serving on {args.host} without --api-key: anyone who can reach it may use it")
    serve.serve(args.model or [DEFAULT_MODEL], host=args.host, port=args.port, n_ctx=args.n_ctx,
                threads=args.threads, max_parallel=args.max_parallel, max_queue=args.max_queue,
                prefill_chunk=args.prefill_chunk, api_key=args.api_key or None, log_level=args.log_level)
    return 0


# ---- classify / embed: BERT encoders

def _input_texts(args: argparse.Namespace) -> List[str]:
    """The texts of the command line, else the lines of stdin (blank lines skipped)."""
    if args.texts:
        for i, t in enumerate(args.texts):
            if not t.strip():
                raise ValueError(f"text {i + 1} is empty: give non-empty texts")
        return list(args.texts)
    if sys.stdin.isatty():
        raise ValueError("no input: give texts as arguments or pipe lines into stdin")
    texts = [line.rstrip("\r\n") for line in sys.stdin]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no input: stdin held no non-blank line")
    return texts


def _positive_arg(value: Optional[int], flag: str) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{flag} must be positive, got {value}")


def _classify(args: argparse.Namespace) -> int:
    import pyllm

    from .pipelines import TextClassificationPipeline, load_classifier

    _check_threads(args)
    _positive_arg(args.top_k, "--top-k")
    _positive_arg(args.batch_size, "--batch-size")
    _positive_arg(args.max_length, "--max-length")
    texts = _input_texts(args)
    if args.threads is not None:
        pyllm.set_num_threads(args.threads)
    model = load_classifier(args.model)
    pipe = TextClassificationPipeline(model, batch_size=args.batch_size)
    limit = args.max_length or int(model.config.max_position_embeddings)
    results = pipe(texts, top_k=args.top_k, truncation=True, max_length=limit)
    for text, ranked in zip(texts, results):
        if args.json:
            print(json.dumps({"text": text, "labels": ranked}, ensure_ascii=False))
        else:
            print(", ".join(f"{r['label']} {r['score']:.4f}" for r in ranked) + "\t" + text)
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    import pyllm

    from .models import AutoModel

    _check_threads(args)
    _positive_arg(args.batch_size, "--batch-size")
    _positive_arg(args.max_length, "--max-length")
    if args.out is not None and not args.out.endswith(".npy"):
        raise ValueError(f"--out {args.out}: the file name must end in .npy")
    texts = _input_texts(args)
    if args.threads is not None:
        pyllm.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model)
    vectors = model.encode(texts, batch_size=args.batch_size, normalize=args.normalize, max_length=args.max_length)
    if args.out is not None:
        np.save(args.out, vectors)
        _err(f"[{vectors.shape[0]} x {vectors.shape[1]} float32 embeddings written to {args.out}]")
        return 0
    for row in vectors:
        print(json.dumps(row.tolist()))
    return 0


def _bert_commands(sub: Any) -> None:
    p = sub.add_parser("classify", help="classify texts with a fine-tuned BERT classifier",
                       description="Print the label and score of each text (arguments, else the non-blank lines "
                                   "of stdin), as pipeline('text-classification') gives them; texts longer than "
                                   "the model's positions are truncated.")
    p.add_argument("texts", nargs="*", help="texts to classify (default: the lines of stdin)")
    p.add_argument("--model", "-m", required=True, help="a fine-tuned BertForSequenceClassification directory")
    p.add_argument("--top-k", type=int, default=1, help="labels shown per text, best first (default 1)")
    p.add_argument("--max-length", type=int, default=None,
                   help="truncate to this many tokens (default: the model's max_position_embeddings)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help='one JSON object per text: {"text", "labels": [...]}')
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: physical cores)")
    p.set_defaults(func=_classify)

    p = sub.add_parser("embed", help="sentence embeddings of texts with a BERT encoder",
                       description="Sentence embeddings as sentence-transformers computes them (the model "
                                   "directory's pooling, mean by default; texts truncated to its max_seq_length): "
                                   "one JSON array per text on stdout, or a float32 (N, C) .npy file with --out.")
    p.add_argument("texts", nargs="*", help="texts to embed (default: the lines of stdin)")
    p.add_argument("--model", "-m", default="all-MiniLM-L6-v2",
                   help="a BERT directory or registered name (default all-MiniLM-L6-v2)")
    p.add_argument("--normalize", action="store_true", help="scale each vector to unit length")
    p.add_argument("--out", "-o", default=None, help="write the vectors to this .npy file instead of stdout")
    p.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: physical cores)")
    p.set_defaults(func=_embed)


def _model_args(p: argparse.ArgumentParser) -> None:
    from .hub import DEFAULT_MODEL

    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"a .gguf path, a model directory (pyllm train --out) or registered name (default {DEFAULT_MODEL})")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length to allocate (default: min(trained, 4096))")
    p.add_argument("--verbose", "-v", action="store_true")


def _sampling_args(p: argparse.ArgumentParser, max_new: int) -> None:
    p.add_argument("--max-new-tokens", "-n", type=int, default=None,
                   help=f"tokens to generate (default: {max_new}, or what the context leaves after the prompt)")
    p.set_defaults(default_new_tokens=max_new)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0, help="with --do-sample; must be > 0 there")
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


_QUANTIZE_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                   "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32")


def _quantize(args: argparse.Namespace) -> int:
    import time
    import warnings
    from collections import Counter

    from .gguf_write import quantize

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = quantize(args.input, args.output, type=args.type, threads=args.threads,
                            allow_requantize=args.allow_requantize)
    except ImportError as e:
        _err(f"pyllm: error: {e}")
        return 1
    for w in caught:
        _err(f"pyllm: warning: {w.message}")
    counts = ", ".join(f"{n} {t}" for t, n in sorted(Counter(plan.values()).items()))
    size = os.path.getsize(args.output) / 1e6
    _err(f"{args.output}: {args.type}, {len(plan)} tensors ({counts}), {size:.1f} MB in "
         f"{time.perf_counter() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pyllm", description="Run transformer language models on the CPU.")
    parser.add_argument("--version", action="version", version=f"pyllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="continue a prompt, streaming the text")
    p.add_argument("prompt")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the chat template")
    p.add_argument("--quiet", "-q", action="store_true", help="no timing line on stderr")
    _model_args(p)
    _sampling_args(p, 128)
    p.set_defaults(func=_generate)

    p = sub.add_parser("chat", help="an interactive chat using the model's chat template",
                       description=f"An interactive chat using the model's chat template: {CHAT_HELP}")
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

    p = sub.add_parser("train", help="train (or fine-tune) a GPT-2 model on a text file")
    p.add_argument("--data", required=True, help="a UTF-8 text file, a directory of .txt files, or 'shakespeare'")
    p.add_argument("--out", required=True, help="output directory: checkpoints, log.jsonl, and the final model")
    p.add_argument("--tokenizer", default=None,
                   help="char (default), bpe (trained on the data), or a path to a saved tokenizer / model directory")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size for --tokenizer bpe (default 4096)")
    p.add_argument("--init-from", default=None, help="fine-tune a saved pyllm or Hugging Face GPT-2 directory")
    p.add_argument("--n-layer", type=int, default=None, help="layers (default 4; --resume: the checkpoint's)")
    p.add_argument("--n-head", type=int, default=None, help="attention heads (default 4; --resume: the checkpoint's)")
    p.add_argument("--n-embd", type=int, default=None, help="width (default 128; --resume: the checkpoint's)")
    p.add_argument("--block-size", type=int, default=None,
                   help="tokens per training sequence, the context (default 128; --resume: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--schedule", default="cosine_with_min_lr",
                   choices=["linear", "cosine", "cosine_with_min_lr", "constant", "constant_with_warmup"])
    p.add_argument("--min-lr-rate", type=float, default=0.1, help="cosine_with_min_lr: final lr / peak lr")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global gradient norm (0: no clipping)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the tail of the data held out for evaluation")
    p.add_argument("--eval-every", type=int, default=100, help="evaluate every this many steps (0: never)")
    p.add_argument("--eval-batches", type=int, default=20, help="batches per evaluation")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every this many steps (default: --eval-every)")
    p.add_argument("--save-total-limit", type=int, default=2, help="keep this many checkpoints")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out, with its tokenizer and architecture")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    p.add_argument("--threads", "-t", type=int, default=None)
    p.set_defaults(func=_train)

    from .training.classify_cli import add_parser as add_train_classifier

    add_train_classifier(sub)  # pyllm train-classifier (BERT sequence classification from a CSV)

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server with continuous batching",
                       description="Serve models over OpenAI's HTTP API (/v1/chat/completions, /v1/completions, "
                                   "/v1/embeddings, /v1/models, /tokenize, /detokenize, /health, /metrics). "
                                   "Needs pyllm[serve].")
    p.add_argument("--model", "-m", action="append", default=None,
                   help="a .gguf path, model directory or registered name (a BERT encoder such as all-MiniLM-L6-v2 "
                        "serves /v1/embeddings); ALIAS=PATH names it; repeat to serve "
                        "several (requests pick one by 'model'; default SmolLM2-135M-Instruct)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-parallel", type=int, default=32, help="sequences decoded together per model (default 32)")
    p.add_argument("--max-queue", type=int, default=None,
                   help="requests that may wait for a slot; past it: HTTP 429 (default 4 x --max-parallel)")
    p.add_argument("--prefill-chunk", type=int, default=128,
                   help="prompt tokens prefilled per step while other sequences decode (default 128)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length of each sequence (default: min(trained, 4096))")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("--api-key", default=os.environ.get("PYLLM_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on the API routes (default: $PYLLM_API_KEY, else none)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve)

    p = sub.add_parser("quantize", help="write a GGUF file of a llama.cpp file type (Q4_K_M, Q8_0, ...)",
                       description="Quantize a GGUF file with the per-tensor types llama.cpp's quantizer gives "
                                   "the file type. Needs the gguf package (pip install 'pyllm[quantize]').")
    p.add_argument("input", help="a GGUF file (F32, F16 or BF16 weights), or a Hugging Face GPT-2, Llama, "
                   "Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 or Phi-3 directory with a byte-level BPE tokenizer.json or a SentencePiece "
                   "tokenizer.model")
    p.add_argument("output", help="the GGUF file to write (replaced only once complete)")
    p.add_argument("--type", default="Q4_K_M", type=str.upper, metavar="TYPE",
                   help="file type (default Q4_K_M): " + ", ".join(_QUANTIZE_TYPES))
    p.add_argument("--allow-requantize", action="store_true",
                   help="quantize already-quantized tensors again (worse than quantizing the original weights)")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: all cores)")
    p.set_defaults(func=_quantize)

    p = sub.add_parser("pull", help="fetch a registered model into the local cache")
    p.add_argument("name", nargs="?", default=None, help="registered model name (default: the default model)")
    p.set_defaults(func=_pull)
    _bert_commands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError, FloatingPointError) as e:
        _err(f"pyllm: error: {e}")
        return 1
    except MemoryError as e:
        _err(f"pyllm: error: out of memory{': ' + str(e) if str(e) else ''} (smaller sizes, or fewer tokens, may fit)")
        return 1
    except KeyboardInterrupt:
        _err("")
        return 130
    except Exception as e:  # jinja2's TemplateError (as transformers raises it): a model's chat template failed
        if not type(e).__module__.startswith("jinja2"):
            raise
        _err(f"pyllm: error: the model's chat template failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
