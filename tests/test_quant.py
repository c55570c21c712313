"""GGUF block formats on every ISA: dequantize bit-exactly against a numpy
decoder written here, quantize round trips within proven bounds, and the
quantized product against float64 numpy with a bound derived from int8
activation quantization. Test data is built with numpy (no model files)."""

from __future__ import annotations

import numpy as np
import pytest

import pyllm
from pyllm import _C, quant

TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "BF16": 30}
BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_1")

# one block of each quantized type, as GGUF lays it out (little-endian, packed)
BLOCK_DTYPES = {
    "Q8_0": np.dtype([("d", "<f2"), ("q", "i1", 32)]),
    "Q4_0": np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
    "Q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]),
}
assert [BLOCK_DTYPES[t].itemsize for t in BLOCK_TYPES] == [34, 18, 20]


def np_dequantize(raw: np.ndarray, name: str) -> np.ndarray:
    """The reference decoder: raw bytes of `name` -> float32 (n,)."""
    buf = raw.tobytes()
    if name == "F32":
        return np.frombuffer(buf, "<f4").copy()
    if name == "F16":
        return np.frombuffer(buf, "<f2").astype(np.float32)
    if name == "BF16":
        return (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
    blocks = np.frombuffer(buf, BLOCK_DTYPES[name])
    with np.errstate(invalid="ignore", over="ignore"):  # random scales include inf and NaN
        return _np_dequantize_blocks(blocks, name)


def _np_dequantize_blocks(blocks: np.ndarray, name: str) -> np.ndarray:
    d = blocks["d"].astype(np.float32)[:, None]
    if name == "Q8_0":
        return (d * blocks["q"].astype(np.float32)).reshape(-1)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # (blocks, 32): low nibbles first
    if name == "Q4_0":
        return (d * (q.astype(np.float32) - 8)).reshape(-1)
    return (d * q.astype(np.float32) + blocks["m"].astype(np.float32)[:, None]).reshape(-1)


def nbytes(name: str, n: int) -> int:
    return n // quant.BLOCK_SIZES[name] * quant.TYPE_SIZES[name]


def assert_bits_equal(out: np.ndarray, ref: np.ndarray) -> None:
    """Same float32 bits, except that any NaN matches any NaN."""
    assert out.dtype == np.float32 and out.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(out), nan)
    bad = np.flatnonzero(out.view(np.uint32)[~nan] != ref.view(np.uint32)[~nan])
    assert bad.size == 0, (f"{bad.size} elements differ, first at {bad[0]}: "
                           f"{out[~nan][bad[0]]!r} vs {ref[~nan][bad[0]]!r}")


def random_raw(rng, name: str, n: int) -> np.ndarray:
    """Every bit pattern is fair game: subnormal, infinite and NaN scales too."""
    return rng.integers(0, 256, nbytes(name, n), dtype=np.uint8)


