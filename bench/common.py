"""Timing helpers shared by the benchmark scripts: interleaved runs of the
contenders and medians, so a noisy shared machine hurts both sides alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List


def interleaved_medians(fns: Dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 2,
                        min_time: float = 0.2, settle: float = 0.05, prime: bool = True) -> Dict[str, float]:
    """Median seconds per call of each function, measured round-robin.

    Each sample times enough back-to-back calls to last ``min_time``, after
    ``settle`` seconds of idle: thread pools (libgomp, OpenBLAS) spin for a
    while after a call, and a contender timed right after another library's
    call would otherwise share the CPUs with those spinning threads.
    With ``prime``, each sample first makes one untimed call after that idle
    time; calls that last seconds need no priming (``prime=False``).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    inner = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(min_time / one))
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = inner[name]
            time.sleep(settle)
            if prime:
                fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) for name, s in samples.items()}


def llama_cpp_without_amx() -> bool:
    """On CPUs with AMX, llama.cpp's AMX matrix kernels (its extra buffer type there) crash
    with SIGSEGV in ggml_backend_amx_mul_mat on a prompt of more than a few tokens
    (llama-cpp-python 0.3.36): there, make every llama_cpp.Llama load its model without
    the extra (repacking) buffer types. Call before making one; True when it applies."""
    try:
        with open("/proc/cpuinfo") as f:
            if "amx_int8" not in f.read():
                return False
    except OSError:
        return False
    import llama_cpp.llama_cpp as lc

    default = lc.llama_model_default_params
    if getattr(default, "without_extra_buffers", False):
        return True

    def without_extra_buffers():  # type: ignore[no-untyped-def]
        p = default()
        p.use_extra_bufts = False
        return p

    without_extra_buffers.without_extra_buffers = True  # type: ignore[attr-defined]
    lc.llama_model_default_params = without_extra_buffers
    return True
