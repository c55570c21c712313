# Model speed and perplexity of pyllm beside its peers on the default GGUF file, measured in one run,
# plus pyllm's time outside the forward pass and several-sequence throughput. Not a correctness test.
"""Model speed on the default GGUF file, pyllm beside its peers in the same
run: load time, prefill (512-token prompt, then one token), greedy decode of
128 tokens after a short prompt, and each system's perplexity on the same
512 tokens of Shakespeare (same token ids for all); then the per-token cost
of pyllm's generate() outside the forward pass, and the throughput of
generate() with several sequences (decoded together, one at a time, and
transformers).

    python bench/model.py [--threads 2] [--repeats 5] [--plot docs/bench_model.png]
                          [--peers llama_cpp,transformers,ctranslate2] [--no-overhead] [--no-batched]
    python bench/model.py --file-types Q4_K_M,Q5_K_M,Q6_K,Q8_0,Q4_0 [--peers llama_cpp,ctranslate2]
                          [--plot docs/bench_file_types.png]

--file-types makes each file type from the default model with llama.cpp's
own quantizer (tests/mixtures.py; files cached) and prints one table of
prefill and decode against the peers on each file, with the machine's read
bandwidth and each file's bytes per decoded token (the decode roofline).

Peers: llama-cpp-python on the same GGUF file; transformers + torch fp32
(the GGUF dequantized); CTranslate2 int8 and float32, converted once from
the same weights (transformers loads the GGUF, its state dict is written as
safetensors, the CTranslate2 converter quantizes it) and cached under
pyllm's cache directory keyed by the GGUF file's sha256. A peer that is not
installed is skipped with a message. Timings are medians of interleaved
runs (bench/common.py), so a busy machine slows every system alike.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, llama_cpp_without_amx  # noqa: E402

NEW_TOKENS = 128  # decode length
PROMPT_TOKENS = 512  # prefill length, and the perplexity window
SHORT_PROMPT = 9  # decode starts after this many tokens
TEXT_FILE = "tempest_gut.txt"  # the window starts at Act I, scene 1
TEXT_START = "[Enter a SHIPMASTER and a BOATSWAIN severally]"
SAMPLING = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1)


@dataclass
class System:
    name: str
    load: float  # seconds to construct the model object
    prefill: Callable[[], object]  # PROMPT_TOKENS tokens, then one more
    decode: Callable[[], object]  # SHORT_PROMPT tokens, then NEW_TOKENS greedy ones
    ppl: float  # perplexity on the text window


def perplexity(logprobs: np.ndarray) -> float:
    return float(np.exp(-np.mean(np.asarray(logprobs, dtype=np.float64))))


def logprobs_from_logits(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    # logits (T, V) for ids (T,) -> log p(ids[t+1] | ids[:t+1]) (T-1,)
    x = logits[:-1].astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    x = x - np.log(np.exp(x).sum(-1, keepdims=True))
    return x[np.arange(len(ids) - 1), ids[1:]]


def text_ids(path: Path) -> np.ndarray:
    """PROMPT_TOKENS ids of The Tempest from Act I scene 1, tokenized by pyllm
    (the same ids transformers' tokenizer gives for this vocabulary)."""
    import pyllm
    from pyllm.hub import shakespeare_dir

    text = (shakespeare_dir() / TEXT_FILE).read_text(encoding="utf-8")
    start = text.index(TEXT_START)
    tok = pyllm.AutoTokenizer.from_pretrained(path)
    ids = tok.encode(text[start: start + 8 * PROMPT_TOKENS], add_special_tokens=False)[:PROMPT_TOKENS]
    if len(ids) != PROMPT_TOKENS:
        raise RuntimeError(f"the text window gave {len(ids)} tokens, expected {PROMPT_TOKENS}")
    return np.asarray(ids, dtype=np.int32)


# ---------------------------------------------------------------- the systems

def setup_pyllm(path: Path, ids: np.ndarray, threads: int) -> List[System]:
    import pyllm

    t0 = time.perf_counter()
    model = pyllm.AutoModelForCausalLM.from_pretrained(path, n_threads=threads, n_ctx=1024)
    load = time.perf_counter() - t0
    short = [int(t) for t in ids[:SHORT_PROMPT]]

    def prefill() -> None:
        model.reset()
        model.step(ids)
        model.step(ids[:1])

    def decode() -> None:  # the public API, sampler and bookkeeping included
        model.reset()
        model.generate(short, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)

    ppl = model.score(ids).perplexity
    return [System(f"pyllm {pyllm.__version__} ({pyllm.cpu_info()['isa']})", load, prefill, decode, ppl)]


def setup_llama_cpp(path: Path, ids: np.ndarray, threads: int) -> List[System]:
    import llama_cpp

    if llama_cpp_without_amx():
        print("llama.cpp: AMX CPU, models loaded without its extra buffer types (its AMX kernels crash here)")

    scorer = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                             n_batch=PROMPT_TOKENS, logits_all=True, verbose=False)
    scorer.eval([int(t) for t in ids])
    ppl = perplexity(logprobs_from_logits(np.array(scorer.scores[: len(ids)]), ids))
    del scorer
    t0 = time.perf_counter()
    # speed runs keep only the last position's logits, as generation does
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                          n_batch=PROMPT_TOKENS, logits_all=False, verbose=False)
    load = time.perf_counter() - t0
    toks = [int(t) for t in ids]

    def prefill() -> None:
        llm.reset()
        llm.eval(toks)
        llm.eval(toks[:1])

    def decode() -> None:  # the low-level loop: eval one token, argmax over its logits
        llm.reset()
        llm.eval(toks[: SHORT_PROMPT - 1])
        tok = toks[SHORT_PROMPT - 1]
        for _ in range(NEW_TOKENS):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))

    return [System(f"llama-cpp-python {llama_cpp.__version__}", load, prefill, decode, ppl)]


