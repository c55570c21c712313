# The thread count of a training step: the runtime's choice between one thread and all of them,
# made per step from what steps cost lately. Not a thread pool and not the kernels' OpenMP policy.
"""Run each training step on the thread count that has lately been faster.

A training step is hundreds of kernel calls from Python, each an OpenMP
region over ``pyllm.get_num_threads()`` threads. When other processes keep
cores busy, a region waits for its slowest thread and the waiting ones spin
on the core the late one needs: two threads can then be several times
slower than one. :class:`StepThreads` gives the whole step one count, picked
as inference picks it per prefill chunk (``_C.ThreadChooser``): all threads
or one, whichever cost less per token lately, trying the other now and then.
``pyllm.set_num_threads(n, adaptive=False)`` or ``PYLLM_ADAPTIVE_THREADS=0``
pins ``n``.

>>> threads = StepThreads()
>>> with threads.step(units=1024) as n:   # kernels called here use n threads
...     pass
>>> n >= 1
True
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from .. import _C

__all__ = ["StepThreads"]


class StepThreads:
    """One thread-count choice per step for a loop Python drives (the
    Trainer's optimizer steps, its evaluation batches). One object per kind
    of step; not shared between threads.

    The choice changes which threads add up a sum, not what is summed: the
    forward pass and the loss are the same bits on any count, some gradient
    reductions (bias and layernorm gradients, the gradient norm) differ in
    the last bits. A run that must repeat bit for bit pins the count
    (``pyllm.set_num_threads(n, adaptive=False)``).
    """

    def __init__(self) -> None:
        self._chooser = _C.ThreadChooser()

    @contextmanager
    def step(self, units: float) -> Iterator[int]:
        """Run the block on the chosen count (yielded) and, when it
        completes, record its time per ``units`` (tokens) of work."""
        if not units > 0:
            raise ValueError(f"units must be a number > 0 (the step's tokens), got {units!r}")
        n = self._chooser.pick()
        start = time.perf_counter()
        with _C.ScopedThreads(n):
            yield n
        self._chooser.record(n, time.perf_counter() - start, float(units))
