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
