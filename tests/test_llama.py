"""The llama runtime: against a numpy reference on small random models in
every weight type, and against transformers (fp32) on the real SmolLM2 file."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import pyllm
from pyllm import AutoModelForCausalLM, GGUFFile, LlamaConfig

from llama_ref import llama_forward

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

TINY = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=96, rms_norm_eps=1e-5, rope_theta=10000.0, context_length=64)


def write_tiny_llama(path, wtype=Q.F32, tied=True, seed=0, cfg=TINY, drop=None):
    """A random llama in GGUF; returns the weights as the file stores them (dequantized, float64)."""
    rng = np.random.default_rng(seed)
    C, FF, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    QD = cfg["num_attention_heads"] * cfg["head_dim"]
    KVD = cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,)}
    if not tied:
        shapes["output.weight"] = (V, C)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"blk.{layer}."
        shapes.update({p + "attn_norm.weight": (C,), p + "ffn_norm.weight": (C,), p + "attn_q.weight": (QD, C),
                       p + "attn_k.weight": (KVD, C), p + "attn_v.weight": (KVD, C), p + "attn_output.weight": (C, QD),
                       p + "ffn_gate.weight": (FF, C), p + "ffn_up.weight": (FF, C), p + "ffn_down.weight": (C, FF)})
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["context_length"])
    w.add_embedding_length(C)
    w.add_feed_forward_length(FF)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(V)
    stored = {}
    for name, shape in shapes.items():
        if drop == name:
            continue
        if len(shape) == 1:
            x = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            w.add_tensor(name, x)
            stored[name] = x.astype(np.float64)
            continue
        x = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        if wtype == Q.F32:
            w.add_tensor(name, x)
        elif wtype == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, wtype), raw_dtype=wtype)
        stored[name] = gguf.quants.dequantize(gguf.quants.quantize(x, wtype), wtype).astype(np.float64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def ref_cfg(cfg=TINY):
    return dict(cfg)


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# activations are quantized to int8 blocks for the block formats: a few % end to end
WEIGHT_TYPES = [(Q.F32, 1e-5), (Q.F16, 1e-5), (Q.BF16, 1e-5), (Q.Q8_0, 0.03), (Q.Q4_0, 0.03), (Q.Q4_1, 0.03)]


@pytest.mark.parametrize("wtype,tol", WEIGHT_TYPES, ids=[t.name for t, _ in WEIGHT_TYPES])
@pytest.mark.parametrize("tied", [True, False])
def test_tiny_llama_matches_numpy_reference(isa, tmp_path, wtype, tol, tied):
    path = tmp_path / "tiny.gguf"
    W = write_tiny_llama(path, wtype, tied)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.tie_word_embeddings == tied
    ids = np.random.default_rng(1).integers(0, TINY["vocab_size"], size=37)
    got = model(ids).logits[0]
    want = llama_forward(W, ref_cfg(), ids)
    assert got.shape == (37, TINY["vocab_size"]) and got.dtype == np.float32
    assert rel_err(got, want) < tol


def test_incremental_decode_equals_full_forward(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, Q.F32)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = np.random.default_rng(2).integers(0, TINY["vocab_size"], size=20)
    full = model(ids).logits[0]
    model.reset()
    first = model.step(ids[:12], all_logits=True)
    np.testing.assert_allclose(first, full[:12], rtol=1e-4, atol=1e-4)
    for t in range(12, 20):
        np.testing.assert_allclose(model.step(ids[t : t + 1]), full[t], rtol=1e-4, atol=1e-4)
    assert model.n_past == 20


@pytest.mark.parametrize("wtype", [Q.Q8_0, Q.Q4_0, Q.Q4_1], ids=lambda t: t.name)
def test_decode_steps_match_full_forward_quantized(isa, tmp_path, wtype):
    # one-token steps take the packed single-region path, a 20-token forward
    # the GEMM: fp32 activations and one summation order, so the same bits,
    # and the numpy float64 model up to float32 rounding
    path = tmp_path / "tiny.gguf"
    W = write_tiny_llama(path, wtype, tied=False)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = np.random.default_rng(2).integers(0, TINY["vocab_size"], size=20)
    want = llama_forward(W, ref_cfg(), ids)
    model.reset()
    model.step(ids[:4])
    steps = np.stack([model.step(ids[t : t + 1]) for t in range(4, 20)])
    assert rel_err(steps, want[4:]) < 1e-4
    np.testing.assert_array_equal(steps, model(ids).logits[0][4:])


@pytest.mark.parametrize("wtype", [Q.Q8_0, Q.Q4_1, Q.F32], ids=lambda t: t.name)
def test_decode_logits_do_not_depend_on_thread_count(tmp_path, wtype):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, wtype)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = np.random.default_rng(3).integers(0, TINY["vocab_size"], size=12)
    before = pyllm.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            pyllm.set_num_threads(n)
            model.reset()
            prefill = model.step(ids[:5], all_logits=True)
            runs.append(np.concatenate([prefill] + [model.step(ids[t : t + 1])[None] for t in range(5, 12)]))
    finally:
        pyllm.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_padded_batch_equals_single_rows(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, Q.Q8_0)
    model = AutoModelForCausalLM.from_pretrained(path)
    a, b = [5, 6, 7, 8, 9], [10, 11, 12]
    ids = np.array([a, [0, 0] + b])
    mask = np.array([[1] * 5, [0, 0, 1, 1, 1]])
    out = model(ids, attention_mask=mask).logits
    np.testing.assert_array_equal(out[0], model(a).logits[0])
    np.testing.assert_array_equal(out[1, 2:], model(b).logits[0])
    np.testing.assert_array_equal(out[1, :2], 0.0)


def test_bad_inputs(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, Q.F32)
    model = AutoModelForCausalLM.from_pretrained(path, n_ctx=16)
    with pytest.raises(ValueError, match="out of range"):
        model([1, 2, 96])
    with pytest.raises(ValueError, match="out of range"):
        model([-1])
    with pytest.raises(ValueError, match="empty"):
        model([])
    with pytest.raises(TypeError, match="integer token ids"):
        model([1.5, 2.0])
    with pytest.raises(ValueError, match="longer than the context"):
        model(list(range(17)))
    model.reset()
    model.step(list(range(10)))
    with pytest.raises(ValueError, match="exceed the context"):
        model.step(list(range(7)))
    with pytest.raises(ValueError, match="same length"):
        model([[1, 2], [3]])
    with pytest.raises(ValueError, match="n_ctx"):
        AutoModelForCausalLM.from_pretrained(path, n_ctx=0)


@pytest.mark.parametrize(
    "damage,match",
    [("drop:blk.1.ffn_up.weight", "blk.1.ffn_up.weight"), ("arch", "unsupported architecture"),
     ("iq2xs", r"unsupported GGUF tensor type IQ2_XS in blk.0.attn_q.weight; supported: F32, F16, Q4_0, Q4_1, "
               r"Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, BF16$")],
)
def test_bad_model_files(tmp_path, damage, match):
    path = tmp_path / "bad.gguf"
    if damage.startswith("drop:"):
        write_tiny_llama(path, Q.F32, drop=damage[5:])
    elif damage == "arch":
        w = gguf.GGUFWriter(str(path), "mamba")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    else:
        # an IQ2_XS tensor, which the runtime does not compute with (256-element blocks of 74 bytes)
        cfg = dict(TINY, hidden_size=256, head_dim=64, intermediate_size=256)
        write_tiny_llama(path, Q.F32, cfg=cfg)
        f = GGUFFile(path)
        info = f.tensors["blk.0.attn_q.weight"]
        raw = bytearray(path.read_bytes())
        # rewrite the tensor's type id in the header: find its entry by name
        entry = raw.find(b"blk.0.attn_q.weight") + len("blk.0.attn_q.weight")
        n_dims = int.from_bytes(raw[entry : entry + 4], "little")
        type_at = entry + 4 + 8 * n_dims
        assert int.from_bytes(raw[type_at : type_at + 4], "little") == 0
        raw[type_at : type_at + 4] = (17).to_bytes(4, "little")  # IQ2_XS
        # F32 (256x256) is 262144 bytes; IQ2_XS is 256*74 = 18944: still inside the file
        assert info.nbytes >= 256 * 74
        path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=match):
        AutoModelForCausalLM.from_pretrained(path)


def test_threads_share_a_model(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path, Q.Q4_1)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = list(range(30))
    want = model(ids).logits
    results = []

    def work():
        for _ in range(5):
            results.append(np.array_equal(model(ids).logits, want))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [True] * 15


# ---- the real model against transformers (fp32, same GGUF), recorded by scripts/record_llama_refs.py

REF = Path(__file__).parent / "data" / "smollm2_reference.npz"


def test_smollm2_config(smollm):
    c = smollm.config
    assert isinstance(c, LlamaConfig)
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size) == (49152, 576, 30, 1536)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (9, 3, 64)
    assert c.rope_theta == 100000.0 and c.tie_word_embeddings
    assert abs(c.rms_norm_eps - 1e-5) < 1e-9
    assert (c.bos_token_id, c.eos_token_id) == (1, 2)


def test_smollm2_faithful_to_transformers(smollm):
    ref = np.load(REF)
    ids = ref["ids"]
    logits = smollm(ids).logits[0]
    top1 = float((logits[:-1].argmax(-1) == ref["argmax"]).mean())
    logp = logits[:-1].astype(np.float64)
    logp = logp - logp.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    ppl, ref_ppl = float(np.exp(nll.mean())), float(np.exp(ref["nll"].mean()))
    print(f"\nSmolLM2 vs transformers fp32 on {len(ids)} tokens: top-1 agreement {top1:.4f}, "
          f"perplexity {ppl:.4f} vs {ref_ppl:.4f} ({ppl / ref_ppl - 1:+.2%})")
    assert top1 == 1.0
    assert abs(ppl / ref_ppl - 1) <= 1e-4  # 0.01%
    for row, want in zip(ref["logit_rows"], ref["logits"]):
        np.testing.assert_allclose(logits[row], want, rtol=0, atol=1e-3)  # float32 error (tests/test_fidelity.py)


def test_smollm2_decode_faithful_to_transformers(smollm):
    # the one-token path (packed weights, fp32 activations) on the last 256
    # reference positions, after a prefill of the rest
    ref = np.load(REF)
    ids = ref["ids"]
    start = len(ids) - 257
    smollm.reset()
    smollm.step(ids[:start])
    rows = np.stack([smollm.step(ids[t : t + 1]) for t in range(start, len(ids) - 1)])
    top1 = float((rows.argmax(-1) == ref["argmax"][start:]).mean())
    logp = rows.astype(np.float64)
    logp = logp - logp.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(rows)), ids[start + 1 :]]
    ppl, ref_ppl = float(np.exp(nll.mean())), float(np.exp(ref["nll"][start:].mean()))
    print(f"\nSmolLM2 decode steps vs transformers fp32 on {len(rows)} tokens: top-1 agreement {top1:.4f}, "
          f"perplexity {ppl:.4f} vs {ref_ppl:.4f} ({ppl / ref_ppl - 1:+.2%})")
    assert top1 == 1.0
    assert abs(ppl / ref_ppl - 1) <= 1e-4


def test_smollm2_peak_rss(smollm_path):
    # weights stay mapped and quantized: the process's own memory (RssAnon) grows by at most the
    # repacked copy of the weights (the file's size) + the KV cache used + 60 MB, and its file-backed
    # pages are at most the file (the mapping; repacked sources are dropped from it, and the kernel
    # maps back the pages a step reads, the tied head's among them, and pages around each fault).
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent
    # (the pytest process, large once torch is loaded), which hid any growth
    code = f"""
