"""The file quantizers (quant.quantize_file, csrc/kernels/quantize.cpp): every
type `pyllm quantize` writes, against the gguf package's numpy quantizers
(bit for bit, where it has one) and against the tensors llama.cpp's own
quantizer writes from the same weights (bit for bit, so its RMSE too)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from pyllm import quant

gguf = pytest.importorskip("gguf", reason="the reference quantizers and decoders (pip install '.[test]')")
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

WRITTEN = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
GGUF_HAS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]  # the types gguf.quants.quantize writes


def _edge_rows(rng: np.random.Generator, n: int = 512) -> np.ndarray:
    """Rows with the cases a block search trips on: gaussian, all zero, one large
    element, constant, all positive, tiny, ties of magnitude of both signs."""
    x = (rng.standard_normal((12, n)) * 0.05).astype(np.float32)
    x[1] = 0
    x[2, 7] = 3.0
    x[3] = 0.25
    x[4] = np.abs(x[4])
    x[5] *= 1e-12
    x[6, :32] = 0.5
    x[6, 16:32] = -0.5
    x[7] = -np.abs(x[7])
    x[8, ::2] = 0
    return x


def test_table_lists_the_written_types():
    assert list(quant.FILE_TYPES) == WRITTEN


@pytest.mark.parametrize("name", GGUF_HAS)
def test_bit_identical_to_gguf(name, rng, smollm_path):
    x = _edge_rows(rng)
    qtype = gguf.GGMLQuantizationType[name]
    np.testing.assert_array_equal(quant.quantize_file(x, name, threads=2), gguf_quantize(x, qtype))
    # and on a real matrix of the default model, decoded
    t = _tensor(smollm_path, "blk.0.attn_q.weight")
    np.testing.assert_array_equal(quant.quantize_file(t, name), gguf_quantize(t, qtype))


@pytest.mark.parametrize("name", WRITTEN)
def test_round_trip(name, rng):
    """The reference decoder (bit-identical to gguf's) reads what the quantizer wrote, with a
    relative error of the size the type's bits allow, and threads change no byte."""
    x = _edge_rows(rng)
    raw = quant.quantize_file(x, name, threads=1)
    np.testing.assert_array_equal(raw, quant.quantize_file(x, name, threads=3))
    back = quant.dequantize(raw, name, x.shape)
    np.testing.assert_array_equal(back, gguf_dequantize(raw, gguf.GGMLQuantizationType[name]).reshape(x.shape))
    assert np.isfinite(back).all()
    np.testing.assert_array_equal(back[1], 0)  # zero rows stay zero
    g = x[0]
    rel = float(np.sqrt(np.mean((back[0] - g) ** 2)) / np.sqrt(np.mean(g ** 2)))
    bits = {"Q2_K": 2.6, "Q3_K": 3.4, "Q4_0": 4.5, "Q4_1": 5, "Q4_K": 4.5, "IQ4_NL": 4.5, "IQ4_XS": 4.25,
            "Q5_0": 5.5, "Q5_1": 6, "Q5_K": 5.5, "Q6_K": 6.6, "Q8_0": 8.5}[name]
    # a uniform quantizer of b bits over +-3 sigma: error ~ 6 / 2^b / sqrt(12) sigma; allow 2x
    assert rel < 2 * 6 / 2 ** (bits - 0.5) / np.sqrt(12), rel


def test_bad_input():
    with pytest.raises(ValueError, match="does not write IQ2_XXS"):
        quant.quantize_file(np.zeros((1, 256), np.float32), "IQ2_XXS")
    with pytest.raises(ValueError, match="multiple of 256"):
        quant.quantize_file(np.zeros((1, 576), np.float32), "Q4_K")
    with pytest.raises(ValueError, match="floating-point"):
        quant.quantize_file(np.zeros((1, 32), np.int32), "Q8_0")
    with pytest.raises(ValueError, match="threads"):
        quant.quantize_file(np.zeros((1, 32), np.float32), "Q8_0", threads=0)


_CACHE: Dict[str, object] = {}


def _tensor(path: Path, name: str) -> np.ndarray:
    """A tensor of a GGUF file, decoded to float32 (numpy's row-major shape)."""
    key = f"{path}:{name}"
    if key not in _CACHE:
        reader = gguf.GGUFReader(str(path))
        t = next(t for t in reader.tensors if t.name == name)
        shape = [int(v) for v in reversed(t.shape)]
        _CACHE[key] = gguf_dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)
    return _CACHE[key]  # type: ignore[return-value]


# for each type, a llama.cpp file type holding it on SmolLM2 (576 wide: its K recipes put Q2_K on nothing)
HOLDS = {"Q3_K": "Q3_K_S", "Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S", "Q6_K": "Q6_K", "IQ4_NL": "IQ4_NL",
         "IQ4_XS": "IQ4_XS", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q8_0": "Q8_0"}


@pytest.mark.parametrize("name", sorted(HOLDS))
def test_same_tensors_as_llama_cpp(name, smollm_path):
    """On every tensor of the type in llama.cpp's file made from the default model, the bytes
    are llama.cpp's: the same RMSE (printed), from the same weights."""
    pytest.importorskip("llama_cpp", reason="llama.cpp's quantizer makes the reference files (pip install '.[test]')")
    import mixtures

    made = mixtures.make_mixture(smollm_path, HOLDS[name], mixtures.mixture_dir(smollm_path))
    ref = gguf.GGUFReader(str(made))
    tensors = [t for t in ref.tensors if t.tensor_type.name == name]
    assert tensors, f"{HOLDS[name]} holds no {name} tensor"
    for t in tensors[:6]:  # a bounded number of matrices per type
        x = _tensor(smollm_path, t.name)
        mine = quant.quantize_file(x, name)
        theirs = np.array(t.data, dtype=np.uint8).reshape(mine.shape)
        rmse = [float(np.sqrt(np.mean((quant.dequantize(r, name, x.shape) - x) ** 2))) for r in (mine, theirs)]
        print(f"{name} {t.name} RMSE pyllm {rmse[0]:.6g} llama.cpp {rmse[1]:.6g}")
        assert rmse[0] <= rmse[1]
        np.testing.assert_array_equal(mine, theirs, err_msg=f"{name} {t.name}")