def setup_transformers(path: Path, ids: np.ndarray, threads: int) -> List[System]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    load = time.perf_counter() - t0
    p = torch.tensor(ids[None, :].astype(np.int64))

    def prefill() -> None:
        with torch.no_grad():
            out = model(p, use_cache=True, logits_to_keep=1)
            model(p[:, :1], past_key_values=out.past_key_values, use_cache=True)

    def decode() -> None:
        with torch.no_grad():
            model.generate(p[:, :SHORT_PROMPT], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                           do_sample=False)

    with torch.no_grad():
        logits = model(p).logits[0].numpy()
    return [System(f"transformers {transformers.__version__} fp32", load, prefill, decode,
                   perplexity(logprobs_from_logits(logits, ids)))]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ctranslate2_models(path: Path, quantizations: Sequence[str]) -> Dict[str, Path]:
    """CTranslate2 conversions of the GGUF file, made once and cached under
    pyllm's cache directory, keyed by the file's sha256."""
    import ctranslate2  # noqa: F401  (fail early, before the slow conversion, when it is absent)

    from pyllm.hub import cache_dir

    root = cache_dir() / "ctranslate2" / file_sha256(path)[:16]
    out = {q: root / q for q in quantizations}
    missing = [q for q, d in out.items() if not (d / "model.bin").is_file()]
    if not missing:
        return out
    import torch
    from ctranslate2.converters import TransformersConverter
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"# ctranslate2: converting {path.name} once ({', '.join(missing)}) into {root}", file=sys.stderr)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".convert-") as tmp:
        hf = Path(tmp) / "hf"
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(hf)
        # save_pretrained refuses a GGUF-loaded model: write its config and state dict by hand
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (hf / "config.json").write_text(json.dumps(config, indent=1, default=str))
        tied = model.config.tie_word_embeddings
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
        save_file(state, str(hf / "model.safetensors"), metadata={"format": "pt"})
        del model, state
        for q in missing:
            staging = Path(tmp) / q
            TransformersConverter(str(hf)).convert(str(staging), quantization=q)
            if out[q].exists():
                shutil.rmtree(out[q])
            os.replace(staging, out[q])
    return out


def setup_ctranslate2(path: Path, ids: np.ndarray, threads: int) -> List[System]:
    import ctranslate2

    systems = []
    for q, model_dir in ctranslate2_models(path, ["int8", "float32"]).items():
        vocab = json.loads((model_dir / "vocabulary.json").read_text(encoding="utf-8"))
        t0 = time.perf_counter()
        gen = ctranslate2.Generator(str(model_dir), device="cpu", compute_type=q, intra_threads=threads,
                                    inter_threads=1)
        load = time.perf_counter() - t0
        toks = [vocab[int(t)] for t in ids]
        ppl = perplexity(gen.score_batch([toks])[0].log_probs)
        long_prompt = toks + toks[:1]  # all but the last token run at once, the last one as a decode step

        def prefill(gen: Any = gen, long_prompt: List[str] = long_prompt) -> None:
            gen.generate_batch([long_prompt], max_length=1, include_prompt_in_result=False, sampling_topk=1)

        def decode(gen: Any = gen, short: List[str] = toks[:SHORT_PROMPT]) -> None:
            res = gen.generate_batch([short], max_length=NEW_TOKENS, min_length=NEW_TOKENS,
                                     include_prompt_in_result=False, sampling_topk=1)
            assert len(res[0].sequences_ids[0]) == NEW_TOKENS

        systems.append(System(f"CTranslate2 {ctranslate2.__version__} {q}", load, prefill, decode, ppl))
    return systems


