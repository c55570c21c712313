# Plots the loss curve of a `pyllm train` run (its log.jsonl) as a PNG: training and validation loss.
# Not part of the package; needs matplotlib (pip install ".[plot]").
"""Usage: python scripts/plot_loss.py OUT_DIR/log.jsonl docs/loss.png [--title TITLE]

Training loss is the mean over each logging interval; validation loss is
each evaluation's mean over its batches. Both in nats per token.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="log.jsonl written by pyllm train / Trainer")
    ap.add_argument("png", help="output image")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(args.log, encoding="utf-8") if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train:
        raise SystemExit(f"{args.log} has no training loss entries")

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot([s for s, _ in train], [v for _, v in train], lw=1.2, label="training loss")
    if val:
        ax.plot([s for s, _ in val], [v for _, v in val], "o-", ms=3.5, lw=1.2, label="validation loss")
        s, v = val[-1]
        ax.annotate(f"{v:.3f} (perplexity {math.exp(v):.2f})", (s, v), textcoords="offset points",
                    xytext=(-10, 12), ha="right", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if args.title:
        ax.set_title(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"wrote {args.png} ({len(train)} training points, {len(val)} evaluations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
