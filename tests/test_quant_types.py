"""Every GGUF tensor type, by looping over pyllm's one table of them: the
table against the gguf package's, each computable type's decoder bit for
bit against gguf's numpy dequantizers on every ISA, the product on K-type
weights against fp32, files of every type read (the model refuses the
uncomputable ones by name), and a tiny llama in each computable type
against a numpy forward on the dequantized weights. A new type is tested
by adding its row to csrc/kernels/quant_types.h."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pyllm import _C, AutoModelForCausalLM, AutoTokenizer, GGUFFile, cli, quant
from pyllm.tokenizers.bytelevel import bytes_to_unicode

from llama_ref import llama_forward

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

COMPUTABLE = [t for t in quant.TYPES if t.computable]
UNCOMPUTABLE = [t for t in quant.TYPES if not t.computable]
K_TYPES = [t for t in COMPUTABLE if t.block == 256]
# the gguf package's size for Q8_1 is the old layout's (fp32 d and s: 40 bytes); ggml's
# block_q8_1 holds two fp16 and 32 int8 (36 bytes), as pyllm's table does
GGUF_SIZE_EXCEPTIONS = {"Q8_1": (32, 40)}


def ids(types):
    return [t.name for t in types]


def qtype(t):
    return Q(t.id)


def finite_words(raw: np.ndarray, max_exp: int = 30) -> np.ndarray:
    """raw with the exponent of every aligned 16-bit word brought into [0, max_exp]: the fp16
    scales of any layout become finite (with max_exp < 15, smaller than 1) and the other
    bits stay random."""
    w = raw.view("<u2").copy()
    e = (w >> 10) & 0x1F
    w = (w & 0x83FF) | ((e % (max_exp + 1)) << 10).astype(np.uint16)
    return w.view(np.uint8)


def gguf_dequantize(raw: np.ndarray, t) -> np.ndarray:
    """gguf's numpy decoder: raw bytes of whole blocks -> float32 (n,)."""
    with np.errstate(all="ignore"):  # random scales may be inf or NaN
        out = gguf.quants.dequantize(raw.reshape(1, -1), qtype(t))
    return np.ascontiguousarray(out, dtype=np.float32).reshape(-1)


def gguf_quantized(rng, t, nblocks: int):
    """Blocks made by gguf's quantizer from random data, or None where it has none for the type."""
    x = rng.standard_normal((nblocks, t.block)).astype(np.float32)
    x *= np.exp(rng.uniform(-8, 4, (nblocks, 1))).astype(np.float32)  # block scales far apart
    x[0] = 0.0  # an all-zero block: d = 0
    try:
        q = gguf.quants.quantize(x, qtype(t))
    except NotImplementedError:
        return None
    return np.ascontiguousarray(q).view(np.uint8).reshape(-1)


def assert_same_bits(out: np.ndarray, ref: np.ndarray, nan_any: bool = False) -> None:
    assert out.dtype == np.float32 and ref.dtype == np.float32 and out.shape == ref.shape
    o, r = out.view(np.uint32), ref.view(np.uint32)
    if nan_any:  # random scales include NaN, whose payload nobody promises
        nan = np.isnan(ref)
        np.testing.assert_array_equal(np.isnan(out), nan)
        o, r = o[~nan], r[~nan]
    o, r = o.reshape(-1), r.reshape(-1)
    bad = np.flatnonzero(o != r)
    assert bad.size == 0, f"{bad.size} of {o.size} elements differ, first at {bad[0]}: {o[bad[0]]:#x} vs {r[bad[0]]:#x}"


# ---- the table


