"""Record what transformers + torch fp32 generate greedily from the default
model's GGUF file (dequantized to fp32) for real prompts: chat questions,
the README's prompts and a prompt longer than 512 tokens. Not run by the
tests; rerun it to regenerate.

    python scripts/record_generation_refs.py [--gguf PATH] [--new-tokens 32]

For every prompt it keeps the prompt ids, the greedy continuation, and at
every generated position (teacher-forced on the continuation) the ten
largest logits with their ids and the margin between the first two, so the
tests can tell a real disagreement from a near tie. Needs transformers,
gguf, torch. Writes tests/data/smollm2_generation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "data" / "smollm2_generation.json"
sys.path.insert(0, str(HERE))

# (name, kind, text): kind "chat" wraps the text as one user message with the
# model's chat template and the generation prompt; "text" encodes it as is
PROMPTS = [
    ("capital", "chat", "What is the capital of France?"),
    ("sky", "chat", "Why is the sky blue?"),
    ("haiku", "chat", "Write a haiku about the sea."),
    ("hello", "chat", "Say hello."),
    ("colors", "text", "The three primary colors are"),
    ("once", "text", "Once upon a time"),
]


def long_prompt() -> str:
    from record_llama_refs import DEFAULT_TEXT

    # The Tempest's first scene and a request about it: well past 512 tokens
    return DEFAULT_TEXT + DEFAULT_TEXT.split("\n\n", 3)[3] + "\nSummarize the scene above in one sentence:"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", help="the SmolLM2 GGUF file (default: resolve the registered model)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.gguf:
        path = Path(args.gguf)
    else:
        from pyllm.hub import resolve_model_file

        path = resolve_model_file("SmolLM2-135M-Instruct")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()

    records = []
    for name, kind, text in PROMPTS + [("tempest", "text", long_prompt())]:
        if kind == "chat":
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tok(text, add_special_tokens=False)["input_ids"]
        ids = [int(i) for i in ids]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=tok.eos_token_id)[0].tolist()
            new = out[len(ids):]
            # teacher-forced logits of every generated position (and the one after the prompt)
            logits = model(torch.tensor([out])).logits[0, len(ids) - 1 : len(out) - 1].float()
        top = torch.topk(logits, 10, dim=-1)
        records.append({
            "name": name,
            "kind": kind,
            "text": text,
            "prompt_ids": ids,
            "new_ids": new,
            "top_ids": top.indices.tolist(),
            "top_logits": top.values.tolist(),
            "margin": (top.values[:, 0] - top.values[:, 1]).tolist(),
        })
        margin = float((top.values[:, 0] - top.values[:, 1]).min())
        print(f"{name}: {len(ids)} prompt ids, {len(new)} new, smallest top-1 margin {margin:.4f}: "
              f"{tok.decode(new)!r}")
    doc = {
        "model": path.name,
        "versions": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "new_tokens": args.new_tokens,
        "prompts": records,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
