"""Memory soak: load the default model, generate, close, repeat, in a fresh
process; resident memory must stay flat. A short run by default, a long one
with `pytest -m slow`. Not a speed test."""

import json
import os
import subprocess
import sys
import tempfile

import pytest

SOAK = r"""
import ctypes, gc, json, sys
from pyllm import AutoModelForCausalLM

# glibc keeps freed heap pages resident, and where a large buffer lands (heap or its own mapping) moves
# with its dynamic mmap threshold: hand free pages back so the figure counts live memory, not the
# allocator's cache
trim = getattr(ctypes.CDLL(None), "malloc_trim", lambda pad: 0)

path, cycles, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "leak"
kept, rss = [], []
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
for i in range(cycles):
    model = AutoModelForCausalLM.from_pretrained(path, n_ctx=256)
    out = model.generate([[1, 504, 2365, 3158]], max_new_tokens=8, do_sample=True, seed=i)
    assert out.shape == (1, 12)
    model.score("To be, or not to be, that is the question.")
    if keep:
        kept.append(model)
    else:
        model.close()
        del model
    gc.collect()
    trim(0)
    rss.append(resident_mb())
print(json.dumps(rss))
"""


def soak(path: str, cycles: int, leak: bool = False) -> list:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", SOAK, path, str(cycles), "leak" if leak else "close"],
                       capture_output=True, text=True, env=env, timeout=1800, check=False,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _growth(rss: list, warmup: int) -> float:
    return max(rss[warmup:]) - rss[warmup - 1]


@pytest.mark.parametrize("cycles", [pytest.param(8, id="short"), pytest.param(150, marks=pytest.mark.slow, id="long")])
def test_load_generate_close_is_flat(smollm_path, cycles):
    rss = soak(smollm_path, cycles)
    # a leaked model is ~100 MB (mapped weights touched by the forward, repacked copies, KV cache)
    assert _growth(rss, warmup=3) < 16, rss


def test_soak_sees_a_leak(smollm_path):
    # the same measurement, keeping every model alive, grows by a model per cycle
    rss = soak(smollm_path, 4, leak=True)
    assert _growth(rss, warmup=2) > 100, rss