def test_table_is_gguf_s():
    ours = {t.name: t for t in quant.TYPES}
    for q in Q:  # every type the installed gguf package defines
        assert q.name in ours, f"GGUF type {q.name} ({q.value}) is missing from kQuantTypes"
        t = ours[q.name]
        assert t.id == q.value
        want = GGUF_SIZE_EXCEPTIONS.get(q.name, (t.block, t.block_bytes))
        assert gguf.GGML_QUANT_SIZES[q] == want, q.name
    assert (ours["Q8_1"].block, ours["Q8_1"].block_bytes) == (32, 36)
    assert len({t.id for t in quant.TYPES}) == len(quant.TYPES) >= 34
    # the Python views are the table's
    assert quant.SUPPORTED_TYPES == tuple(ids(COMPUTABLE))
    assert set(quant.QUANTIZED_TYPES) == {"Q8_0", "Q4_0", "Q4_1"}
    assert {"Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"} <= set(quant.SUPPORTED_TYPES)
    for t in quant.TYPES:
        assert quant.type_info(t.id) == quant.type_info(t.name.lower()) == t
        assert quant.row_bytes(t.name, 4 * t.block) == 4 * t.block_bytes
        assert quant.GGML_TYPES[t.name] == t.id and quant.BLOCK_SIZES[t.name] == t.block


# ---- decoding: every computable type, bit for bit against gguf