PEERS: Dict[str, Callable[[Path, np.ndarray, int], List[System]]] = {
    "llama_cpp": setup_llama_cpp,
    "transformers": setup_transformers,
    "ctranslate2": setup_ctranslate2,
}


# ---------------------------------------------------------------- pyllm's cost outside the forward pass

class _TimedForward:
    """Stands in for the compiled model object: times each forward call."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds = 0.0

    def forward(self, ids: np.ndarray, all_logits: bool) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.forward(ids, all_logits)
        self.seconds += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def overhead(path: Path, ids: np.ndarray, threads: int, repeats: int) -> List[Dict[str, Any]]:
    """Time model.generate (NEW_TOKENS tokens after a short prompt) and, inside
    it, the C++ forward calls; the rest is sampling, Python bookkeeping and
    the streamer. Medians over ``repeats`` interleaved runs per setting."""
    import pyllm
    from pyllm.generation.streamers import TextStreamer

    model = pyllm.AutoModelForCausalLM.from_pretrained(path, n_threads=threads, n_ctx=1024)
    timed = _TimedForward(model._live())
    model._live = lambda: timed  # type: ignore[method-assign]
    short = [int(t) for t in ids[:SHORT_PROMPT]]
    settings: Dict[str, Dict[str, Any]] = {
        "greedy": dict(do_sample=False),
        "sampling (t 0.8, top-k 50, top-p 0.95, rep. 1.1)": dict(SAMPLING, seed=0),
        "sampling + TextStreamer": dict(SAMPLING, seed=0, streamer=True),
    }
    samples: Dict[str, List[tuple]] = {name: [] for name in settings}
    for r in range(repeats + 1):
        for name, kw in settings.items():
            kw = dict(kw)
            if kw.pop("streamer", False):
                kw["streamer"] = TextStreamer(model.tokenizer, skip_prompt=True, file=io.StringIO())
            model.reset()
            time.sleep(0.05)
            timed.seconds = 0.0
            t0 = time.perf_counter()
            model.generate(short, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kw)
            total = time.perf_counter() - t0
            if r > 0:  # the first round warms up
                samples[name].append((total, timed.seconds))
    rows = []
    for name, s in samples.items():
        share = statistics.median((t - f) / t for t, f in s)
        total = statistics.median(t for t, _ in s)
        outside = statistics.median(t - f for t, f in s)
        rows.append(dict(setting=name, ms_per_token=1e3 * total / NEW_TOKENS,
                         us_outside=1e6 * outside / NEW_TOKENS, share=share))
    return rows


# ---------------------------------------------------------------- several sequences at once

BATCH_TOKENS = 64  # new tokens per sequence in the batched table
BATCH_SIZES = (1, 4, 8, 16)


def batched(path: Path, ids: np.ndarray, threads: int, repeats: int, with_transformers: bool) -> List[Dict[str, Any]]:
    """Total tokens/s of generate() with num_return_sequences=n (sampling,
    BATCH_TOKENS new tokens each after the short prompt): pyllm decoding the n
    sequences together, pyllm one after another, and transformers + torch fp32
    (which batches them) when installed and asked for."""
    import pyllm

    model = pyllm.AutoModelForCausalLM.from_pretrained(path, n_threads=threads, n_ctx=1024)
    short = [int(t) for t in ids[:SHORT_PROMPT]]
    kw: Dict[str, Any] = dict(SAMPLING, max_new_tokens=BATCH_TOKENS, min_new_tokens=BATCH_TOKENS)
    hf: Any = None
    if with_transformers:
        try:
            import torch
            from transformers import AutoModelForCausalLM

            torch.set_num_threads(threads)
            hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
            hf.eval()
        except ImportError as e:
            print(f"# transformers: skipped in the batched table, not installed ({e})", file=sys.stderr)

    def pyllm_run(n: int, together: bool) -> Callable[[], object]:
        def run() -> None:
            if not together:
                model._batch_size = lambda: 1  # type: ignore[method-assign]
            try:
                model.generate(short, num_return_sequences=n, seed=0, **kw)
            finally:
                if not together:
                    del model._batch_size
        return run

    def hf_run(n: int) -> Callable[[], object]:
        import torch

        p = torch.tensor([short])

        def run() -> None:
            with torch.no_grad():
                hf.generate(p, num_return_sequences=n, **kw)
        return run

    rows = []
    for n in BATCH_SIZES:
        fns: Dict[str, Callable[[], object]] = {"together": pyllm_run(n, True)}
        if n > 1:
            fns["one at a time"] = pyllm_run(n, False)
        if hf is not None:
            fns["transformers"] = hf_run(n)
        secs = interleaved_medians(fns, repeats=repeats, warmup=0, min_time=0.0, settle=0.2, prime=False)
        rows.append({"n": n, **{name: n * BATCH_TOKENS / t for name, t in secs.items()}})
    return rows


# ---------------------------------------------------------------- output

def roofline(path: Path) -> "tuple[float, float]":
    """The machine's read bandwidth (bytes/s / 1e9, median of 5 sums over
    512 MB) and the bytes of weights one decode step reads: every tensor of
    the file once (a tied embedding is read whole as the output head), less
    the token embedding's rows when the head is separate."""
    import pyllm
    from pyllm import _C

    probe = np.ones(128 * 1024 * 1024, dtype=np.float32)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _C.sum(probe)
        times.append(time.perf_counter() - t0)
    bw = probe.nbytes / statistics.median(times) / 1e9
    tensors = pyllm.GGUFFile(str(path)).tensors
    total = sum(t.nbytes for t in tensors.values())
    if "output.weight" in tensors:
        total -= tensors["token_embd.weight"].nbytes
    return bw, float(total)


