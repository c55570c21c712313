"""``pyllm quantize``'s mixtures (pyllm/gguf_write.py) against llama.cpp's
quantizer: the type of every tensor for every file type, the files it
writes read by pyllm, transformers and llama.cpp, and llama.cpp's perplexity
on them within 1% of llama.cpp's own quantization of the same source.

The source is the default model decoded to F16 by ``pyllm quantize --type
F16 --allow-requantize`` (the published file is Q4_1: its decoded weights,
rounded to F16, stand in for the original ones). Needs the gguf
package and llama-cpp-python (the test extra installs both)."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import mixtures
import numpy as np
import pytest

import pyllm
from pyllm.gguf_write import FILE_TYPES, Hyper, mixture
from pyllm.models.gguf import GGUFFile

REF = json.loads((Path(__file__).parent / "data" / "smollm2_mixtures.json").read_text())
LOGIT_TOL = 1e-3  # as tests/test_mixtures.py

# held-out text for perplexity (public domain: Dickens, 1859; Lincoln, 1863)
HELD_OUT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it "
    "was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything "
    "before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the "
    "other way - in short, the period was so far like the present period, that some of its noisiest "
    "authorities insisted on its being received, for good or for evil, in the superlative degree of "
    "comparison only.\n\n"
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in "
    "Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a great "
    "civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure. We "
    "are met on a great battle-field of that war. We have come to dedicate a portion of that field, as a "
    "final resting place for those who here gave their lives that that nation might live. It is altogether "
    "fitting and proper that we should do this. But, in a larger sense, we can not dedicate - we can not "
    "consecrate - we can not hallow - this ground. The brave men, living and dead, who struggled here, have "
    "consecrated it, far above our poor power to add or detract. The world will little note, nor long "
    "remember what we say here, but it can never forget what they did here. It is for us the living, rather, "
    "to be dedicated here to the unfinished work which they who fought here have thus far so nobly advanced. "
    "It is rather for us to be here dedicated to the great task remaining before us - that from these "
    "honored dead we take increased devotion to that cause for which they gave the last full measure of "
    "devotion - that we here highly resolve that these dead shall not have died in vain - that this nation, "
    "under God, shall have a new birth of freedom - and that government of the people, by the people, for "
    "the people, shall not perish from the earth.\n"
)


def _hyper(f: GGUFFile) -> Hyper:
    md = f.metadata
    arch = md["general.architecture"]
    return Hyper(arch, n_layer=int(md[f"{arch}.block_count"]), n_head=int(md[f"{arch}.attention.head_count"]),
                 n_head_kv=int(md[f"{arch}.attention.head_count_kv"]))


def _plan(path: Path, name: str):
    f = GGUFFile(path)
    return mixture([(t.name, t.shape, t.type_name) for t in f.tensors.values()], name, _hyper(f))


def test_every_recorded_file_type_is_written():
    assert set(REF["files"]) <= set(FILE_TYPES)


@pytest.mark.parametrize("name", mixtures.MIXTURES)
def test_rules_reproduce_the_record(name, smollm_path):
    """The counts of each type in llama.cpp's file of the default model (the record) come out of the rules."""
    plan = _plan(smollm_path, name)
    assert dict(sorted(Counter(plan.values()).items())) == REF["files"][name]["tensor_types"]


