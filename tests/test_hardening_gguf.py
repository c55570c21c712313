# GGUF files that parse but lie: metadata out of range or of the wrong type, a block count
# that does not match the tensors, NaN/Inf weights (generation and scoring raise naming the
# step), and a mapped file truncated or rewritten while a model uses it (an exception, not
# SIGBUS). Each file is the tiny llama3 fixture rewritten by the gguf package with one change.
# Not malformed headers (test_gguf.py, fuzz/fuzz_gguf.py).

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import gguf
import numpy as np
import pytest

from pyllm import AutoModelForCausalLM, cli

TINY = Path(__file__).parent / "data" / "tiny" / "llama3" / "llama3-f32.gguf"
T = gguf.GGUFValueType
Edit = Dict[str, Optional[Tuple[Any, "gguf.GGUFValueType"]]]  # key -> (value, type), or None: drop it


def _rewrite(dst: Path, edit: Optional[Edit] = None, tensor: Optional[Callable[[str, np.ndarray], np.ndarray]] = None,
             drop_tensors: Tuple[str, ...] = ()) -> Path:
    """The tiny model with the metadata of ``edit`` replaced and ``tensor(name, data)`` applied."""
    edit = edit or {}
    r = gguf.GGUFReader(str(TINY))
    w = gguf.GGUFWriter(str(dst), str(r.fields["general.architecture"].contents()))
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in edit:
            continue
        sub = field.types[-1] if field.types[0] == T.ARRAY else None
        w.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
    for key, new in edit.items():
        if new is not None:
            w.add_key_value(key, new[0], new[1])
    for t in r.tensors:
        if t.name in drop_tensors:
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name  # the fixture is all F32
        data = np.array(t.data, dtype=np.float32)
        w.add_tensor(t.name, tensor(t.name, data) if tensor else data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def test_the_rewrite_itself_is_faithful(tmp_path):
    # the rewritten fixture must load and answer as the original, or the tests below prove nothing
    want = AutoModelForCausalLM.from_pretrained(TINY).generate([1, 2, 3], max_new_tokens=6)
    got = AutoModelForCausalLM.from_pretrained(_rewrite(tmp_path / "same.gguf")).generate([1, 2, 3], max_new_tokens=6)
    assert (got == want).all()


BAD_METADATA = {
    "eps NaN": ({"llama.attention.layer_norm_rms_epsilon": (float("nan"), T.FLOAT32)},
                r"llama\.attention\.layer_norm_rms_epsilon .*must be a finite number > 0, got nan"),
    "eps negative": ({"llama.attention.layer_norm_rms_epsilon": (-0.5, T.FLOAT32)},
                     r"llama\.attention\.layer_norm_rms_epsilon .*> 0, got -0\.5"),
    "rope base 0": ({"llama.rope.freq_base": (0.0, T.FLOAT32)}, r"llama\.rope\.freq_base .*> 0, got 0\.0"),
    "rope base NaN": ({"llama.rope.freq_base": (float("nan"), T.FLOAT32)}, r"llama\.rope\.freq_base .*got nan"),
    "rope base negative": ({"llama.rope.freq_base": (-10000.0, T.FLOAT32)}, r"llama\.rope\.freq_base .*got -10000"),
    "rope base inf": ({"llama.rope.freq_base": (float("inf"), T.FLOAT32)}, r"llama\.rope\.freq_base .*got inf"),
    "heads 0": ({"llama.attention.head_count": (0, T.UINT32)}, r"llama\.attention\.head_count .*\[1, 2\*\*31\), got 0"),
    "kv heads 0": ({"llama.attention.head_count_kv": (0, T.UINT32)}, r"llama\.attention\.head_count_kv .*got 0"),
    "kv heads not dividing": ({"llama.attention.head_count_kv": (3, T.UINT32)},
                              r"llama\.attention\.head_count_kv=3 does not divide llama\.attention\.head_count=4"),
    "heads not dividing the width": ({"llama.attention.head_count": (5, T.UINT32),
                                      "llama.attention.head_count_kv": (5, T.UINT32),
                                      "llama.attention.key_length": None},
                                     r"llama\.attention\.head_count=5 does not divide llama\.embedding_length=64"),
    "context 0": ({"llama.context_length": (0, T.UINT32)}, r"llama\.context_length .*got 0"),
    "heads float": ({"llama.attention.head_count": (4.0, T.FLOAT32)},
                    r"llama\.attention\.head_count .*must be an integer .*got 4\.0"),
    "heads string": ({"llama.attention.head_count": ("4", T.STRING)},
                     r"llama\.attention\.head_count .*must be an integer .*got '4'"),
    "heads bool": ({"llama.attention.head_count": (True, T.BOOL)},
                   r"llama\.attention\.head_count .*must be an integer .*got True"),
    "width float": ({"llama.embedding_length": (64.5, T.FLOAT32)}, r"llama\.embedding_length .*got 64\.5"),
    "block count huge": ({"llama.block_count": (10**9, T.UINT32)},
                         r"llama\.block_count=1000000000 does not match the tensors: the file has no tensors for "
                         r"layer 2"),
    "block count short": ({"llama.block_count": (1, T.UINT32)},
                          r"llama\.block_count=1 does not match the tensors: the file has tensors for layer 1"),
    "block count negative": ({"llama.block_count": (-2, T.INT32)}, r"llama\.block_count .*got -2"),
}


def _fixture_sizes() -> Dict[str, Any]:
    md = gguf.GGUFReader(str(TINY)).fields
    return {k: md[k].contents() for k in ("llama.embedding_length", "llama.attention.head_count",
                                           "llama.attention.head_count_kv", "llama.block_count")}


def test_fixture_sizes_are_what_the_cases_assume():
    assert _fixture_sizes() == {"llama.embedding_length": 64, "llama.attention.head_count": 4,
                                "llama.attention.head_count_kv": 2, "llama.block_count": 2}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_invalid_metadata_is_refused_naming_the_key(tmp_path, case):
    edit, message = BAD_METADATA[case]
    path = _rewrite(tmp_path / "bad.gguf", edit)
    with pytest.raises(ValueError, match=message):
        AutoModelForCausalLM.from_pretrained(path)


def test_missing_layer_is_refused(tmp_path):
    names = [t.name for t in gguf.GGUFReader(str(TINY)).tensors if t.name.startswith("blk.0.")]
    path = _rewrite(tmp_path / "hole.gguf", drop_tensors=tuple(names))
    with pytest.raises(ValueError, match=r"block_count=2 does not match the tensors: the file has no tensors for "
                                         r"layer 0"):
        AutoModelForCausalLM.from_pretrained(path)


def test_cli_names_the_key(tmp_path, capsys):
    path = _rewrite(tmp_path / "bad.gguf", {"llama.rope.freq_base": (float("nan"), T.FLOAT32)})
    assert cli.main(["generate", "--model", str(path), "--max-new-tokens", "2", "Hello"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyllm: error: GGUF metadata llama.rope.freq_base"), err
    assert "Traceback" not in err


# ---- non-finite weights: every logit NaN (the final norm), or one +inf in the head's row of a token

def _nan_norm(name: str, data: np.ndarray) -> np.ndarray:
    return np.full_like(data, np.nan) if name == "output_norm.weight" else data


def _inf_in_layer(name: str, data: np.ndarray) -> np.ndarray:
    if name == "blk.1.ffn_down.weight":
        data = data.copy()
        data.reshape(-1)[5] = np.inf
    return data


@pytest.fixture
def nan_model(tmp_path) -> Any:
    with AutoModelForCausalLM.from_pretrained(_rewrite(tmp_path / "nan.gguf", tensor=_nan_norm)) as m:
        yield m


@pytest.mark.parametrize("kw", [{}, {"do_sample": True, "seed": 0}, {"num_beams": 2}])
def test_nan_weights_raise_naming_the_step(nan_model, kw):
    # greedy used to emit token 0 forever; sampling said "every score is -inf"
    step, n = ("beam search step 0", 768) if "num_beams" in kw else (r"generation step 0 \(after 3 tokens\)", 384)
    with pytest.raises(FloatingPointError, match=rf"logits at {step} hold NaN \({n} of {n} entries\)"):
        nan_model.generate([1, 2, 3], max_new_tokens=4, **kw)


def test_nan_weights_in_a_batch_and_a_stream(nan_model):
    # (decoded together when the runtime batches this model, one after another otherwise)
    with pytest.raises(FloatingPointError, match=r"generation step 0 (of sequence 0|\(after 3 tokens\)) hold NaN"):
        nan_model.generate([[1, 2, 3], [4, 5, 6]], max_new_tokens=4)
    with pytest.raises(FloatingPointError, match=r"generation step 0"):
        list(nan_model.stream([1, 2, 3], max_new_tokens=4))


def test_nan_weights_fail_scoring(nan_model):
    # the NaN log-probabilities were taken for "not scored" and left out of the perplexity
    with pytest.raises(FloatingPointError, match=r"positions 0 to 8 of the scored text hold NaN"):
        nan_model.score(list(range(1, 11)))


def test_inf_weight_raises(tmp_path):
    with AutoModelForCausalLM.from_pretrained(_rewrite(tmp_path / "inf.gguf", tensor=_inf_in_layer)) as m:
        with pytest.raises(FloatingPointError, match=r"generation step 0 \(after 3 tokens\) hold"):
            m.generate([1, 2, 3], max_new_tokens=4)


def test_cli_prints_the_non_finite_error(tmp_path, capsys):
    path = _rewrite(tmp_path / "nan.gguf", tensor=_nan_norm)
    assert cli.main(["generate", "--model", str(path), "--max-new-tokens", "2", "Hello"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyllm: error: the model's logits at generation step 0"), err


# ---- the mapped file changed under a loaded model: in a child process, so SIGBUS fails the test

CHANGED = """
    import os, sys
    from pyllm import AutoModelForCausalLM

    path, how = sys.argv[1], sys.argv[2]
    model = AutoModelForCausalLM.from_pretrained(path)
    want = model.generate([1, 2, 3], max_new_tokens=4).tolist()
    size = os.path.getsize(path)
    if how == "truncate":
        os.truncate(path, 4096)
    elif how == "empty":
        open(path, "wb").close()
    elif how == "overwrite":  # same size, other bytes: the weights would silently change
        with open(path, "r+b") as f:
            f.seek(size - 4096)
            f.write(b"\\xff" * 4096)
            os.utime(path, ns=(0, 0))  # and a different time, whatever the clock's resolution
    elif how == "replace":  # a new file renamed over the old one: the mapping keeps the old file
        with open(path + ".new", "wb") as f:
            f.write(b"x" * 100)
        os.replace(path + ".new", path)
    try:
        got = model.generate([1, 2, 3], max_new_tokens=4).tolist()
    except OSError as e:
        print("OSError", e)
    else:
        print("same" if got == want else "DIFFERENT")
"""


@pytest.mark.parametrize("how", ["truncate", "empty", "overwrite", "replace"])
def test_model_file_changed_while_loaded(tmp_path, how):
    path = tmp_path / "m.gguf"
    shutil.copy(TINY, path)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CHANGED), str(path), how], capture_output=True,
                          text=True, timeout=120, cwd=tempfile.gettempdir())
    rc = proc.returncode
    how_ended = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    assert rc == 0, f"child ended with {how_ended}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    if how == "replace":
        assert proc.stdout.strip() == "same", proc.stdout
    else:
        assert proc.stdout.startswith(f"OSError the model file {path} changed on disk while loaded ("), proc.stdout
        if how == "overwrite":
            assert "it was modified in place" in proc.stdout
        else:
            assert f"its size went from {os.path.getsize(TINY)} to" in proc.stdout