import numpy as np, pyllm
def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key + ":")).split()[1])
base = (status("VmHWM"), status("RssAnon"), status("RssFile"))
m = pyllm.AutoModelForCausalLM.from_pretrained({str(smollm_path)!r}, n_ctx=2048)
m.step(np.arange(300) % 49152)
for t in range(20): m.step([t])
print(*base, status("VmHWM"), status("RssAnon"), status("RssFile"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                         timeout=300)
    assert out.returncode == 0, out.stderr
    hwm0, anon0, file0, hwm1, anon1, file1 = (int(x) / 1024 for x in out.stdout.split())
    file_mb = os.path.getsize(smollm_path) / 2**20
    kv_mb = 2 * 30 * 320 * 192 * 4 / 2**20
    print(f"\npeak RSS grew {hwm1 - hwm0:.0f} MB: own memory {anon1 - anon0:.0f} MB, file pages "
          f"{file1 - file0:.0f} MB (file {file_mb:.0f} MB, KV {kv_mb:.0f} MB)")
    assert anon1 - anon0 <= file_mb + kv_mb + 60
    assert file1 - file0 <= file_mb + 1
    assert hwm1 - hwm0 <= 2 * file_mb + kv_mb + 60  # a float32 copy of the weights would be over 500 MB


def test_smollm2_tokenizer_from_the_model_file(smollm_path):
    from pyllm import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm_path)
    ref = np.load(REF)
    # the reference ids were produced by transformers' tokenizer for the same file
    assert tok.encode(str(ref["text"]), add_special_tokens=False) == ref["ids"].tolist()
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