def random_weights(rng, name: str, N: int, K: int) -> np.ndarray:
    """(N, row_bytes) raw weight rows with finite, model-like scales."""
    if name in ("F32", "F16", "BF16"):
        w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
        if name == "F32":
            return w.view(np.uint8).reshape(N, -1)
        if name == "F16":
            return w.astype(np.float16).view(np.uint8).reshape(N, -1)
        return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(N, -1)
    blocks = np.zeros(N * K // 32, BLOCK_DTYPES[name])
    blocks["d"] = (rng.uniform(0.2, 1.0, blocks.shape) * rng.choice([-1, 1], blocks.shape) * 0.01).astype(np.float16)
    if name == "Q8_0":
        blocks["q"] = rng.integers(-128, 128, (blocks.size, 32))  # -128 included on purpose
    else:
        blocks["qs"] = rng.integers(0, 256, (blocks.size, 16))
    if name == "Q4_1":
        blocks["m"] = (rng.standard_normal(blocks.shape) * 0.05).astype(np.float16)
    return blocks.view(np.uint8).reshape(N, -1)


# ---- dequantize


@pytest.mark.parametrize("name", list(TYPES))
def test_dequantize_bit_exact(isa, rng, name):
    block = quant.BLOCK_SIZES[name]
    lengths = [32, 64, 96, 1024 + 32, 4096 + 96, 576 * 3]
    if block == 1:
        lengths += [1, 7, 9, 33, 1023]
    for n in lengths:
        raw = random_raw(rng, name, n)
        ref = np_dequantize(raw, name)
        assert_bits_equal(_C.dequantize(raw, TYPES[name], n), ref)
        assert_bits_equal(_C.dequantize(raw, TYPES[name], n, ref=True), ref)


@pytest.mark.parametrize("name", ["F16", "Q8_0", "Q4_1"])
def test_dequantize_fp16_special_values(isa, name):
    # every finite fp16 bit pattern, both infinities, and a quiet NaN, as
    # F16 elements or as the scales of blocks
    h = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    h = h[(h & 0x7C00) != 0x7C00]
    h = np.concatenate([h, np.array([0x7C00, 0xFC00, 0x7E00], np.uint16)])
    h = np.concatenate([h, np.zeros((-h.size) % 32, np.uint16)])
    if name == "F16":
        raw = h.view(np.uint8)
    else:
        blocks = np.zeros(h.size, BLOCK_DTYPES[name])
        blocks["d"] = h.view(np.float16)
        if name == "Q8_0":
            blocks["q"] = np.arange(-128, 128).reshape(8, 32)[np.arange(h.size) % 8]
        else:
            blocks["qs"] = np.arange(256).reshape(16, 16)[np.arange(h.size) % 16]
            blocks["m"] = h[::-1].view(np.float16)
        raw = blocks.view(np.uint8)
    n = h.size * (1 if name == "F16" else 32)
    assert_bits_equal(_C.dequantize(raw, TYPES[name], n), np_dequantize(raw, name))


def test_nibble_order_and_offsets():
    # one hand-built block per type: element j is low nibble of qs[j], j+16 the high
    qs = np.arange(16, dtype=np.uint8) | (np.arange(15, -1, -1, dtype=np.uint8) << 4)
    want_q = np.concatenate([np.arange(16), np.arange(15, -1, -1)]).astype(np.float32)
    b = np.zeros(1, BLOCK_DTYPES["Q4_0"])
    b["d"], b["qs"] = 0.5, qs
    np.testing.assert_array_equal(quant.dequantize(b.view(np.uint8), "Q4_0"), 0.5 * (want_q - 8))
    b = np.zeros(1, BLOCK_DTYPES["Q4_1"])
    b["d"], b["m"], b["qs"] = 0.25, -1.0, qs
    np.testing.assert_array_equal(quant.dequantize(b.view(np.uint8), "Q4_1"), 0.25 * want_q - 1.0)
    b = np.zeros(1, BLOCK_DTYPES["Q8_0"])
    b["d"], b["q"] = 2.0, np.arange(-16, 16)
    np.testing.assert_array_equal(quant.dequantize(b.view(np.uint8), "Q8_0"), 2.0 * np.arange(-16, 16))


# ---- quantize: round trips within the bound each format promises


def _round_trip_data(rng, n_blocks):
    x = rng.standard_normal((n_blocks, 32)).astype(np.float32)
    scales = np.float32(10.0) ** rng.uniform(-6, 3, (n_blocks, 1)).astype(np.float32)
    x *= scales
    x[0] = 0.0  # all zero
    x[1] = 3.25  # constant
    x[2] = -np.abs(x[2])  # one sign only
    x[3] = np.abs(x[3]) + 100.0  # far from zero: Q4_1's m carries it
    x[4, 7] = 1e3  # an outlier
    x[5] = np.linspace(-1, 1, 32)
    x[6] = 1e-7 * rng.standard_normal(32)  # scales in fp16's subnormal range
    return x.reshape(-1)


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_quantize_round_trip_bound(isa, rng, name):
    x = _round_trip_data(rng, 257)
    raw = _C.quantize(x, TYPES[name])
    assert raw.dtype == np.uint8 and raw.nbytes == nbytes(name, x.size)
    back = _C.dequantize(raw, TYPES[name], x.size)
    blocks = np.frombuffer(raw.tobytes(), BLOCK_DTYPES[name])
    d = np.abs(blocks["d"].astype(np.float64))[:, None]
    xb = x.reshape(-1, 32).astype(np.float64)
    err = np.abs(back.reshape(-1, 32) - xb)
    # q = rint(x / d) computed in fp32 is off by at most ~1e-5 in units of d;
    # dequantizing Q4_1 rounds once more (2^-24 of the value)
    slack = 2e-5 * d + 2.0**-22 * np.abs(xb)
    if name == "Q4_0":
        qs = blocks["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)
        assert np.all((err <= 0.5 * d + slack)[q < 15])
        assert np.all(err <= d + slack)
        # the largest-magnitude element is the -8 end (when d is a normal
        # fp16; a subnormal d is coarser than |max|/8)
        big = np.argmax(np.abs(xb), axis=1)
        normal = d[:, 0] >= 2.0**-14
        assert normal.sum() > 100
        assert np.all(q[np.arange(q.shape[0]), big][normal] == 0)
    else:
        assert np.all(err <= 0.5 * d + slack), float(np.max(err - 0.5 * d - slack))
    # the scale is the smallest fp16 at or above what the data needs
    need = {"Q8_0": np.abs(xb).max(1) / 127, "Q4_0": np.abs(xb).max(1) / 8}.get(name)
    if name == "Q4_1":
        m = blocks["m"].astype(np.float64)
        assert np.all(m <= xb.min(1))
        assert np.all(np.nextafter(blocks["m"], np.float16(np.inf)).astype(np.float64) > xb.min(1))
        need = (xb.max(1) - m) / 15
    d16 = np.abs(blocks["d"])
    assert np.all(d16.astype(np.float64) >= need * (1 - 2.0**-23))
    below = np.nextafter(d16, np.float16(0)).astype(np.float64)
    assert np.all((below < need) | (d16 == 0))


def test_quantize_matches_format_exactly_on_representable_data():
    # data already on the grid comes back unchanged
    q = np.concatenate([np.arange(-127, 128, 8), [127]]).astype(np.float32)  # 33 values
    x = (q[:32] * np.float32(0.5)).astype(np.float32)
    x[np.argmax(np.abs(x))] = 127 * 0.5
    np.testing.assert_array_equal(quant.dequantize(quant.quantize(x, "Q8_0"), "Q8_0"), x)
    x4 = np.arange(32, dtype=np.float32) % 16 * np.float32(0.25) - 1.0
    np.testing.assert_array_equal(quant.dequantize(quant.quantize(x4, "Q4_1"), "Q4_1"), x4)


# ---- the quantized product


def _fp32_bound(x: np.ndarray, wf: np.ndarray) -> np.ndarray:
    """Per-output bound (M,N) on |qmatmul - x @ W^T| for exactly dequantized
    weights times fp32 x: a sum of K products rounded K + 1 times at most
    (the k-block sums included), each by 2^-24 of the running magnitude,
    itself at most sum |x| |w|."""
    K = x.shape[1]
    return (K + 2) * 2.0**-24 * (np.abs(x.astype(np.float64)) @ np.abs(wf).T) + 1e-30


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_qmatmul_against_float64(isa, rng, name):
    Ms = [1, 2, 3, 4, 5, 16, 64]
    for K in [32, 64, 576, 1536]:
        for N in [1, 7, 9, 33, 192, 577]:
            if isa == "scalar" and K * N > 576 * 577:
                continue  # the portable path is slow; the vector runs cover these
            w_raw = random_weights(rng, name, N, K)
            wf = np_dequantize(w_raw, name).reshape(N, K).astype(np.float64)
            x_all = rng.standard_normal((max(Ms), K)).astype(np.float32)
            x_all[:, :32] *= 10  # blocks of different scales
            for M in Ms:
                x = x_all[:M]
                ref = x.astype(np.float64) @ wf.T
                out = _C.qmatmul(x, w_raw, TYPES[name], K)
                assert out.shape == (M, N) and out.dtype == np.float32
                err = np.abs(out - ref)
                bound = _fp32_bound(x, wf)
                assert np.all(err <= bound), (M, K, N, float(np.max(err / bound)))
            # the oracle: exact weights, double sums
            ref = x.astype(np.float64) @ wf.T
            np.testing.assert_allclose(_C.qmatmul(x, w_raw, TYPES[name], K, ref=True), ref,
                                       rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_qmatmul_many_rows_several_panels(isa, rng, name):
    # many rows: the packed weights dequantized block by block into sgemm's
    # panels; N=1500 is not a multiple of the 16-row groups' panels
    M, K, N = 40, 1536, 1500
    w_raw = random_weights(rng, name, N, K)
    wf = np_dequantize(w_raw, name).reshape(N, K).astype(np.float64)
    x = rng.standard_normal((M, K)).astype(np.float32)
    ref = x.astype(np.float64) @ wf.T
    out = _C.qmatmul(x, w_raw, TYPES[name], K)
    assert np.all(np.abs(out - ref) <= _fp32_bound(x, wf))


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_qmatmul_packed_weights(isa, rng, name):
    # the load-time layout (groups of 16 rows, common.h), partial last groups
    # included: exactly dequantized weights times fp32 x, within fp32 rounding
    # of the float64 product
    for K in [32, 64, 576, 1536]:
        for N in [1, 3, 4, 7, 16, 33, 193]:
            w_raw = random_weights(rng, name, N, K)
            wf = np_dequantize(w_raw, name).reshape(N, K).astype(np.float64)
            for M in [1, 2, 5, 9, 40]:
                x = rng.standard_normal((M, K)).astype(np.float32)
                x[:, :32] *= 10
                ref = x.astype(np.float64) @ wf.T
                out = _C.qmatmul(x, w_raw, TYPES[name], K, packed=True)
                assert out.shape == (M, N) and out.dtype == np.float32
                assert np.all(np.abs(out - ref) <= _fp32_bound(x, wf)), (M, K, N)


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_qmatmul_packed_many_rows_gemm_blocks(isa, rng, name):
    # prefill shapes: the packed weights are dequantized block by block into
    # the GEMM's panels, over several k blocks (K=1536: 4 of 384; K=2080: 65
    # quant blocks, k blocks not a power of two), several column blocks per
    # thread and a partial last panel and group (N=1001)
    for M, K, N in [(300, 1536, 1001), (33, 2080, 70)]:
        w_raw = random_weights(rng, name, N, K)
        wf = np_dequantize(w_raw, name).reshape(N, K).astype(np.float64)
        x = rng.standard_normal((M, K)).astype(np.float32)
        ref = x.astype(np.float64) @ wf.T
        out = _C.qmatmul(x, w_raw, TYPES[name], K, packed=True)
        # exact fp32 weights times unquantized x: fp32 rounding only
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


@pytest.mark.parametrize("name", BLOCK_TYPES)
def test_every_product_path_gives_the_same_bits(isa, rng, name):
    # the decode step's product (qpack_matvec: all rows on one thread, weights
    # dequantized once for up to 4 rows), qpack_matmul's threaded matvec (up to
    # 8 rows) and its GEMM (sgemm_packed_b, more rows) sum each output in one
    # order (common.h gemm_k_block): row m of any of them is the same bits as
    # row m alone. K=2080 has 65 quant blocks (k blocks of 544, 544, 544, 448)
    for K, N in [(32, 5), (576, 193), (1536, 64), (2080, 70)]:
        w_raw = random_weights(rng, name, N, K)
        x = rng.standard_normal((40, K)).astype(np.float32)
        x[:, :32] *= 10
        one = np.stack([_C.qmatmul(x[m:m + 1], w_raw, TYPES[name], K, packed=True, decode_rows=True)[0]
                        for m in range(40)])
        for M in [1, 2, 3, 4, 5, 8, 9, 33, 40]:
            rows = _C.qmatmul(x[:M], w_raw, TYPES[name], K, packed=True, decode_rows=True)
            np.testing.assert_array_equal(rows, one[:M], err_msg=f"decode rows M={M} K={K} N={N}")
            threaded = _C.qmatmul(x[:M], w_raw, TYPES[name], K, packed=True)
            np.testing.assert_array_equal(threaded, one[:M], err_msg=f"qpack_matmul M={M} K={K} N={N}")


def test_qmatmul_packed_needs_whole_blocks_of_32(rng):
    w_raw = random_weights(rng, "F16", 4, 16)
    with pytest.raises(ValueError, match="packed=True needs K a multiple of 32"):
        _C.qmatmul(np.ones((1, 16), np.float32), w_raw, TYPES["F16"], 16, packed=True)


def test_qmatmul_bound_is_tight_enough_to_fail(rng):
    # a wrong nibble order (the product with the swapped weights) breaks the bound
    K, N, M = 576, 33, 4
    w_raw = random_weights(rng, "Q4_1", N, K)
    blocks = np.frombuffer(w_raw.tobytes(), BLOCK_DTYPES["Q4_1"]).copy()
    blocks["qs"] = (blocks["qs"] >> 4) | (blocks["qs"] << 4)
    swapped = blocks.view(np.uint8).reshape(N, -1)
    x = rng.standard_normal((M, K)).astype(np.float32)
    wf = np_dequantize(w_raw, "Q4_1").reshape(N, K).astype(np.float64)
    bound = _fp32_bound(x, wf)
    err = np.abs(_C.qmatmul(x, swapped, TYPES["Q4_1"], K) - x.astype(np.float64) @ wf.T)
    assert np.mean(err > bound) > 0.5


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
def test_qmatmul_float_weights(isa, rng, name):
    for K in [1, 7, 33, 64, 576]:
        for N in [1, 7, 9, 33]:
            for M in [1, 3, 5]:
                w_raw = random_weights(rng, name, N, K)
                wf = np_dequantize(w_raw, name).reshape(N, K).astype(np.float64)
                x = rng.standard_normal((M, K)).astype(np.float32)
                ref = x.astype(np.float64) @ wf.T
                scale = np.abs(x.astype(np.float64)) @ np.abs(wf).T
                for ref_flag in (False, True):
                    out = _C.qmatmul(x, w_raw, TYPES[name], K, ref=ref_flag)
                    assert np.all(np.abs(out - ref) <= 1e-6 * scale * np.sqrt(K) + 1e-30)


def test_qmatmul_same_result_any_thread_count(rng):
    K, N, M = 576, 577, 5
    w_raw = random_weights(rng, "Q4_0", N, K)
    x = rng.standard_normal((M, K)).astype(np.float32)
    before = pyllm.get_num_threads()
    try:
        pyllm.set_num_threads(1)
        one = _C.qmatmul(x, w_raw, TYPES["Q4_0"], K)
        pyllm.set_num_threads(3)
        three = _C.qmatmul(x, w_raw, TYPES["Q4_0"], K)
    finally:
        pyllm.set_num_threads(before)
    np.testing.assert_array_equal(one, three)


def test_qmatmul_rows_are_independent(isa, rng):
    # row m of a batched product equals the product of row m alone, bit for bit
    K, N = 576, 33
    w_raw = random_weights(rng, "Q8_0", N, K)
    x = rng.standard_normal((17, K)).astype(np.float32)
    full = _C.qmatmul(x, w_raw, TYPES["Q8_0"], K)
    for m in range(17):
        np.testing.assert_array_equal(full[m], _C.qmatmul(x[m:m + 1], w_raw, TYPES["Q8_0"], K)[0])


def test_qmatmul_empty_and_zero():
    w = np.zeros((3, 0), np.uint8)
    np.testing.assert_array_equal(_C.qmatmul(np.zeros((2, 0), np.float32), w, 2, 0), np.zeros((2, 3)))
    assert _C.qmatmul(np.zeros((0, 32), np.float32), np.zeros((3, 18), np.uint8), 2, 32).shape == (0, 3)
    np.testing.assert_array_equal(
        _C.qmatmul(np.zeros((1, 32), np.float32), np.zeros((3, 18), np.uint8), 2, 32), np.zeros((1, 3)))


# ---- the Python surface


def test_python_wrappers_round_trip_shapes(rng):
    x = rng.standard_normal((3, 4, 64)).astype(np.float32)
    for name in BLOCK_TYPES:
        raw = quant.quantize(x, name)
        assert raw.shape == (3, 4, quant.row_bytes(name, 64))
        back = quant.dequantize(raw, name, x.shape)
        assert back.shape == x.shape
        assert quant.dequantize(raw.tobytes(), name).shape == (x.size,)
        w = raw.reshape(12, -1)
        out = quant.qmatmul(x[0], w, TYPES[name])
        np.testing.assert_allclose(out, x[0].astype(np.float64) @ back.reshape(12, 64).T.astype(np.float64),
                                   rtol=0.05, atol=0.05 * np.abs(x).max() * 8)
    assert {name: quant.GGML_TYPES[name] for name in TYPES} == TYPES
    assert quant.type_name(8) == "Q8_0" and quant.type_name("bf16") == "BF16"


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: quant.dequantize(np.zeros(10, np.uint8), "IQ2_XS"),
         r"unsupported tensor type IQ2_XS; supported: F32, F16, Q4_0, Q4_1, Q5_0, .*, IQ4_XS, BF16$"),
        (lambda: quant.dequantize(np.zeros(10, np.uint8), 17), "unsupported tensor type IQ2_XS"),
        (lambda: quant.dequantize(np.zeros(10, np.uint8), 200), "unknown tensor type id 200"),
        (lambda: quant.dequantize(np.zeros(10, np.uint8), "Q9_9"), "unknown tensor type 'Q9_9'"),
        (lambda: quant.quantize(np.zeros(32, np.float32), "F16"),
         "unsupported tensor type F16; supported: Q4_0, Q4_1, Q8_0$"),
        (lambda: quant.dequantize(np.zeros(35, np.uint8), "Q8_0"), "not a whole number of Q8_0 blocks"),
        (lambda: quant.dequantize(np.zeros(34, np.uint8), "Q8_0", 64), "raw has 34 bytes"),
        (lambda: quant.dequantize(np.zeros(34, np.uint8), "Q8_0", 33), "multiple of 32"),
        (lambda: quant.dequantize(np.zeros(34, np.int8), "Q8_0"), "uint8"),
        (lambda: quant.quantize(np.zeros(48, np.float32), "Q4_0"), "multiple of 32"),
        (lambda: quant.quantize(np.zeros(32, np.int32), "Q4_0"), "floating-point"),
        (lambda: quant.qmatmul(np.zeros((2, 48), np.float32), np.zeros((3, 27), np.uint8), "Q4_0"),
         "multiple of 32"),
        (lambda: quant.qmatmul(np.zeros((2, 64), np.float32), np.zeros((3, 20), np.uint8), "Q4_0"),
         r"w_raw must be \(N, 36\)"),
    ],
)
def test_python_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_binding_layer_checks():
    with pytest.raises(ValueError, match=r"unsupported tensor type IQ2_XS \(id 17\); supported: F32, F16, Q4_0"):
        _C.dequantize(np.zeros(10, np.uint8), 17, 10)
    with pytest.raises(ValueError, match="unknown tensor type id 200"):
        _C.dequantize(np.zeros(10, np.uint8), 200, 10)
    with pytest.raises(ValueError, match="raw has 10 bytes"):
        _C.dequantize(np.zeros(10, np.uint8), 8, 32)
    with pytest.raises(ValueError, match="multiple of the block size 32"):
        _C.quantize(np.zeros(40, np.float32), 2)
    with pytest.raises(ValueError, match=r"unsupported tensor type F32 \(id 0\); supported: Q4_0, Q4_1, Q8_0$"):
        _C.quantize(np.zeros(32, np.float32), 0)
    with pytest.raises(ValueError, match="float32"):
        _C.quantize(np.zeros(32), 2)
    with pytest.raises(ValueError, match="uint8"):
        _C.qmatmul(np.zeros((1, 32), np.float32), np.zeros((1, 18), np.int8), 2, 32)
    with pytest.raises(ValueError, match=r"x must be \(M, 64\)"):
        _C.qmatmul(np.zeros((1, 32), np.float32), np.zeros((1, 36), np.uint8), 2, 64)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.qmatmul(np.zeros((1, 32), np.float32), np.zeros((1, 36), np.uint8)[:, ::2], 2, 32)