@pytest.fixture(scope="session")
def llama_dir(smollm_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python makes the reference files (pip install '.[test]')")
    return mixtures.mixture_dir(smollm_path)


@pytest.mark.parametrize("name", mixtures.MIXTURES)
def test_rules_match_llama_cpp_per_tensor(name, smollm_path, llama_dir):
    """Every tensor's type, name by name, is the one llama.cpp's quantizer chose in its file."""
    theirs = mixtures.tensor_type_map(mixtures.make_mixture(smollm_path, name, llama_dir))
    assert _plan(smollm_path, name) == theirs


def test_rules_on_other_shapes():
    """Rules the default model does not reach: 256-multiple widths (no stand-ins), an untied head,
    grouped-query attention of 4 and more, a width that is not whole blocks of 32 (F16)."""
    hp = Hyper("llama", n_layer=8, n_head=32, n_head_kv=8)
    tensors = [("token_embd.weight", (1000, 512), "F16"), ("output.weight", (1000, 512), "F16")]
    for i in range(8):
        tensors += [(f"blk.{i}.attn_v.weight", (128, 512), "F16"), (f"blk.{i}.ffn_down.weight", (512, 1024), "F16"),
                    (f"blk.{i}.attn_q.weight", (512, 512), "F16")]
    q4km = mixture(tensors, "Q4_K_M", hp)
    assert q4km["token_embd.weight"] == "Q4_K" and q4km["output.weight"] == "Q6_K"
    # use_more_bits(i, 8): layers 0 and 7, and (i - 1) % 3 == 2 -> 3, 6
    assert [q4km[f"blk.{i}.attn_v.weight"] for i in range(8)] == ["Q6_K", "Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q4_K",
                                                                   "Q6_K", "Q6_K"]
    assert q4km["blk.2.attn_q.weight"] == "Q4_K"
    assert mixture(tensors, "IQ4_XS", hp)["blk.5.attn_v.weight"] == "Q5_K"  # n_gqa = 4
    assert mixture(tensors, "Q2_K", hp)["blk.5.attn_v.weight"] == "Q4_K"
    assert mixture([("blk.0.attn_q.weight", (8, 40), "F32")], "Q4_0", hp)["blk.0.attn_q.weight"] == "F16"
    with pytest.raises(ValueError, match="unknown file type 'Q7_K'.*Q4_K_M"):
        mixture(tensors, "Q7_K", hp)


# ---------------------------------------------------------------------------------------------- files


@pytest.fixture(scope="session")
def f16_source(smollm_path, tmp_path_factory):
    """The default model decoded and rounded to F16 by pyllm (a Q4_1 value d * q + m needs more than
    fp16's 11 bits in places: the nearest fp16 is stored)."""
    out = tmp_path_factory.mktemp("f16") / "SmolLM2-135M-Instruct.F16.gguf"
    with pytest.warns(UserWarning, match="requantizing"):
        pyllm.quantize(smollm_path, out, type="F16", allow_requantize=True)
    return out


def test_f16_source_holds_the_same_weights(f16_source, smollm_path):
    a, b = GGUFFile(smollm_path), GGUFFile(f16_source)
    assert list(a.tensors) != [] and set(a.tensors) == set(b.tensors)
    from pyllm import quant

    for name in ("token_embd.weight", "blk.3.ffn_down.weight", "blk.0.attn_norm.weight"):
        ta, tb = a.tensors[name], b.tensors[name]
        x = quant.dequantize(a.tensor_bytes(name), ta.type_name, ta.shape)
        y = quant.dequantize(b.tensor_bytes(name), tb.type_name, tb.shape)
        np.testing.assert_array_equal(x.astype(np.float16).astype(np.float32), y)  # rounded to nearest fp16
    assert b.metadata["general.file_type"] == 1
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.chat_template",
                "llama.rope.freq_base"):
        va, vb = a.metadata[key], b.metadata[key]
        assert (np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb), key


