# Serving speed: pyllm serve beside llama-cpp-python's server on the same GGUF, both driven by the same
# async openai client at 1, 4, 16 and 32 concurrent streaming clients. Not a test: prints a markdown table.
"""Aggregate generated tokens/s and time to first token (p50 / p99) per concurrency level.

    python bench/serve.py [--model PATH] [--clients 1 4 16 32] [--max-tokens 64] [--threads 2] [--rounds 3] [--pairs 8]
        [--plot docs/bench_serve.png]

Each server runs in its own process, started by this script on 127.0.0.1
(llama-cpp-python needs its ``server`` extra); both stay up, and the
measurements interleave: each round drives every concurrency level on one
server, then on the other (the idle one waits), and a cell is the median
over the rounds. Every client sends
``--requests-per-client`` streaming chat requests one after another
(greedy, the same prompts for both servers); tokens are counted by encoding
each answer with the model's tokenizer, so both servers are counted alike.
The 1-client row also gives pyllm's own ``generate`` on the same prompts,
and ``--pairs`` back-to-back pairs per round (one streamed request, then
``generate`` here on its prompt) give the HTTP layer's overhead as the
median ratio, which a noisy machine disturbs less than two separate runs.
Each pair streams its request twice, through the ``openai`` client and
through a plain SSE reader (httpx lines, ``json.loads`` per chunk), so the
client's own parsing, which shares the two cores with the server, is told
apart from the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

import httpx
import openai

PROMPTS = [
    "Why is the sky blue?", "Write a short poem about autumn.", "Explain what a CPU cache is.",
    "Give me three tips for learning to cook.", "What is the difference between a list and a tuple in Python?",
    "Describe a walk through a forest.", "How do airplanes stay in the air?", "Tell me a story about a robot.",
]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def start(kind: str, model: str, threads: int, n_ctx: int, parallel: int) -> Tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "pyllm":
        cmd = [sys.executable, "-m", "pyllm.cli", "serve", "--model", f"m={model}", "--port", str(port),
               "--threads", str(threads), "--n-ctx", str(n_ctx), "--max-parallel", str(parallel),
               "--log-level", "warning"]
    else:
        # llama_cpp.server as `python -m` runs it, after llama_cpp_without_amx (common.py)
        server = ("import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); import common; "
                  "common.llama_cpp_without_amx(); runpy.run_module('llama_cpp.server', run_name='__main__', "
                  "alter_sys=True)")
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = [sys.executable, "-c", server, here, "--model", model, "--model_alias", "m", "--port", str(port),
               "--host", "127.0.0.1", "--n_threads", str(threads), "--n_ctx", str(n_ctx), "--verbose", "False",
               # by default a new request interrupts the one streaming: queue them instead
               "--interrupt_requests", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{kind} server did not come up")


async def drive(url: str, clients: int, per_client: int, max_tokens: int, tok: Any) -> Dict[str, float]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    ttfts: List[float] = []
    tokens = 0

    async def one(c: int) -> None:
        nonlocal tokens
        for r in range(per_client):
            prompt = PROMPTS[(c * per_client + r) % len(PROMPTS)]
            t0 = time.perf_counter()
            first = None
            parts: List[str] = []
            stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}],
                                                          max_tokens=max_tokens, temperature=0, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if first is None:
                        first = time.perf_counter() - t0
                    parts.append(chunk.choices[0].delta.content)
            ttfts.append(first if first is not None else time.perf_counter() - t0)
            tokens += len(tok.encode("".join(parts), add_special_tokens=False))

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(c) for c in range(clients)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await client.close()
    ttfts.sort()
    return {"tok_s": tokens / wall, "ttft_p50": statistics.median(ttfts),
            "ttft_p99": ttfts[min(len(ttfts) - 1, int(round(0.99 * (len(ttfts) - 1))))], "tokens": tokens,
            # the client's own CPU time per token (it shares the machine's cores with the server)
            "client_ms_per_token": 1e3 * cpu / max(tokens, 1)}


def generate_rate(model: Any, max_tokens: int, n: int) -> float:
    """pyllm's own generate() on the 1-client prompts, in this process (the model loaded once, warm)."""
    tok = model.tokenizer
    tokens, t0 = 0, time.perf_counter()
    for i in range(n):
        ids = model.encode_prompt([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
        out = model.generate(ids, max_new_tokens=max_tokens)
        tokens += len(tok.encode(tok.decode(out[0][len(ids):], skip_special_tokens=True), add_special_tokens=False))
    return tokens / (time.perf_counter() - t0)


def overhead_pairs(url: str, model: Any, max_tokens: int, pairs: int) -> Dict[str, List[float]]:
    """The HTTP layer's cost, robust to a noisy machine: each pair streams one chat request from the server
    (through the openai client, then through a plain SSE reader), then runs generate() here on the same
    prompt, back to back; per client kind, the ratio of their tokens/s per pair."""
    return asyncio.run(_pairs(url, model, max_tokens, pairs))


async def _stream_openai(client: Any, prompt: str, max_tokens: int) -> str:
    parts: List[str] = []
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


async def _stream_sse(http: Any, url: str, prompt: str, max_tokens: int) -> str:
    parts: List[str] = []
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices")
            if choices and choices[0]["delta"].get("content"):
                parts.append(choices[0]["delta"]["content"])
    return "".join(parts)


async def _pairs(url: str, model: Any, max_tokens: int, pairs: int) -> Dict[str, List[float]]:
    tok = model.tokenizer
    ratios: Dict[str, List[float]] = {"openai": [], "sse": []}

    def rate(text: str, t0: float) -> float:
        return len(tok.encode(text, add_special_tokens=False)) / (time.perf_counter() - t0)

    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600) as client, \
            httpx.AsyncClient(timeout=600) as http:
        for i in range(pairs):
            prompt = PROMPTS[i % len(PROMPTS)]
            t0 = time.perf_counter()
            served = {"openai": rate(await _stream_openai(client, prompt, max_tokens), t0)}
            t0 = time.perf_counter()
            served["sse"] = rate(await _stream_sse(http, url, prompt, max_tokens), t0)
            ids = model.encode_prompt([{"role": "user", "content": prompt}])
            t0 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=max_tokens)
            own = rate(tok.decode(out[0][len(ids):], skip_special_tokens=True), t0)
            for kind, r in served.items():
                ratios[kind].append(r / own)
    return ratios