def plot(path: str, systems: List[System], prefill: Dict[str, float], decode: Dict[str, float],
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in systems][::-1]  # first system on top
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(names) + 1.6))
    for ax, label, rates in ((axes[0], f"prefill ({PROMPT_TOKENS}-token prompt)", prefill),
                             (axes[1], f"decode ({NEW_TOKENS} greedy tokens)", decode)):
        values = [rates[n] for n in names]
        colors = ["tab:orange" if n.startswith("pyllm") else "tab:blue" for n in names]
        bars = ax.barh(names, values, color=colors)
        ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 100 else f"{v:.1f}" for v in values], padding=3)
        ax.set_title(label)
        ax.set_xlabel("tokens/s (higher is better)")
        ax.set_xlim(0, max(values) * 1.18)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(path: Path, ids: np.ndarray, peers: List[str], args: argparse.Namespace
            ) -> "tuple[List[System], Dict[str, float], Dict[str, float]]":
    """pyllm and the peers on one file: the systems, prefill and decode tok/s by name."""
    systems = setup_pyllm(path, ids, args.threads)
    for name in peers:
        try:
            systems.extend(PEERS[name](path, ids, args.threads))
        except ImportError as e:
            print(f"# {name}: skipped, not installed ({e})", file=sys.stderr)
    prefill_s = interleaved_medians({s.name: s.prefill for s in systems}, repeats=args.repeats, warmup=0,
                                    min_time=0.0, settle=0.2, prime=False)
    decode_s = interleaved_medians({s.name: s.decode for s in systems}, repeats=args.repeats, warmup=0,
                                   min_time=0.0, settle=0.2, prime=False)
    prefill = {n: (PROMPT_TOKENS + 1) / t for n, t in prefill_s.items()}
    decode = {n: NEW_TOKENS / t for n, t in decode_s.items()}
    return systems, prefill, decode


