# Records what Hugging Face transformers does with SmolLM2's GGUF tokenizer, so the
# committed tests can check pyllm's BPE without transformers or the model file. Not a test itself.
"""Write tests/data/smollm2_tokenizer.json.gz (the tokenizer metadata of the GGUF,
under the GGUF key names), tests/data/tokenizer_refs.json (texts and the ids
transformers gives them, decode and chat-template results) and
pyllm/tokenizers/_unicode_classes.py (how HF's pre-tokenizer regex classifies
every code point: letter, number, whitespace or other).

Run with an interpreter that has transformers, gguf and regex installed:

    python scripts/record_tokenizer_refs.py [--gguf PATH] [--shakespeare DIR]

Everything random here is seeded, so a rerun on the same versions writes the same files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
DEFAULT_GGUF = None  # resolve the registered SmolLM2-135M-Instruct (fetched on first use)
DEFAULT_SHAKESPEARE = None  # the pinned shakespeare package's texts (fetched on first use)

# Hand-written cases: each targets one rule of the pre-tokenizer or the special-token split.
HANDWRITTEN = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t\n", "a", "Hello world", " Hello world", "Hello  world",
    "Hello   world", "hello\nworld", "hello \nworld", "hello\n world", "hello\n\n\nworld", "trailing   ",
    "trailing \n", "   leading", "\t\tdef f():\n\t\treturn 1\n", "a\r\nb\r\n", "x \t y", "tabs\t\t\tthen",
    "  \n  \n  ", "end with space ", "end with newline\n", "multi\u00a0nbsp\u3000ideographic space",
    "\u2028line sep\u2029para sep\u0085nel", "\x1c\x1d\x1e\x1f file separators", "\x0b\x0c vt ff",
    "I'm you're we've they'll he'd it's don't", "I'M YOU'RE WE'VE THEY'LL HE'D IT'S DON'T",
    "'s 't 're 've 'm 'll 'd", "''s '''t x's x'S rock'n'roll", "'", "''", "' s", "'re'", "o'clock",
    "l'été c'est", "‘curly’ “quotes” isn’t",
    "0", "12", "123", "1234", "12345678901234567890", "3.14159 2,718 1e-10 0x1F -42", "v1.2.3",
    "٣٤٥ ١٢ ۱۲۳ ४२ 一二三 ²³ ½ Ⅻ", "abc123def", "123abc", " 123 456",
    "!!!", "...", "?!.", "hello, world.", "(a+b)*c", "a->b", "{}[]()<>", "#include <stdio.h>",
    "x = y == z != w", "@decorator", "$HOME ~user %d", "--flag=value", "***bold***", "…—–",
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷🇯🇵", "a😀b", " 😀 😀", "❤️", "emoji 🎉🎉🎉 party",
    "中文测试：你好，世界！", "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다.", "Ελληνικά κείμενα",
    "Русский текст, ёлка.", "النص العربي مع الأرقام ١٢٣", "हिन्दी पाठ नमस्ते", "עברית", "ไทย ภาษา",
    "e\u0301 a\u0308 n\u0303", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324", "\u0301start",
    "ﬁ ﬂ ＡＢＣ １２３", "\u200b\u200c\u200d\ufeff", "\x00\x01\x7f", "\ue000\U000f0000", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "<|im_start|>", "<|im_start|>user\nHi<|im_end|>\n", "text<|endoftext|>text", "<|im_start|><|im_end|>",
    "<|im_start", "<|im_start|>|>", "<<|im_end|>>", " <|im_end|> ", "<repo_name><reponame>",
    "<filename>a.py<file_sep>", "<jupyter_code>x=1<jupyter_output>1<empty_output>",
    "<|IM_START|>", "<|endoftext|><|endoftext|>",
]


def gguf_tokenizer_metadata(path: str) -> dict:
    """The tokenizer.* fields of the GGUF as plain Python values, under their GGUF names."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    md = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            value = field.contents()
            md[key] = [int(v) for v in value] if key == "tokenizer.ggml.token_type" else value
    return md


def record_unicode_classes(path: Path) -> None:
    """Classify every code point the way HF's ByteLevel pre-tokenizer regex does, by asking it.

    HF tokenizers runs the regex on Oniguruma, whose Unicode tables (16.0 in tokenizers 0.22)
    are newer than Python 3.11's unicodedata (14.0), so the classes are recorded, not derived.
    A code point c is a letter if "a" + c stays one piece, a number if "0" + c does, whitespace
    if "\\t" + c does, other if "!" + c does; exactly one of the four must hold.
    """
    import tokenizers
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    names = "LNWO"
    runs = []
    prev = None
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            cls = "O"  # surrogates never reach the scanner (str -> UTF-8 rejects them)
        else:
            one = [len(pre.pre_tokenize_str(p + chr(cp))) == 1 for p in ("a", "0", "\t", "!")]
            if sum(one) != 1:
                raise RuntimeError(f"U+{cp:04X} falls in {sum(one)} classes")
            cls = names[one.index(True)]
        if cls != prev:
            runs.append(f"{cp:x}{cls}")
            prev = cls
    lines = [" ".join(runs[i:i + 12]) for i in range(0, len(runs), 12)]
    path.write_text(
        "# How HF tokenizers' GPT-2 pre-tokenizer regex classifies each code point: \\p{L}, \\p{N}, \\s or\n"
        "# other. Generated by scripts/record_tokenizer_refs.py; not a general Unicode database.\n"
        f'"""Recorded with tokenizers {tokenizers.__version__} (Oniguruma, Unicode 16.0).\n\n'
        "RUNS lists where the class changes: hex start code point, then L (letter), N (number),\n"
        'W (whitespace) or O (other); the class holds up to the next start."""\n\n'
        f'RUNS = """\\\n' + "\n".join(lines) + '\n"""\n',
        encoding="utf-8",
    )
    print(f"wrote {path} ({len(runs)} runs)")


