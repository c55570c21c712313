"""``pyllm quantize IN OUT --type T`` (pyllm/cli.py, pyllm/gguf_write.py): every
architecture's tiny GGUF (llama.cpp's converter output, tests/data/tiny)
quantized as llama.cpp's quantizer quantizes it, loaded by pyllm; a Hugging
Face GPT-2 directory converted as llama.cpp's converter converts it, and
``pyllm train`` -> ``pyllm quantize`` -> pyllm and llama.cpp; the atomic
write; and clear errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mixtures
import numpy as np
import pytest

from pyllm import AutoModelForCausalLM
from pyllm.cli import main
from pyllm.models.gguf import GGUFFile

gguf = pytest.importorskip("gguf", reason="pyllm quantize writes through the gguf package (pip install '.[test]')")

TINY = Path(__file__).parent / "data" / "tiny"
ARCHS = ["llama2", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_0", "Q5_1"])
def test_tiny_models_as_llama_cpp_quantizes_them(arch, ftype, tmp_path, capsys):
    pytest.importorskip("llama_cpp", reason="llama.cpp's quantizer is the reference (pip install '.[test]')")
    src = TINY / arch / f"{arch}-f16.gguf"
    out = tmp_path / f"{arch}-{ftype}.gguf"
    assert main(["quantize", str(src), str(out), "--type", ftype.lower(), "-t", "2"]) == 0
    assert f"{ftype}, " in capsys.readouterr().err
    theirs = {t.name: t for t in gguf.GGUFReader(str(mixtures.make_mixture(src, ftype, tmp_path / "ref"))).tensors}
    mine_reader = gguf.GGUFReader(str(out))
    mine = {t.name: t for t in mine_reader.tensors}
    assert {n: t.tensor_type.name for n, t in mine.items()} == {n: t.tensor_type.name for n, t in theirs.items()}
    for n in mine:
        np.testing.assert_array_equal(np.asarray(mine[n].data), np.asarray(theirs[n].data), err_msg=n)
    # the metadata: the source's, with the file type set
    src_fields = gguf.GGUFReader(str(src)).fields
    for key, field in src_fields.items():
        if key.startswith("GGUF.") or key == "general.file_type":
            continue
        assert mine_reader.fields[key].contents() == field.contents(), key
    assert mine_reader.fields["general.file_type"].contents() == int(gguf.LlamaFileType[f"MOSTLY_{ftype}"])
    # and pyllm runs it as it runs llama.cpp's file
    ids = [1, 5, 9, 2, 7]
    a = AutoModelForCausalLM.from_pretrained(out)(np.array(ids)).logits
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "ref" / f"{ftype}.gguf")(np.array(ids)).logits
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch", ["gpt2", "llama2", "mistral", "llama3", "qwen2", "qwen3", "gemma2", "gemma3",
                                  "phi3"])
def test_hf_directory_as_llama_cpp_converts_it(arch, tmp_path):
    """transformers' tiny directory, converted to F32, is llama.cpp's converter's file: the same
    tensors bit for bit (Q/K rows permuted for llama), the same metadata (but the name: the
    byte-level BPE vocabularies and, for llama2 and mistral, the SentencePiece tokenizer.model's
    pieces, scores and types), and pyllm gives the same logits on both."""
    out = tmp_path / f"{arch}-f32.gguf"
    ref = TINY / arch / f"{arch}-f32.gguf"
    assert main(["quantize", str(TINY / arch / "hf"), str(out), "--type", "f32"]) == 0
    mine, theirs = gguf.GGUFReader(str(out)), gguf.GGUFReader(str(ref))
    a = {t.name: t for t in mine.tensors}
    b = {t.name: t for t in theirs.tensors}
    assert sorted(a) == sorted(b)
    for n in a:
        assert a[n].tensor_type == b[n].tensor_type and list(a[n].shape) == list(b[n].shape), n
        if n == "rope_freqs.weight":
            # Llama 3's factors: llama.cpp computes them in torch float32 arithmetic, pyllm in float64
            # rounded once (its loader's own factors); they differ by an ulp where they differ
            np.testing.assert_allclose(np.asarray(a[n].data), np.asarray(b[n].data), rtol=2.5e-7, err_msg=n)
        else:
            np.testing.assert_array_equal(np.asarray(a[n].data), np.asarray(b[n].data), err_msg=n)
    skip = ("GGUF.", "general.name", "general.size_label")
    keys = {k for k in theirs.fields if not k.startswith(skip)}
    assert keys == {k for k in mine.fields if not k.startswith(skip)}
    for k in keys:
        assert mine.fields[k].types == theirs.fields[k].types, k
        assert mine.fields[k].contents() == theirs.fields[k].contents(), k
    ids = np.array([1, 5, 9, 2, 7, 30, 11])
    x = AutoModelForCausalLM.from_pretrained(out)(ids).logits
    y = AutoModelForCausalLM.from_pretrained(ref)(ids).logits
    if arch == "llama3":
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
    else:
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("arch, change, message", [
    ("gemma2", {"query_pre_attn_scalar": 8}, "query_pre_attn_scalar=8 is not head_dim=16"),
    ("gemma2", {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types are not gemma2's pattern"),
    ("gemma2", {"attn_logit_softcapping": None}, "attn_logit_softcapping is not set"),
    ("gemma3", {"layer_types": ["sliding_attention"] * 6}, "layer_types are not gemma3's pattern"),
    ("gemma3", {"final_logit_softcapping": 30.0}, "final_logit_softcapping is not part of Gemma 3"),
    ("gemma3", {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                    "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}},
     "scaled RoPE on sliding layers"),
    ("phi3", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4, "long_factor": [1.0] * 8,
                                  "short_factor": [1.0] * 8}}, "rope_type 'longrope'"),
    ("phi3", {"hidden_act": "gelu"}, "activation 'gelu'"),
])
def test_hf_directory_llama_cpp_cannot_express(arch, change, message, tmp_path, capsys):
    """A configuration llama.cpp's file for the architecture has no key for is refused by name,
    never written as a file that runs another model."""
    d = tmp_path / arch
    shutil.copytree(TINY / arch / "hf", d)
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), **change}))
    assert main(["quantize", str(d), str(tmp_path / "o.gguf"), "--type", "q8_0"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def test_hf_llama_directory_quantized_runs_as_llama_cpp_files(tmp_path):
    """HF directory -> Q8_0 in one step equals llama.cpp's F32 file quantized by pyllm (the same
    tensors but Llama 3's RoPE factors, which stay F32)."""
    one = tmp_path / "direct.gguf"
    two = tmp_path / "via-f32.gguf"
    assert main(["quantize", str(TINY / "qwen2" / "hf"), str(one), "--type", "q8_0"]) == 0
    assert main(["quantize", str(TINY / "qwen2" / "qwen2-f32.gguf"), str(two), "--type", "q8_0"]) == 0
    a = {t.name: t for t in gguf.GGUFReader(str(one)).tensors}
    b = {t.name: t for t in gguf.GGUFReader(str(two)).tensors}
    assert sorted(a) == sorted(b) and any(t.tensor_type.name == "Q8_0" for t in a.values())
    for n in a:
        assert a[n].tensor_type == b[n].tensor_type, n
        np.testing.assert_array_equal(np.asarray(a[n].data), np.asarray(b[n].data), err_msg=n)