def plot(path: str, clients: List[int], results: Dict[Tuple[str, int], Dict[str, float]], title: str) -> None:
    """Aggregate tokens/s and p99 time to first token per concurrency level, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind, color in (("pyllm", "tab:orange"), ("llama.cpp", "tab:blue")):
        have = [c for c in clients if (kind, c) in results]
        if not have:
            continue
        label = "pyllm serve" if kind == "pyllm" else "llama-cpp-python server"
        axes[0].plot(have, [results[(kind, c)]["tok_s"] for c in have], "o-", color=color, label=label)
        axes[1].plot(have, [results[(kind, c)]["ttft_p99"] for c in have], "o-", color=color, label=label)
    axes[0].set_title("generated tokens/s, all clients (higher is better)")
    axes[1].set_title("time to first token, p99 (lower is better)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("seconds")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_xlabel("concurrent streaming clients")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cell(r: Any) -> str:
    return f"{r['ttft_p50']:.2f} / {r['ttft_p99']:.2f}" if r else "-"


def main() -> int:
    from pyllm import AutoTokenizer
    from pyllm.hub import resolve_model_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a GGUF file (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--servers", nargs="+", default=["pyllm", "llama.cpp"], choices=["pyllm", "llama.cpp"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=8, help="server/generate() pairs per round for the overhead")
    ap.add_argument("--plot", default=None, help="write the table's figures as a PNG (needs matplotlib)")
    args = ap.parse_args()
    model = args.model or str(resolve_model_file("SmolLM2-135M-Instruct"))
    tok = AutoTokenizer.from_pretrained(model)
    runs: Dict[Tuple[str, int], List[Dict[str, float]]] = {}
    own_runs: List[float] = []
    ratios: Dict[str, List[float]] = {}
    procs: Dict[str, Tuple[subprocess.Popen[bytes], str]] = {}
    own_model: Any = None
    if "pyllm" in args.servers:
        from pyllm import AutoModelForCausalLM

        own_model = AutoModelForCausalLM.from_pretrained(model, n_ctx=args.n_ctx)
        generate_rate(own_model, args.max_tokens, 2)  # warm-up (and the thread-count choice settles)
    try:
        for kind in args.servers:
            procs[kind] = start(kind, model, args.threads, args.n_ctx, max(args.clients))
            asyncio.run(drive(procs[kind][1], 1, 1, 8, tok))  # warm-up
        for r in range(args.rounds):
            for kind in args.servers if r % 2 == 0 else args.servers[::-1]:
                for c in args.clients:
                    res = asyncio.run(drive(procs[kind][1], c, args.requests_per_client, args.max_tokens, tok))
                    runs.setdefault((kind, c), []).append(res)
                    print(f"round {r} {kind} {c} clients: {res}", file=sys.stderr, flush=True)
            if own_model is not None:
                own_runs.append(generate_rate(own_model, args.max_tokens, args.requests_per_client))
                for kind, rs in overhead_pairs(procs["pyllm"][1], own_model, args.max_tokens, args.pairs).items():
                    ratios.setdefault(kind, []).extend(rs)
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=60)
    results = {key: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for key, rs in runs.items()}
    own = statistics.median(own_runs) if own_runs else float("nan")
    load = os.getloadavg()
    print(f"\n{os.path.basename(model)}, {args.threads} threads, {args.max_tokens} tokens per greedy answer, "
          f"{args.requests_per_client} requests per client, median of {args.rounds} interleaved rounds; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| clients | pyllm tok/s | llama.cpp tok/s | ratio | pyllm TTFT p50 / p99 s | llama.cpp TTFT p50 / p99 s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in args.clients:
        p, q = results.get(("pyllm", c)), results.get(("llama.cpp", c))
        ratio = f"{p['tok_s'] / q['tok_s']:.2f}x" if p and q else "-"
        print(f"| {c} | {p['tok_s']:.1f} | " if p else f"| {c} | - | ", end="")
        print(f"{q['tok_s']:.1f} | " if q else "- | ", end="")
        print(f"{ratio} | {cell(p)} | {cell(q)} |")
    print(f"\npyllm generate() alone, same prompts: {own:.1f} tok/s", end="")
    if ("pyllm", 1) in results:
        one = results[("pyllm", 1)]
        print(f"; 1 client reaches {100 * one['tok_s'] / own:.0f}% of it (the client itself used "
              f"{one['client_ms_per_token']:.2f} ms of CPU per token)", end="")
    print()
    if args.plot:
        plot(args.plot, args.clients, results, f"{os.path.basename(model)}, {args.threads} threads, "
             f"{args.max_tokens}-token greedy answers, median of {args.rounds} interleaved rounds")
    for kind, rs in ratios.items():
        client = "the openai client" if kind == "openai" else "a plain SSE reader"
        quart = statistics.quantiles(rs)
        print(f"one request streamed through {client} against generate() on the same prompt, back to back "
              f"({len(rs)} pairs): median {100 * statistics.median(rs):.1f}% of generate()'s tokens/s "
              f"(quartiles {100 * quart[0]:.1f}-{100 * quart[2]:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
