"""The GGUF reader: files written by the reference `gguf` writer read back
exactly; corrupt, truncated and absurd files raise ValueError, never crash."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyllm import GGUFFile

gguf = pytest.importorskip("gguf")

FUZZ_EXAMPLES = int(os.environ.get("PYLLM_FUZZ_EXAMPLES", "300"))


def _write_sample(path) -> dict:
    """A small file with every metadata type and a few tensor types."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float32("t.f32", 0.25)
    w.add_float64("t.f64", 1e-300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓ 世界")
    w.add_array("t.ints", [1, 2, 3, -4])
    w.add_array("t.strs", ["a", "", "ünï"])
    w.add_array("t.floats", [0.5, 1.5])
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 40)).astype(np.float32)
    f16 = rng.standard_normal((2, 8)).astype(np.float16)
    q8 = rng.integers(0, 256, size=(4, 2 * 34), dtype=np.uint8)  # 4 rows of 64 Q8_0 values
    w.add_tensor("a.f32", f32)
    w.add_tensor("b.f16", f16)
    w.add_tensor("c.q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"a.f32": f32, "b.f16": f16, "c.q8": q8}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "sample.gguf"
    tensors = _write_sample(path)
    return path, tensors


def test_reads_what_the_reference_writer_wrote(sample):
    path, tensors = sample
    f = GGUFFile(path)
    md = f.metadata
    assert f.version == 3
    assert md["general.architecture"] == "llama"
    assert (md["t.u8"], md["t.i8"], md["t.u16"], md["t.i16"]) == (200, -100, 60000, -30000)
    assert (md["t.u32"], md["t.i32"], md["t.u64"], md["t.i64"]) == (4_000_000_000, -2_000_000_000, 2**63 + 5, -(2**62))
    assert md["t.f32"] == 0.25 and md["t.f64"] == 1e-300 and md["t.bool"] is True
    assert md["t.str"] == "héllo ✓ 世界"
    assert list(md["t.ints"]) == [1, 2, 3, -4]
    assert md["t.strs"] == ["a", "", "ünï"]
    np.testing.assert_array_equal(md["t.floats"], [0.5, 1.5])
    info = f.tensors
    assert info["a.f32"].shape == (3, 40) and info["a.f32"].type_name == "F32"
    assert info["b.f16"].type_name == "F16" and info["c.q8"].type_name == "Q8_0"
    assert info["c.q8"].shape == (4, 64) and info["c.q8"].nbytes == 4 * 2 * 34
    assert f.tensor_bytes("a.f32").tobytes() == tensors["a.f32"].tobytes()
    assert f.tensor_bytes("b.f16").tobytes() == tensors["b.f16"].tobytes()
    assert f.tensor_bytes("c.q8").tobytes() == tensors["c.q8"].tobytes()
    # the view is read-only and keeps the mapping alive after the file object goes
    view = f.tensor_bytes("a.f32")
    assert not view.flags.writeable
    del f
    assert view.tobytes() == tensors["a.f32"].tobytes()


def test_missing_and_non_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        GGUFFile(tmp_path / "nope.gguf")
    with pytest.raises(IsADirectoryError):
        GGUFFile(tmp_path)


def test_unknown_tensor_name(sample):
    with pytest.raises(KeyError, match="no tensor named"):
        GGUFFile(sample[0]).tensor_bytes("missing.weight")


def _expect_bad(tmp_path, data: bytes, match=None):
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        GGUFFile(p)


def test_rejects_empty_zero_and_wrong_magic(tmp_path):
    _expect_bad(tmp_path, b"", "not a GGUF file")
    _expect_bad(tmp_path, bytes(4096), "bad magic")
    _expect_bad(tmp_path, b"GGML" + bytes(100), "bad magic")
    _expect_bad(tmp_path, b"GGUF" + struct.pack("<I", 7) + bytes(100), "version 7")


def test_rejects_every_truncation(sample, tmp_path):
    data = open(sample[0], "rb").read()
    f = GGUFFile(sample[0])
    header_end = f._file.data_offset
    data_end = max(t.offset + t.nbytes for t in f.tensors.values())
    cuts = list(range(0, header_end, 7)) + [header_end, data_end - 1]
    for cut in cuts:
        _expect_bad(tmp_path, data[:cut])


def test_rejects_absurd_counts_and_sizes(sample, tmp_path):
    data = bytearray(open(sample[0], "rb").read())
    for field_offset, value in [(8, 2**63), (16, 2**40), (8, 10**9), (16, 2**64 - 1)]:
        bad = bytearray(data)
        bad[field_offset : field_offset + 8] = struct.pack("<Q", value)
        _expect_bad(tmp_path, bytes(bad), "cannot fit")


def _header(n_tensors, n_kv):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def test_rejects_bad_tensor_entries(tmp_path):
    def one_tensor(n_dims, dims, ttype, offset, pad=64):
        body = _s("w") + struct.pack("<I", n_dims) + b"".join(struct.pack("<Q", d) for d in dims)
        body += struct.pack("<IQ", ttype, offset)
        head = _header(1, 0) + body
        head += bytes((-len(head)) % 32)
        return head + bytes(pad)

    _expect_bad(tmp_path, one_tensor(5, [1] * 5, 0, 0), "dimensions")
    _expect_bad(tmp_path, one_tensor(0, [], 0, 0), "dimensions")
    _expect_bad(tmp_path, one_tensor(2, [2**40, 2**40], 0, 0), "absurd")
    _expect_bad(tmp_path, one_tensor(1, [16], 99, 0), "unknown type id 99")
    _expect_bad(tmp_path, one_tensor(1, [33], 8, 0), "multiple of 32")
    _expect_bad(tmp_path, one_tensor(1, [16], 0, 3), "aligned")
    _expect_bad(tmp_path, one_tensor(1, [1000], 0, 0), "truncated")
    _expect_bad(tmp_path, one_tensor(1, [16], 0, 2**64 - 32), "truncated")


def test_rejects_bad_metadata(tmp_path):
    kv = lambda key, t, payload: _s(key) + struct.pack("<I", t) + payload  # noqa: E731
    _expect_bad(tmp_path, _header(0, 1) + kv("k", 13, b"") + bytes(16), "unknown value type 13")
    _expect_bad(tmp_path, _header(0, 1) + kv("k", 7, b"\x02") + bytes(16), "bool")
    _expect_bad(tmp_path, _header(0, 1) + kv("k", 8, struct.pack("<Q", 2**50)) + bytes(16), "past the end")
    big_array = kv("k", 9, struct.pack("<IQ", 4, 2**40))
    _expect_bad(tmp_path, _header(0, 1) + big_array + bytes(16), "larger than the file")
    nested = kv("k", 9, struct.pack("<IQ", 9, 1) * 6)
    _expect_bad(tmp_path, _header(0, 1) + nested + bytes(64), "nested")
    dup = kv("k", 4, b"\x01\x00\x00\x00")
    _expect_bad(tmp_path, _header(0, 2) + dup + dup + bytes(16), "duplicate")
    bad_utf8 = kv("k", 8, _s("ok")[:8] + b"\xff\xfe")
    _expect_bad(tmp_path, _header(0, 1) + bad_utf8 + bytes(16), "UTF-8")
    raw_key = struct.pack("<Q", 2) + b"k\xc3" + struct.pack("<II", 4, 1)  # a key cut mid-character
    _expect_bad(tmp_path, _header(0, 1) + raw_key + bytes(16), "UTF-8")
    align = kv("general.alignment", 4, struct.pack("<I", 3))
    _expect_bad(tmp_path, _header(0, 1) + align + bytes(16), "power of two")


def _fuzz_one(path, data: bytearray):
    path.write_bytes(bytes(data))
    try:
        f = GGUFFile(path)
    except ValueError:
        return
    # a file that parses must be fully readable
    _ = f.metadata
    for name in f.tensors:
        f.tensor_bytes(name).sum()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_headers(sample, tmp_path, data):
    raw = bytearray(open(sample[0], "rb").read())
    header_end = GGUFFile(sample[0])._file.data_offset
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "byte", "u64", "cut"]))
        pos = data.draw(st.integers(0, header_end - 1))
        if kind == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "byte":
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "u64" and pos + 8 <= len(raw):
            raw[pos : pos + 8] = struct.pack("<Q", data.draw(st.sampled_from([0, 1, 2**31, 2**32, 2**63, 2**64 - 1])))
        elif kind == "cut":
            del raw[pos:]
            break
    _fuzz_one(tmp_path / "fuzz.gguf", raw)


@pytest.mark.slow
def test_fuzz_long(sample, tmp_path):
    # the long run: PYLLM_FUZZ_EXAMPLES=20000 pytest -m slow tests/test_gguf.py
    rng = np.random.default_rng(0)
    raw0 = bytearray(open(sample[0], "rb").read())
    header_end = GGUFFile(sample[0])._file.data_offset
    for _ in range(int(os.environ.get("PYLLM_FUZZ_EXAMPLES", "20000"))):
        raw = bytearray(raw0)
        for pos in rng.integers(0, header_end, size=rng.integers(1, 6)):
            raw[pos] = rng.integers(0, 256)
        _fuzz_one(tmp_path / "fuzz.gguf", raw)