@pytest.fixture(scope="session")
def pyllm_files(f16_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("pyllm-quantized")
    return {name: (out / f"{name}.gguf", pyllm.quantize(f16_source, out / f"{name}.gguf", type=name))
            for name in ("Q4_K_M", "Q8_0", "Q4_0")}


@pytest.fixture(scope="session")
def llama_files(f16_source):
    pytest.importorskip("llama_cpp", reason="llama.cpp's own quantization is the reference (pip install '.[test]')")
    d = mixtures.mixture_dir(f16_source)
    return {name: mixtures.make_mixture(f16_source, name, d) for name in ("Q4_K_M", "Q8_0", "Q4_0")}


@pytest.mark.parametrize("name", ["Q4_K_M", "Q8_0", "Q4_0"])
def test_same_tensors_as_llama_cpp(name, pyllm_files, llama_files):
    """From the same F16 source, pyllm's file holds llama.cpp's tensor types and bytes."""
    gguf = pytest.importorskip("gguf")
    path, plan = pyllm_files[name]
    theirs = {t.name: t for t in gguf.GGUFReader(str(llama_files[name])).tensors}
    mine = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    assert {n: t.tensor_type.name for n, t in mine.items()} == {n: t.tensor_type.name for n, t in theirs.items()}
    assert plan == {n: t.tensor_type.name for n, t in mine.items()}
    differ = [n for n in mine if not np.array_equal(np.asarray(mine[n].data), np.asarray(theirs[n].data))]
    assert differ == []


@pytest.mark.parametrize("name", ["Q4_K_M", "Q8_0", "Q4_0"])
def test_perplexity_within_one_percent_of_llama_cpp(name, pyllm_files, llama_files, tmp_path):
    """llama.cpp runs pyllm's file, and its perplexity on a held-out text is within 1% of
    llama.cpp quantizing the same source itself (printed: the figures of the README)."""
    text = tmp_path / "held_out.txt"
    text.write_text(HELD_OUT, encoding="utf-8")
    mine = mixtures.llama_cpp_perplexity(pyllm_files[name][0], text)
    theirs = mixtures.llama_cpp_perplexity(llama_files[name], text)
    print(f"\n{name}: llama.cpp perplexity over {mine['tokens']} tokens: pyllm's file {mine['perplexity']:.4f}, "
          f"llama.cpp's {theirs['perplexity']:.4f}")
    assert mine["tokens"] == theirs["tokens"] > 400
    assert abs(mine["perplexity"] / theirs["perplexity"] - 1) <= 0.01


@pytest.fixture(scope="session")
def hf_source(f16_source, tmp_path_factory):
    """The F16 source as a Hugging Face directory, made by transformers (its GGUF loader, then
    safetensors): the full-size input of ``pyllm quantize DIR``."""
    pytest.importorskip("transformers", reason="transformers makes the directory (pip install '.[test]')")
    pytest.importorskip("safetensors", reason="transformers makes the directory (pip install '.[test]')")
    return mixtures.hf_directory_from_gguf(f16_source, tmp_path_factory.mktemp("hf") / "SmolLM2-135M-Instruct")


def test_hf_directory_quantizes_as_llama_cpp_quantizes_its_gguf(hf_source, llama_files, tmp_path):
    """The full-size model as a Hugging Face directory, quantized to Q4_K_M by pyllm in one step:
    every tensor is the byte of llama.cpp's quantizer on the F16 GGUF file, and llama.cpp's
    perplexity on it over the held-out text is within 1% of its own file's (printed)."""
    gguf = pytest.importorskip("gguf")
    out = tmp_path / "from-hf-Q4_K_M.gguf"
    pyllm.quantize(hf_source, out, type="Q4_K_M")
    mine = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(str(llama_files["Q4_K_M"])).tensors}
    assert {n: t.tensor_type.name for n, t in mine.items()} == {n: t.tensor_type.name for n, t in theirs.items()}
    assert [n for n in mine if not np.array_equal(np.asarray(mine[n].data), np.asarray(theirs[n].data))] == []
    text = tmp_path / "held_out.txt"
    text.write_text(HELD_OUT, encoding="utf-8")
    a = mixtures.llama_cpp_perplexity(out, text)
    b = mixtures.llama_cpp_perplexity(llama_files["Q4_K_M"], text)
    print(f"\nQ4_K_M from the HF directory: llama.cpp perplexity over {a['tokens']} tokens {a['perplexity']:.4f}, "
          f"llama.cpp's own file {b['perplexity']:.4f}")
    assert a["tokens"] == b["tokens"] > 400
    assert abs(a["perplexity"] / b["perplexity"] - 1) <= 0.01


def test_q4_k_m_matches_transformers(pyllm_files):
    """pyllm runs its own Q4_K_M file as transformers fp32 runs it (the file dequantized by gguf)."""
    pytest.importorskip("transformers")
    path, _ = pyllm_files["Q4_K_M"]
    prompt = REF["prompt_ids"]
    ref = mixtures.transformers_reference(path, prompt, 8)
    model = pyllm.AutoModelForCausalLM.from_pretrained(path)
    new = ref["new_ids"]
    out = model.generate(prompt, max_new_tokens=len(new), min_new_tokens=len(new))
    assert out[0, len(prompt):].tolist() == new
    logits = model(np.array(prompt + new)).logits[0, len(prompt) - 1 : len(prompt) + len(new) - 1]
    err = float(np.abs(np.take_along_axis(logits, np.array(ref["top_ids"]), axis=1) - np.array(ref["top_logits"]))
                .max())
    assert err <= LOGIT_TOL
    assert min(ref["margin"]) > 2 * err


def test_requantizing_needs_consent(smollm_path, tmp_path):
    with pytest.raises(ValueError, match="holds quantized tensors \\(Q4_1\\).*allow_requantize"):
        pyllm.quantize(smollm_path, tmp_path / "x.gguf", type="Q4_K_M")
    assert list(tmp_path.iterdir()) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="requantizing Q4_1 tensors"):
            pyllm.quantize(smollm_path, tmp_path / "x.gguf", type="Q5_0", allow_requantize=True)