def excerpts(texts: list[str], count: int, size: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        start = rng.randrange(max(1, len(text) - size))
        out.append(text[start:start + size])
    return out


def random_unicode(rng: random.Random, n: int) -> str:
    """n code points drawn from a mix of ranges, never a surrogate."""
    pools = [
        (0x20, 0x7E), (0x09, 0x0D), (0x20, 0x20), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x52F),
        (0x600, 0x6FF), (0x900, 0x97F), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x0, 0xD7FF), (0xE000, 0x10FFFF),
    ]
    chars = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


def source_texts() -> tuple[list[str], list[str]]:
    """Python and C sources of the installed numpy package."""
    import numpy

    base = Path(numpy.__file__).parent
    py = sorted(base.rglob("*.py"))[:200]
    c = sorted(base.rglob("*.h")) + sorted(base.rglob("*.c"))

    def read(p: Path) -> str:
        return p.read_text(encoding="utf-8", errors="replace")

    return [read(p) for p in py], [read(p) for p in c]


def shakespeare_texts(directory: str) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(Path(directory).glob("*.txt"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--shakespeare", default=DEFAULT_SHAKESPEARE)
    args = ap.parse_args()
    from pyllm.hub import resolve_model_file, shakespeare_dir

    args.gguf = args.gguf or str(resolve_model_file("SmolLM2-135M-Instruct"))
    args.shakespeare = args.shakespeare or str(shakespeare_dir())

    record_unicode_classes(ROOT / "pyllm" / "tokenizers" / "_unicode_classes.py")
    md = gguf_tokenizer_metadata(args.gguf)
    DATA.mkdir(parents=True, exist_ok=True)
    tok_path = DATA / "smollm2_tokenizer.json.gz"
    with gzip.GzipFile(tok_path, "wb", mtime=0) as f:
        f.write(json.dumps(md, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    print(f"wrote {tok_path} ({tok_path.stat().st_size / 1e3:.0f} kB)")

    from transformers import AutoTokenizer

    gguf = Path(args.gguf)
    hf = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    bt = hf.backend_tokenizer

    rng = random.Random(20240601)
    plays = shakespeare_texts(args.shakespeare)
    py, c = source_texts()
    texts = list(HANDWRITTEN)
    texts += excerpts(plays, 24, 1500, rng)
    texts += excerpts(py, 12, 1500, rng)
    texts += excerpts(c, 12, 1500, rng)
    texts += [random_unicode(rng, rng.randint(1, 40)) for _ in range(300)]
    texts += ["".join(rng.choice(" \t\n\r\u00a0\u3000xy'.1") for _ in range(rng.randint(1, 30))) for _ in range(150)]

    encode = [{"text": t, "ids": hf.encode(t, add_special_tokens=True)} for t in texts]
    pretokenize = [{"text": t, "pieces": [p for p, _ in bt.pre_tokenizer.pre_tokenize_str(t)]}
                   for t in texts if "<" not in t and len(t) < 200]

    # decode: random ids (specials included) and single ids that end mid-character
    decode = []
    for _ in range(60):
        ids = [rng.randrange(len(hf)) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.3:
            ids.insert(rng.randrange(len(ids) + 1), rng.randrange(17))
        decode.append({"ids": ids, "text": hf.decode(ids), "text_skip": hf.decode(ids, skip_special_tokens=True)})
    for text in ["😀", "中文", "é"]:
        ids = hf.encode(text)
        for cut in range(1, len(ids)):
            decode.append({"ids": ids[:cut], "text": hf.decode(ids[:cut]),
                           "text_skip": hf.decode(ids[:cut], skip_special_tokens=True)})

    conversations = [
        [{"role": "user", "content": "Hi there"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
        [{"role": "user", "content": "Tabs\tand\nnewlines, émojis 😀"}],
    ]
    chat = []
    for messages in conversations:
        for gen in (False, True):
            text = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            ids = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=False)
            chat.append({"messages": messages, "add_generation_prompt": gen, "text": text, "ids": list(ids)})

    import transformers
    refs = {
        "source": {"gguf": gguf.name, "transformers": transformers.__version__,
                   "pre_tokenizer": str(bt.pre_tokenizer), "normalizer": str(bt.normalizer),
                   "decoder": str(bt.decoder), "unicodedata": unicodedata.unidata_version,
                   "python": sys.version.split()[0]},
        "special": {"bos_token_id": hf.bos_token_id, "eos_token_id": hf.eos_token_id,
                    "pad_token_id": hf.pad_token_id, "unk_token_id": hf.unk_token_id,
                    "all_special_ids": list(hf.all_special_ids), "len": len(hf)},
        "encode": encode, "pretokenize": pretokenize, "decode": decode, "chat": chat,
    }
    out = DATA / "tokenizer_refs.json"
    out.write_text(json.dumps(refs, ensure_ascii=False, indent=0), encoding="utf-8")
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e3:.0f} kB, {len(encode)} texts)")
    if size > 1_000_000:
        sys.exit(f"{out} is {size} bytes; keep it under 1 MB (fewer or shorter excerpts)")


if __name__ == "__main__":
    main()