@pytest.mark.parametrize("t", COMPUTABLE, ids=ids(COMPUTABLE))
def test_dequantize_matches_gguf_bits(isa, rng, t):
    sources = []
    for nblocks in (1, 7, 33, 300):
        q = gguf_quantized(rng, t, nblocks)
        if q is not None:
            sources.append(("quantized", q, False))
        raw = rng.integers(0, 256, nblocks * t.block_bytes, dtype=np.uint8)
        sources.append(("finite scales", finite_words(raw), False))
        sources.append(("any bits", raw, True))
    blocks = 0
    for what, raw, nan_any in sources:
        n = raw.nbytes // t.block_bytes * t.block
        ref = gguf_dequantize(raw, t)
        with np.errstate(all="ignore"):
            assert np.isfinite(ref).all() or nan_any, what
        assert_same_bits(_C.dequantize(raw, t.id, n), ref, nan_any)  # this ISA's row path
        assert_same_bits(_C.dequantize(raw, t.id, n, ref=True), ref, nan_any)  # the reference decoder
        assert_same_bits(quant.dequantize(raw, t.name, (n // t.block, t.block)).reshape(-1), ref, nan_any)
        blocks += raw.nbytes // t.block_bytes
    assert blocks >= 2 * 341


def test_whole_blocks_only():
    # a 576-wide row is not whole Q4_K blocks: every entry point says so
    with pytest.raises(ValueError, match="multiple of 256 for Q4_K tensors, got 576"):
        quant.dequantize(np.zeros(144 * 2, np.uint8), "Q4_K", (1, 576))
    with pytest.raises(ValueError, match=r"multiple of the block size 256 for Q4_K \(type id 12\), got 576"):
        _C.dequantize(np.zeros(144 * 2, np.uint8), 12, 576)
    with pytest.raises(ValueError, match=r"x's last dimension \(K\) must be a multiple of 256 for Q6_K"):
        quant.qmatmul(np.zeros((1, 576), np.float32), np.zeros((1, 420), np.uint8), "Q6_K")
    with pytest.raises(ValueError, match="unsupported tensor type IQ2_XXS; supported: F32, F16"):
        quant.dequantize(np.zeros(66, np.uint8), "IQ2_XXS")


# ---- the product on weights that are not packed


@pytest.mark.parametrize("t", K_TYPES, ids=ids(K_TYPES))
def test_qmatmul_equals_fp32_on_the_decoded_weights(isa, rng, t):
    for M, N, K in [(1, 1, 256), (7, 9, 512), (33, 17, 768)]:
        raw = finite_words(rng.integers(0, 256, N * K // t.block * t.block_bytes, dtype=np.uint8), 9)
        w_raw = raw.reshape(N, -1)
        W = gguf_dequantize(raw, t).reshape(N, K)
        x = rng.standard_normal((M, K)).astype(np.float32)
        got = quant.qmatmul(x, w_raw, t.name)
        # the same kernel on the decoded weights stored as F32: the same bits
        assert_same_bits(got, quant.qmatmul(x, W.view(np.uint8), "F32"))
        # and fp32 rounding of the exact product
        exact = x.astype(np.float64) @ W.astype(np.float64).T
        bound = K * 2.0**-23 * (np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64).T) + 1e-30
        assert (np.abs(got - exact) <= bound).all()
        ref = _C.qmatmul(x, w_raw, t.id, K, ref=True)  # double sums, one rounding
        np.testing.assert_allclose(ref, exact, rtol=2.0**-23, atol=1e-30)


@pytest.mark.parametrize("t", COMPUTABLE, ids=ids(COMPUTABLE))
def test_packed_products_equal_fp32_on_the_decoded_weights(isa, rng, t):
    # the load-time packed layout of every computable type: decoded in vector lanes, its products
    # (the decode step's one-thread rows, the threaded matvec, the prefill GEMM's panels) give the
    # bits of the same products on the gguf-decoded weights stored as F32
    assert t.packed
    for M, N, K in [(1, 1, 256), (3, 17, 512), (5, 40, 768), (33, 23, 1536)]:
        raw = finite_words(rng.integers(0, 256, N * K // t.block * t.block_bytes, dtype=np.uint8), 9)
        w_raw = raw.reshape(N, -1)
        W = np.ascontiguousarray(gguf_dequantize(raw, t).reshape(N, K))
        x = rng.standard_normal((M, K)).astype(np.float32)
        for rows in (False, True):
            got = _C.qmatmul(x, w_raw, t.id, K, packed=True, decode_rows=rows)
            want = _C.qmatmul(x, W.view(np.uint8), 0, K, packed=True, decode_rows=rows)
            assert_same_bits(got, want)


# ---- files


def _tokens():
    alphabet = bytes_to_unicode()
    return [alphabet[b] for b in range(256)] + ["he", "ll", "hell", "hello"], ["h e", "l l", "he ll", "hell o"]


CFG = dict(vocab_size=260, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           head_dim=64, intermediate_size=512, rms_norm_eps=1e-5, rope_theta=10000.0, context_length=64)


def write_llama(path, rng, type_of=None, values=None, cfg=CFG) -> dict:
    """A random tied-embedding llama with a byte-level BPE tokenizer; matrix ``name`` is
    stored as ``type_of(name)`` (a pyllm.quant.QuantType; F32 by default), or, given
    ``values`` (name -> array), every tensor is that array in F32. Returns the weights as
    gguf decodes them (float64; None where pyllm does not compute with the type)."""
    C, FF, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    QD, KVD = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = {"token_embd.weight": (V, C), "output_norm.weight": (C,)}
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
    tokens, merges = _tokens()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_token_merges(merges)
    stored = {}
    f32 = quant.type_info("F32")
    for name, shape in shapes.items():
        if values is not None or len(shape) == 1:
            v = (1.0 + 0.1 * rng.standard_normal(shape)) if values is None else values[name]
            v = np.ascontiguousarray(v, dtype=np.float32)
            w.add_tensor(name, v)
            stored[name] = v.astype(np.float64)
            continue
        t = type_of(name) if type_of is not None else f32
        x = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        raw = gguf_quantized_rows(rng, t, x)
        # an int8 view with the element shape: the writer takes the bytes and shape as they are
        w.add_tensor(name, raw.view(np.int8), raw_shape=shape, raw_dtype=qtype(t))
        stored[name] = gguf_dequantize(raw, t).astype(np.float64).reshape(shape) if t.computable else None
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def gguf_quantized_rows(rng, t, x: np.ndarray) -> np.ndarray:
    """x (rows, cols) as raw bytes of type t: gguf's quantizer where it has one, else random
    blocks whose fp16 fields are made small enough for weights of model size (rms < 0.15)."""
    try:
        return np.ascontiguousarray(gguf.quants.quantize(x, qtype(t))).view(np.uint8).reshape(-1)
    except NotImplementedError:
        pass
    raw = rng.integers(0, 256, x.size // t.block * t.block_bytes, dtype=np.uint8)
    if not t.computable or t.block_bytes % 2:
        return raw
    for max_exp in range(9, -1, -1):
        small = finite_words(raw, max_exp)
        if np.sqrt(np.mean(gguf_dequantize(small, t).astype(np.float64) ** 2)) < 0.15:
            break
    return small


@pytest.mark.parametrize("t", UNCOMPUTABLE, ids=ids(UNCOMPUTABLE))
def test_files_of_uncomputable_types_read_but_do_not_build(tmp_path, rng, t, capsys):
    path = tmp_path / f"{t.name}.gguf"
    write_llama(path, rng, lambda name: t if name == "blk.0.attn_q.weight" else quant.type_info("F32"))
    f = GGUFFile(path)
    info = f.tensors["blk.0.attn_q.weight"]
    assert (info.type, info.type_name, info.shape) == (t.id, t.name, (256, 256))
    assert info.nbytes == 256 * 256 // t.block * t.block_bytes
    assert f.metadata["llama.embedding_length"] == 256
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert cli.main(["info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tensor_types"][t.name] == 1 and shown["config"]["hidden_size"] == 256
    with pytest.raises(ValueError, match=rf"^unsupported GGUF tensor type {t.name} in blk\.0\.attn_q\.weight; "
                                         rf"supported: {', '.join(quant.SUPPORTED_TYPES)}$"):
        AutoModelForCausalLM.from_pretrained(path)


def test_unknown_type_id_is_named(tmp_path, rng):
    path = tmp_path / "unknown.gguf"
    write_llama(path, rng)
    raw = bytearray(path.read_bytes())
    name = b"blk.0.attn_q.weight"
    entry = raw.find(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", raw, entry)[0]
    type_at = entry + 4 + 8 * n_dims
    assert struct.unpack_from("<I", raw, type_at)[0] == quant.GGML_TYPES["F32"]
    struct.pack_into("<I", raw, type_at, 200)
    path.write_bytes(bytes(raw))
    match = r"tensor 'blk\.0\.attn_q\.weight' has unknown type id 200"
    for load in (GGUFFile, AutoTokenizer.from_pretrained, AutoModelForCausalLM.from_pretrained):
        with pytest.raises(ValueError, match=match):
            load(path)


def test_reader_wants_whole_blocks(tmp_path):
    # a 576-wide Q4_K tensor cannot exist: the reader says which and why
    name = b"w"
    body = struct.pack("<Q", len(name)) + name + struct.pack("<IQQ", 2, 576, 2)
    body += struct.pack("<IQ", quant.GGML_TYPES["Q4_K"], 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + body
    head += bytes((-len(head)) % 32)
    path = tmp_path / "bad.gguf"
    path.write_bytes(head + bytes(4 * 144))
    with pytest.raises(ValueError, match="tensor 'w' of type Q4_K has a first dimension of 576, not a multiple of 256"):
        GGUFFile(path)


# ---- a model in each computable type


@pytest.mark.parametrize("t", COMPUTABLE, ids=ids(COMPUTABLE))
def test_tiny_llama_in_each_type(tmp_path, t):
    rng = np.random.default_rng(t.id)
    W = write_llama(tmp_path / "q.gguf", rng, lambda name: t)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "q.gguf")
    assert list(model.tensor_types()) == sorted({"F32", t.name})
    tokens = np.random.default_rng(7).integers(0, CFG["vocab_size"], size=24)
    got = model(tokens).logits[0]
    want = llama_forward(W, CFG, tokens)
    assert np.isfinite(got).all()
    assert float(np.linalg.norm(got - want) / np.linalg.norm(want)) < 1e-5
    assert t.packed
    if t.packed:
        # every matrix packed at load, its elements decoded in vector lanes to gguf's bits and
        # multiplied in fp32 in one order: the same bits as a file of the decoded weights stored
        # as F32
        f32 = tmp_path / "f32.gguf"
        write_llama(f32, rng, values=W)
        assert_same_bits(got, AutoModelForCausalLM.from_pretrained(f32)(tokens).logits[0])
        # one token at a time: the prefill's bits
        model.reset()
        steps = [model.step(tokens[:10], all_logits=True)]
        steps += [model.step(tokens[i : i + 1])[None] for i in range(10, 24)]
        assert_same_bits(np.concatenate(steps), got)