def file_types(source: Path, names: List[str], peers: List[str], args: argparse.Namespace) -> int:
    """One table: each file type llama.cpp's quantizer makes from `source`, pyllm against the peers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import llama_cpp
    import mixtures  # tests/mixtures.py: the files, made by llama.cpp

    work = mixtures.mixture_dir(source)
    ids = text_ids(source)
    bw, _ = roofline(source)
    print(f"{source.name} requantized by llama-cpp-python {llama_cpp.__version__}; {args.threads} threads, "
          f"medians of {args.repeats} interleaved runs; read bandwidth {bw:.1f} GB/s (512 MB sum)")
    print()
    print("| file type | tensor types | MB read / token | system | prefill tok/s | decode tok/s "
          "| pyllm/system prefill | pyllm/system decode | decode, % of roofline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = {}
    for name in names:
        path = mixtures.make_mixture(source, name, work)
        systems, prefill, decode = measure(path, ids, peers, args)
        _, per_token = roofline(path)
        types = ", ".join(f"{n} {t}" for t, n in sorted(mixtures.tensor_types(path).items(), key=lambda kv: -kv[1])
                          if t != "F32")
        base = systems[0].name
        for i, sy in enumerate(systems):
            ratios = "| | |" if sy.name == base else \
                f"| {prefill[base] / prefill[sy.name]:.2f}x | {decode[base] / decode[sy.name]:.2f}x |"
            first = f"| {name} | {types} | {per_token / 1e6:.1f} |" if i == 0 else "| | | |"
            print(f"{first} {sy.name} | {prefill[sy.name]:.0f} | {decode[sy.name]:.1f} {ratios} "
                  f"{decode[sy.name] * per_token / (bw * 1e9):.0%} |", flush=True)
        results[name] = (systems, prefill, decode)
    if args.plot:
        plot_file_types(args.plot, results, f"{args.threads} threads; file types made by llama.cpp from {source.name}")
        print(f"\n(plot written to {args.plot})")
    return 0


def plot_file_types(path: str, results: Dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    systems = [s.name for s in results[names[0]][0]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(systems)
    for ax, label, col in ((axes[0], f"prefill ({PROMPT_TOKENS}-token prompt)", 1),
                           (axes[1], f"decode ({NEW_TOKENS} greedy tokens)", 2)):
        for j, sy in enumerate(systems):
            values = [results[n][col].get(sy, 0.0) for n in names]
            xs = [i + (j - (len(systems) - 1) / 2) * width for i in range(len(names))]
            bars = ax.bar(xs, values, width, label=sy, color="tab:orange" if sy.startswith("pyllm") else None)
            ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=7, padding=2)
        ax.set_xticks(range(len(names)), names)
        ax.set_title(label)
        ax.set_ylabel("tokens/s (higher is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per measurement")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--peers", default="llama_cpp,transformers,ctranslate2",
                        help=f"comma-separated, from {', '.join(PEERS)} (empty: pyllm alone)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of prefill and decode tok/s")
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-token overhead table")
    parser.add_argument("--no-batched", action="store_true", help="skip the several-sequences table")
    parser.add_argument("--file-types", metavar="LIST",
                        help="comma-separated llama.cpp file types (Q4_K_M,...) made from --model; one table")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from pyllm.hub import resolve_model_file

    if args.file_types:
        return file_types(resolve_model_file(args.model), args.file_types.split(","), peers, args)
    path = resolve_model_file(args.model)
    ids = text_ids(path)
    systems, prefill, decode = measure(path, ids, peers, args)

    base = systems[0].name
    head = (f"{path.name}, {args.threads} threads, medians of {args.repeats} interleaved runs; "
            f"perplexity on {PROMPT_TOKENS} tokens of {TEXT_FILE}")
    print(head)
    print()
    print("| system | load s | prefill tok/s | decode tok/s | perplexity "
          "| pyllm/system prefill | pyllm/system decode |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in systems:
        ratios = "| | |" if s.name == base else \
            f"| {prefill[base] / prefill[s.name]:.2f}x | {decode[base] / decode[s.name]:.2f}x |"
        print(f"| {s.name} | {s.load:.2f} | {prefill[s.name]:.0f} | {decode[s.name]:.1f} | {s.ppl:.3f} {ratios}")
    bw, per_token = roofline(path)
    print(f"\nread bandwidth {bw:.1f} GB/s ({args.threads} threads, 512 MB sum); {per_token / 1e6:.1f} MB of weights "
          f"read per decoded token: decode roofline {bw * 1e9 / per_token:.0f} tok/s, pyllm at "
          f"{decode[base] * per_token / (bw * 1e9):.0%} of it")
    if args.plot:
        plot(args.plot, systems, prefill, decode, head)
        print(f"\n(plot written to {args.plot})")

    if not args.no_overhead:
        rows = overhead(path, ids, args.threads, args.repeats)
        print()
        print(f"pyllm generate(), {NEW_TOKENS} new tokens after {SHORT_PROMPT}: time outside the C++ forward "
              "(sampling, Python, streamer)")
        print()
        print("| setting | ms/token | outside forward, µs/token | share of decode time |")
        print("| --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['setting']} | {r['ms_per_token']:.2f} | {r['us_outside']:.0f} | {100 * r['share']:.1f}% |")

    if not args.no_batched:
        rows = batched(path, ids, args.threads, args.repeats, "transformers" in peers)
        print()
        print(f"generate(num_return_sequences=n), sampling, {BATCH_TOKENS} new tokens each after {SHORT_PROMPT}: "
              "total tokens/s")
        print()
        print("| n | pyllm, decoded together | pyllm, one at a time | together / one at a time "
              "| transformers fp32 | pyllm together / transformers |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            one = r.get("one at a time", r["together"])
            hf = r.get("transformers")
            hf_cols = f"| {hf:.1f} | {r['together'] / hf:.2f}x |" if hf else "| | |"
            print(f"| {r['n']} | {r['together']:.1f} | {one:.1f} | {r['together'] / one:.2f}x {hf_cols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