@pytest.mark.parametrize("arch", ["llama2", "gemma2", "gemma3", "phi3"])
def test_hf_sentencepiece_directory_tokenizes_in_llama_cpp(arch, tmp_path):
    """A directory with a SentencePiece tokenizer.model converted by pyllm: llama.cpp splits text
    into the ids transformers' tokenizer gives on the directory, and greedy tokens come out of it."""
    pytest.importorskip("llama_cpp", reason="llama.cpp runs the file (pip install '.[test]')")
    transformers = pytest.importorskip("transformers")
    out = tmp_path / f"{arch}-q8_0.gguf"
    assert main(["quantize", str(TINY / arch / "hf"), str(out), "--type", "q8_0"]) == 0
    text = "Hello world, it is a fine day.\n  Spaces and 123!"
    ids = transformers.AutoTokenizer.from_pretrained(TINY / arch / "hf").encode(text)
    code = mixtures.LLAMA_CPP_WITHOUT_AMX + (
        "import sys, llama_cpp; m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False); "
        "ids = m.tokenize(sys.argv[2].encode(), add_bos=True, special=False); m.eval(ids); "
        "print(ids, m.sample(temp=0.0))")
    proc = subprocess.run([sys.executable, "-c", code, str(out), text], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, _, tok = proc.stdout.strip().splitlines()[-1].rpartition(" ")
    assert eval(got) == ids
    assert 0 <= int(tok) < 384


def test_hf_digits_pre_tokenizer_converts_as_smollm(tmp_path):
    """A byte-level tokenizer.json with Digits(individual_digits) before ByteLevel (SmolLM's) is
    written as llama.cpp's "smollm" pre-tokenizer, and llama.cpp splits text as transformers does."""
    pytest.importorskip("llama_cpp", reason="llama.cpp runs the file (pip install '.[test]')")
    transformers = pytest.importorskip("transformers")
    import json

    d = tmp_path / "gpt2-digits"
    shutil.copytree(TINY / "gpt2" / "hf", d)
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, dict(tj["pre_tokenizer"], use_regex=True)]}
    (d / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    out = tmp_path / "gpt2-digits.gguf"
    assert main(["quantize", str(d), str(out), "--type", "f32"]) == 0
    assert GGUFFile(out).metadata["tokenizer.ggml.pre"] == "smollm"
    text = "ROMEO 1597: act 2,  scene 10!"
    ids = transformers.AutoTokenizer.from_pretrained(d).encode(text)
    code = mixtures.LLAMA_CPP_WITHOUT_AMX + (
        "import sys, llama_cpp; m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False); "
        "print(m.tokenize(sys.argv[2].encode(), add_bos=False, special=False))")
    proc = subprocess.run([sys.executable, "-c", code, str(out), text], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert eval(proc.stdout.strip().splitlines()[-1]) == ids


def test_train_quantize_run(tmp_path):
    """``pyllm train`` (byte-level BPE) -> ``pyllm quantize`` -> the file runs in pyllm, greedy as the
    trained directory does, and in llama.cpp."""
    text = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the "
            "sun.\n\n") * 40
    (tmp_path / "play.txt").write_text(text, encoding="utf-8")
    model_dir = tmp_path / "model"
    assert main(["train", "--data", str(tmp_path / "play.txt"), "--out", str(model_dir), "--tokenizer", "bpe",
                 "--vocab-size", "300", "--max-steps", "30", "--n-layer", "1", "--n-head", "2", "--n-embd", "64",
                 "--block-size", "32", "--batch-size", "4", "--warmup", "2", "--lr", "3e-3", "--eval-every", "0",
                 "--no-progress"]) == 0
    out = tmp_path / "model-q8_0.gguf"
    assert main(["quantize", str(model_dir), str(out), "--type", "q8_0"]) == 0
    from pyllm import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(out).encode("ROMEO:\nBut soft")
    assert ids == AutoTokenizer.from_pretrained(model_dir).encode("ROMEO:\nBut soft")
    f16 = tmp_path / "model-f32.gguf"
    assert main(["quantize", str(model_dir), str(f16), "--type", "f32"]) == 0
    a = AutoModelForCausalLM.from_pretrained(f16)(np.array(ids)).logits
    b = AutoModelForCausalLM.from_pretrained(model_dir)(np.array(ids)).logits
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    q = AutoModelForCausalLM.from_pretrained(out).generate(ids, max_new_tokens=8, min_new_tokens=8)
    assert q.shape[1] == len(ids) + 8
    pytest.importorskip("llama_cpp", reason="llama.cpp runs the file (pip install '.[test]')")
    code = ("import sys, llama_cpp; m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False); "
            "print(m.tokenize(sys.argv[2].encode(), add_bos=False, special=False))")
    proc = subprocess.run([sys.executable, "-c", code, str(out), "ROMEO:\nBut soft"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert eval(proc.stdout.strip().splitlines()[-1]) == ids


def test_f32_bf16_f16_outputs(tmp_path):
    src = TINY / "qwen2" / "qwen2-f32.gguf"
    ref = GGUFFile(src)
    name = "blk.0.ffn_up.weight"
    x = ref.tensor_bytes(name).view(np.float32).reshape(ref.tensors[name].shape)
    for ftype, decode in (("F32", lambda r: r.view(np.float32)), ("F16", lambda r: r.view(np.float16)),
                          ("BF16", lambda r: gguf.quants.dequantize(r, gguf.GGMLQuantizationType.BF16))):
        out = tmp_path / f"{ftype}.gguf"
        assert main(["quantize", str(src), str(out), "--type", ftype]) == 0
        f = GGUFFile(out)
        assert f.tensors[name].type_name == ftype
        assert f.tensors["blk.0.attn_norm.weight"].type_name == "F32"
        got = np.asarray(decode(f.tensor_bytes(name)), dtype=np.float32).reshape(x.shape)
        want = {"F32": x, "F16": x.astype(np.float16).astype(np.float32),
                "BF16": gguf.quants.dequantize(gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16),
                                               gguf.GGMLQuantizationType.BF16)}[ftype]
        np.testing.assert_array_equal(got, want)


_SLOW_CHILD = r"""
import sys, time
import pyllm
from pyllm import quant
encode = quant.quantize_file
def slow(*a, **k):
    time.sleep(0.2)
    return encode(*a, **k)
quant.quantize_file = slow
pyllm.quantize(sys.argv[1], sys.argv[2], type="Q8_0")
"""


def test_an_interrupted_write_leaves_no_file(tmp_path):
    """A quantize killed mid-write leaves no output file (the data went to a temporary file), and an
    existing output stays as it was."""
    src = TINY / "llama3" / "llama3-f32.gguf"
    out = tmp_path / "out.gguf"
    out.write_bytes(b"the previous file")
    # cwd: the installed package, not the source tree beside the tests (which has no built _C)
    child = subprocess.Popen([sys.executable, "-c", _SLOW_CHILD, str(src), str(out)], stderr=subprocess.PIPE,
                             cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            parts = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
            if parts and parts[0].stat().st_size > 0:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert parts, "the child wrote no temporary file"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.read_bytes() == b"the previous file"
    # a run to the end replaces it
    assert main(["quantize", str(src), str(out), "--type", "Q8_0"]) == 0
    assert GGUFFile(out).tensors["blk.0.attn_q.weight"].type_name == "Q8_0"


def test_bad_input(tmp_path, capsys):
    src = TINY / "llama3" / "llama3-f16.gguf"
    assert main(["quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "o.gguf")]) == 1
    assert "no such GGUF file" in capsys.readouterr().err
    assert main(["quantize", str(src), str(tmp_path / "o.gguf"), "--type", "q7_k"]) == 1
    assert "unknown file type 'Q7_K'" in capsys.readouterr().err
    assert main(["quantize", str(TINY / "llama3"), str(tmp_path / "o.gguf")]) == 1
    assert "has no config.json" in capsys.readouterr().err
    other = tmp_path / "mamba"
    shutil.copytree(TINY / "llama2" / "hf", other)
    (other / "config.json").write_text(json.dumps({**json.loads((other / "config.json").read_text()),
                                                   "model_type": "mamba"}))
    assert main(["quantize", str(other), str(tmp_path / "o.gguf")]) == 1
    assert "holds a 'mamba' model" in capsys.readouterr().err
    no_model = tmp_path / "llama2-without-tokenizer-model"
    shutil.copytree(TINY / "llama2" / "hf", no_model)
    (no_model / "tokenizer.model").unlink()
    assert main(["quantize", str(no_model), str(tmp_path / "o.gguf")]) == 1
    assert "is a SentencePiece-style tokenizer" in capsys.readouterr().err
    (no_model / "tokenizer.model").write_bytes(b"\x0a\x05\x0a\x03ab")  # a piece cut short
    assert main(["quantize", str(no_model), str(tmp_path / "o.gguf")]) == 1
    assert "is not a SentencePiece model" in capsys.readouterr().err
    assert main(["quantize", str(src), str(tmp_path / "o.gguf"), "--threads", "0"]) == 1
    assert "threads must be >= 1" in capsys.readouterr().err
    q8 = TINY / "llama3" / "llama3-q8_0.gguf"
    assert main(["quantize", str(q8), str(tmp_path / "o.gguf"), "--type", "q4_0"]) == 1
    assert "--allow-requantize" in capsys.readouterr().err
    assert main(["quantize", str(q8), str(tmp_path / "o.gguf"), "--type", "q4_0", "--allow-requantize"]) == 0
    assert "warning: requantizing Q8_0" in capsys.readouterr().err
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    assert main(["quantize", str(bad), str(tmp_path / "o2.gguf")]) == 1
    assert "pyllm: error:" in capsys.readouterr().err
    assert not (tmp_path / "o2.gguf").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_without_the_gguf_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    src = TINY / "llama3" / "llama3-f16.gguf"
    assert main(["quantize", str(src), str(tmp_path / "o.gguf")]) == 1
    assert "pip install 'pyllm[quantize]'" in capsys.readouterr().err
