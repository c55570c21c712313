# Records what transformers' BertTokenizerFast (the Rust tokenizers pipeline) does with a multilingual
# set of texts and pairs, for all-MiniLM-L6-v2's vocabulary under several normalizer settings. Not a test.
"""Write tests/data/wordpiece_refs.json.gz: texts (English, code, accents, CJK, emoji,
control characters, very long words, empty and whitespace-only strings, added tokens
written in the text, and a seeded sample of the sentiment corpus), the ids, token
types, offsets and decodings transformers gives each, and calls on pairs with every
truncation strategy and padding mode, for five tokenizers: all-MiniLM-L6-v2 as
shipped (lower-case, accents stripped) and its vocabulary with the normalizer set
cased, lower-case keeping accents, cased stripping accents, and without CJK splitting.

Run with an interpreter that has transformers (the model directory and the corpus
are fetched as pyllm fetches them):

    python scripts/record_wordpiece_refs.py

The corpus sample is seeded, so a rerun on the same versions writes the same file.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "wordpiece_refs.json.gz"

HANDWRITTEN = [
    "", " ", "   ", "\n", "\t \n\r", "\u00a0\u3000\u2028", "Hello world!", "Hello, world.", "hello   world",
    "The quick brown fox jumps over the lazy dog.", "unaffable", "UNAFFABLE Unaffable", "I can't, won't; don't!",
    "e-mail: someone@example.com, http://t.co/AbC123?x=1&y=2",
    "#hashtag @user $100 50% 3.14 1,000,000",
    "def f(x):\n\treturn x**2  # square", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "a->b, c=>d, e::f",
    "naïve café résumé Ångström façade", "ÀÉÎÕÜ àéîõü ñÑ çÇ ß ẞ", "e\u0301 a\u0308 n\u0303 \u0301alone",
    "İstanbul ıi ΣΑΣ σας ΌΣΟΣ", "ﬁ ﬂ ＡＢＣ １２３ ½ ²", "Русский текст, ёлка. ЁЛКА", "Ελληνικά κείμενα",
    "中文测试：你好，世界！", "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다.",
    "漢字かな交じり文abc漢字",
    "\u3400\u4dbf \U00020000 \U0002a6df \uf900\ufaff \U0002f800", "النص العربي ١٢٣", "हिन्दी पाठ नमस्ते",
    "עברית",
    "ไทย ภาษา", "😀", "👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇫🇷", "emoji🎉in🎉words", "❤️ ☺ ✔ ★",
    "a\x00b\x01c\x07d\x1be\x7ff", "\x1c\x1d\x1e\x1f separators", "\x0b\x0c vt ff \x85 nel",
    "zero\u200bwidth\u200c\u200djoiner\ufeffbom", "\ufffdreplacement\ufffd", "\ue000\U000f0000 private",
    "\u0378\u0379 unassigned \U0001fa70 \U0001f970 newer emoji", "soft\u00adhyphen", "bidi\u202eoverride\u202c",
    "x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious" * 4, "é" * 101, "中" * 120,
    "word " * 200, "[CLS] [SEP] [PAD] [MASK] [UNK]", "the [MASK] sat on the mat", "[MASK][MASK]x[SEP]y",
    "[mask] [cls] lower-case specials", "[ MASK ]", "[MASK", "a[UNK]b", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛", "…—–‘’“”«»‹›",
    "~`!@#$%^&*()_+-={}|[]\\:\";'<>?,./", "¿¡§¶†‡•", "ℕ ℝ ∑ ∫ √ ∞ ≠ ≤", "Z\u0351\u036b\u0343\u036a\u0302\u036b",
]

PAIRS = [("How old are you?", "I am six years old."), ("", ""), ("short", "a much longer second sequence " * 5),
         ("a much longer first sequence " * 5, "short"), ("naïve 中文", "😀 [MASK] done"), ("x " * 40, "y " * 40)]

# (name, normalizer settings written into tokenizer.json and tokenizer_config.json)
VARIANTS = {
    "uncased": None,  # as shipped
    "cased": {"lowercase": False, "strip_accents": None, "handle_chinese_chars": True},
    "lower_keep_accents": {"lowercase": True, "strip_accents": False, "handle_chinese_chars": True},
    "cased_strip_accents": {"lowercase": False, "strip_accents": True, "handle_chinese_chars": True},
    "no_cjk_split": {"lowercase": True, "strip_accents": None, "handle_chinese_chars": False},
}

CALLS = [  # keyword arguments of batch calls over PAIRS (as text, text_pair)
    {}, {"truncation": True, "max_length": 12}, {"truncation": "longest_first", "max_length": 9},
    {"truncation": "only_second", "max_length": 14}, {"truncation": "only_first", "max_length": 14},
    {"padding": True}, {"padding": "max_length", "max_length": 40, "truncation": True},
    {"padding": "longest", "truncation": True, "max_length": 20, "return_offsets_mapping": True},
    {"add_special_tokens": False, "truncation": True, "max_length": 7},
]
SINGLE_CALLS = [  # over the handwritten texts
    {"padding": True, "truncation": True, "max_length": 16}, {"truncation": True},
    {"padding": "max_length", "max_length": 8, "truncation": True, "return_special_tokens_mask": True},
]


def variant_dir(src: Path, dst: Path, norm) -> Path:
    dst.mkdir(parents=True)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    if norm is not None:
        tj["normalizer"].update(norm)
        cfg.update(do_lower_case=norm["lowercase"], strip_accents=norm["strip_accents"],
                   tokenize_chinese_chars=norm["handle_chinese_chars"])
    (dst / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (dst / "vocab.txt").write_bytes((src / "vocab.txt").read_bytes())
    return dst


def call(tok, *args, **kw) -> dict:
    """The encoding as plain lists, or {"error": message} where tokenizers refuses the call."""
    try:
        return plain(tok(*args, **kw))
    except Exception as e:  # tokenizers raises a bare Exception for truncation errors
        return {"error": str(e)}


def plain(enc) -> dict:
    return {k: [list(map(list, r)) if k == "offset_mapping" else list(r) for r in v] for k, v in enc.items()}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import transformers

    from pyllm.data import read_sentiment_corpus
    from pyllm.hub import resolve_model_dir

    src = resolve_model_dir("all-MiniLM-L6-v2")
    corpus = [r.text for r in read_sentiment_corpus()]
    rng = random.Random(14)
    latin1 = [t for t in corpus if any(0x80 <= ord(c) < 0xA0 for c in t)]
    texts = HANDWRITTEN + rng.sample(corpus, 40) + rng.sample(latin1, 10)
    out = {"transformers": transformers.__version__, "texts": texts, "pairs": PAIRS, "calls": CALLS,
           "single_calls": SINGLE_CALLS, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, norm in VARIANTS.items():
            d = variant_dir(src, Path(tmp) / name, norm)
            tok = transformers.AutoTokenizer.from_pretrained(str(d))
            single = tok(texts, return_offsets_mapping=True)
            rec = {"normalizer": norm, "single": plain(single),
                   "decode": [tok.decode(ids) for ids in single["input_ids"]],
                   "decode_skip": [tok.decode(ids, skip_special_tokens=True) for ids in single["input_ids"]],
                   "decode_clean": [tok.decode(ids, clean_up_tokenization_spaces=True) for ids in single["input_ids"]],
                   "tokens": [tok.convert_ids_to_tokens(ids) for ids in single["input_ids"]],
                   "calls": [call(tok, [a for a, _ in PAIRS], [b for _, b in PAIRS], **kw) for kw in CALLS],
                   "pair_calls": [[call(tok, [a], [b], **kw) for a, b in PAIRS] for kw in CALLS],
                   "single_calls": [call(tok, texts, **kw) for kw in SINGLE_CALLS]}
            out["variants"][name] = rec
            print(f"{name}: {sum(len(r) for r in single['input_ids'])} tokens over {len(texts)} texts")
    data = json.dumps(out, ensure_ascii=False, sort_keys=True).encode("utf-8")
    OUT.write_bytes(gzip.compress(data, mtime=0))  # mtime 0: reruns are byte-identical
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
