"""CPU dispatch, threads, the GIL and concurrent use of the kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import pyllm
from pyllm import ops


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PYLLM_")}
    full.update(env)
    # run outside the source tree so the installed package is the one imported
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120,
        cwd=tempfile.gettempdir(),
    )


def test_cpu_info_fields():
    info = pyllm.cpu_info()
    assert set(info) >= {"isa", "available_isas", "features", "num_threads", "openmp"}
    assert info["isa"] in info["available_isas"]
    assert info["available_isas"][0] == "scalar"
    assert info["num_threads"] >= 1
    if "avx2" in info["features"] and "fma" in info["features"]:
        assert "avx2" in info["available_isas"]


def test_auto_picks_the_best_isa():
    out = _run("import pyllm, json; print(json.dumps(pyllm.cpu_info()))")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["isa"] == info["available_isas"][-1]


def test_env_forces_scalar():
    out = _run("import pyllm; print(pyllm.cpu_info()['isa'])", PYLLM_ISA="scalar")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scalar"


def test_env_rejects_unknown_isa():
    out = _run("import pyllm", PYLLM_ISA="sse9")
    assert out.returncode != 0
    assert "PYLLM_ISA=sse9" in out.stderr and "scalar" in out.stderr


def test_dispatch_without_avx2_falls_back_to_scalar():
    # a CPU reporting only pre-AVX2 features must get the scalar kernels
    code = "import pyllm, json; print(json.dumps(pyllm.cpu_info()))"
    out = _run(code, PYLLM_FAKE_CPU_FEATURES="sse4.2,avx")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["isa"] == "scalar"
    assert info["available_isas"] == ["scalar"]
    assert "avx2" not in info["features"]
    refused = _run("import pyllm", PYLLM_FAKE_CPU_FEATURES="sse4.2,avx", PYLLM_ISA="avx2")
    assert refused.returncode != 0 and "cannot run here" in refused.stderr


def test_dispatch_without_avx512_picks_avx2():
    # an AVX2 CPU (Zen 3) must get the avx2 kernels and never see avx512
    code = "import pyllm, json; print(json.dumps(pyllm.cpu_info()))"
    out = _run(code, PYLLM_FAKE_CPU_FEATURES="sse4.2,avx,avx2,fma,f16c")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["isa"] == "avx2"
    assert info["available_isas"] == ["scalar", "avx2"]
    assert not any(f.startswith("avx512") for f in info["features"])
    refused = _run("import pyllm", PYLLM_FAKE_CPU_FEATURES="sse4.2,avx,avx2,fma,f16c", PYLLM_ISA="avx512")
    assert refused.returncode != 0 and "cannot run here" in refused.stderr
    # avx512f alone (no BW/DQ/VL, as on Knights Landing) is not enough either
    partial = _run(code, PYLLM_FAKE_CPU_FEATURES="sse4.2,avx,avx2,fma,f16c,avx512f")
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["isa"] == "avx2"


def test_avx512_listed_exactly_when_the_cpu_has_it():
    # (not a skip on AVX2-only CPUs: CI counts skips as failures)
    info = pyllm.cpu_info()
    want = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "f16c"}
    forced = _run("import pyllm; print(pyllm.cpu_info()['isa'])", PYLLM_ISA="avx512")
    if want <= set(info["features"]):
        assert info["available_isas"] == ["scalar", "avx2", "avx512"]
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.strip() == "avx512"
    else:
        assert "avx512" not in info["available_isas"]
        assert forced.returncode != 0 and "cannot run here" in forced.stderr


def test_set_isa_errors():
    with pytest.raises(ValueError, match="supported"):
        pyllm.set_isa("avx1024")


def test_threads_api():
    before = pyllm.get_num_threads()
    try:
        pyllm.set_num_threads(1)
        assert pyllm.get_num_threads() == 1
        assert pyllm.cpu_info()["num_threads"] == 1
        with pytest.raises(ValueError, match=r"must be in \[1, 1024\].*got 0"):
            pyllm.set_num_threads(0)
        with pytest.raises(TypeError):
            pyllm.set_num_threads(2.5)  # type: ignore[arg-type]
    finally:
        pyllm.set_num_threads(before)


def test_omp_num_threads_is_respected():
    out = _run("import pyllm; print(pyllm.get_num_threads())", OMP_NUM_THREADS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_gil_is_released_during_kernels():
    # while a long matmul runs in another thread, this thread keeps running Python
    a = np.random.default_rng(0).standard_normal((1536, 1536), dtype=np.float32)
    started, done = threading.Event(), threading.Event()

    def work():
        started.set()
        for _ in range(4):
            ops.matmul(a, a)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    started.wait()
    ticks = 0
    while not done.is_set():
        ticks += 1
    th.join()
    # with the GIL held for the whole call this loop could only run between calls
    assert ticks > 1000


def test_concurrent_calls_agree(rng):
    # kernels keep no shared mutable state: scratch memory is per calling thread
    a = rng.standard_normal((257, 300), dtype=np.float32)
    b = rng.standard_normal((300, 129), dtype=np.float32)
    q = rng.standard_normal((1, 4, 40, 32), dtype=np.float32)
    want_mm, want_att = ops.matmul(a, b), ops.scaled_dot_product_attention(q, q, q, is_causal=True)
    errors = []

    def work():
        for _ in range(20):
            if not np.array_equal(ops.matmul(a, b), want_mm):
                errors.append("matmul")
            if not np.array_equal(ops.scaled_dot_product_attention(q, q, q, is_causal=True), want_att):
                errors.append("attention")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
