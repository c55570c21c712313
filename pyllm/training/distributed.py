# Data-parallel training over MPI (mpi4py): which rank this process is, the gradient sum, the checks that
# every rank runs the same job, and bounded waits. Not a communication library: MPI does the moving.
"""Data parallelism for :class:`~pyllm.training.Trainer` and ``pyllm train``.

Started under ``mpirun -n N``, each of the N processes (ranks) builds the
same model and data, then every optimizer step:

- all ranks draw the step's *global* batch of ``N * per_device_train_batch_size``
  blocks from one seeded generator (each rank holds the same generator) and
  each computes its own slice of it, so the run sees the batches of one
  process with ``--batch-size`` times N;
- the gradients (one flat float32 buffer) are summed across ranks in place
  (``MPI_Allreduce``) and divided by N, the losses likewise;
- the AdamW step then runs identically on every rank: the weights stay equal
  without being sent again.

Classification datasets (rows) share out the same way: every rank shuffles
the epoch with the same seed, cuts it into global batches of
``N * per_device_train_batch_size`` rows and computes its slice; a short last
batch weighs each rank's mean by its rows, so the step is the single-process
step over the whole batch. Each rank draws its own dropout masks (rank 0 keeps
the model's generator, rank r > 0 a generator seeded from the run's seed and
r), and a checkpoint keeps every rank's generator.

Rank 0 alone logs and writes checkpoints; evaluation is sharded (rank r
evaluates every N-th batch) and its sums reduced (classification: the logits
gathered in batch order, so ``compute_metrics`` sees every row). A resumed run reads its
checkpoint on rank 0 and broadcasts the weights, the optimizer and the
sampler state, so the checkpoint need only be on rank 0's disk and N may
differ from the run that wrote it.

Results equal the single-process run with the global batch to float32
reduction-order error (the sum over ranks is in rank order, but a rank's
backward sums its own rows before the ranks are added, where one process
sums all rows in one pass).

Without ``mpirun`` (or with one rank) nothing here is used and mpi4py is not
imported. Every wait on the other ranks is bounded (``PYLLM_MPI_TIMEOUT``
seconds, default 300): a rank that stops answering makes the others abort the
job with a message naming it, rather than hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

__all__ = ["World", "get_world", "world_size_from_env", "DistributedError", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 300.0  # seconds a rank waits for the others before it aborts the job

# what launchers set in each process they start: Open MPI, then PMIx / MPICH-style PMI
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS")


class DistributedError(RuntimeError):
    """Ranks disagree about the job, or one stopped answering."""


def world_size_from_env() -> int:
    """The number of ranks the launcher started (1 when not under mpirun)."""
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    return 1


def _timeout() -> float:
    raw = os.environ.get("PYLLM_MPI_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"PYLLM_MPI_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"PYLLM_MPI_TIMEOUT must be > 0 seconds, got {raw!r}")
    return value


class World:
    """This process's place among the ranks. ``World()`` with no MPI is the
    one-rank world: every method is then a no-op or the identity."""

    def __init__(self, comm: Any = None, timeout: Optional[float] = None):
        self.comm = comm
        self.rank = int(comm.Get_rank()) if comm is not None else 0
        self.size = int(comm.Get_size()) if comm is not None else 1
        self.timeout = _timeout() if timeout is None else float(timeout)
        self.local_size = 1
        if comm is not None:
            from mpi4py import MPI

            node = comm.Split_type(MPI.COMM_TYPE_SHARED)
            self.local_size = int(node.Get_size())
            node.Free()
        self.comm_seconds = 0.0  # time spent in gradient sums (for the benchmark's share)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- bounded waits

    def _wait(self, request: Any, what: str) -> None:
        """Poll a non-blocking MPI request until done or the timeout passes; then abort the job."""
        start = time.monotonic()
        deadline = start + self.timeout
        pause = 0.0
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                self.abort(f"rank {self.rank}: no answer from the other ranks for {self.timeout:.0f} s while "
                           f"{what}; a rank has died or hangs (PYLLM_MPI_TIMEOUT sets the wait)")
            # a large message moves in shared-memory fragments, each advanced by a Test call: spin for
            # the first 0.2 s (sleeping between fragments made a 3 MB gradient sum take 77 ms), then back off
            if now - start > 0.2:
                pause = min(pause * 2 or 1e-4, 1e-3)
                time.sleep(pause)

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` and end every rank of the job."""
        print(f"pyllm: error: {message}", file=sys.stderr, flush=True)
        if self.comm is not None:
            self.comm.Abort(code)
        raise DistributedError(message)

    # ---- collectives

    def allreduce_sum_(self, buf: np.ndarray, what: str = "summing gradients") -> None:
        """Sum ``buf`` (contiguous float32/float64) over the ranks, in place."""
        if not self.distributed:
            return
        from mpi4py import MPI

        t0 = time.perf_counter()
        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), what)
        self.comm_seconds += time.perf_counter() - t0

    def sum(self, values: List[float], what: str) -> List[float]:
        """The element-wise sum of a few float64 values over the ranks."""
        if not self.distributed:
            return list(values)
        buf = np.asarray(values, dtype=np.float64).copy()
        self.allreduce_sum_(buf, what)
        return [float(v) for v in buf]

    def broadcast_(self, buf: np.ndarray, what: str, root: int = 0) -> None:
        """Rank ``root``'s ``buf`` into every rank's, in place."""
        if not self.distributed:
            return
        self._wait(self.comm.Ibcast(buf, root=root), what)

    def broadcast_object(self, obj: Any, what: str, root: int = 0) -> Any:
        """Rank ``root``'s picklable object, on every rank (bounded by the timeout)."""
        if not self.distributed:
            return obj
        import pickle

        data = pickle.dumps(obj) if self.rank == root else b""
        n = np.array([len(data)], dtype=np.int64)
        self.broadcast_(n, what, root)
        raw = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else np.empty(int(n[0]), np.uint8)
        self.broadcast_(raw, what, root)
        return obj if self.rank == root else pickle.loads(raw.tobytes())

    def allgather_object(self, obj: Any, what: str) -> List[Any]:
        """Every rank's picklable ``obj``, in rank order, on every rank (one bounded broadcast per rank)."""
        if not self.distributed:
            return [obj]
        return [self.broadcast_object(obj if r == self.rank else None, what, root=r) for r in range(self.size)]

    def barrier(self, what: str) -> None:
        if self.distributed:
            self._wait(self.comm.Ibarrier(), what)

    def run_on_main(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 and hand its result (or its error) to every rank."""
        if not self.distributed:
            return fn()
        result: Tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                result = (True, fn())
            except Exception as e:  # noqa: BLE001 - the error travels to the other ranks
                result = (False, e)
        ok, value = self.broadcast_object(result, what)
        if not ok:
            raise value
        return value

    def check_same(self, described: Any, what: str) -> None:
        """Raise on every rank when ranks disagree about ``described`` (a
        JSON-able description of the job): naming the first differing key."""
        if not self.distributed:
            return
        text = json.dumps(described, sort_keys=True, default=repr)
        digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8).copy()
        mine = digest.copy()
        self.broadcast_(digest, f"comparing the {what} across ranks")
        differs = np.zeros(self.size, dtype=np.int64)
        differs[self.rank] = int(bytes(digest) != bytes(mine))
        self.allreduce_sum_(differs, f"comparing the {what} across ranks")
        if not differs.any():
            return
        # every rank learns rank 0's and the first differing rank's description, so any rank's message says it
        odd = [int(r) for r in np.flatnonzero(differs)]
        main = self.broadcast_object(described, f"comparing the {what}", root=0)
        other = self.broadcast_object(described, f"comparing the {what}", root=odd[0])
        more = f" (and rank{'s' if len(odd) > 2 else ''} {', '.join(map(str, odd[1:]))})" if len(odd) > 1 else ""
        raise DistributedError(f"the ranks were started with different {what}: rank {odd[0]}{more} has "
                               f"{_first_difference(main, other)}. Start every rank with the same command, data "
                               "and files")

    # ---- batches

    def shard(self, start: int, n: int) -> slice:
        """This rank's rows of a global batch of ``n * size`` rows starting at row ``start``."""
        lo = start + self.rank * n
        return slice(lo, lo + n)


def _first_difference(main: Any, mine: Any, path: str = "") -> str:
    if isinstance(main, dict) and isinstance(mine, dict):
        for key in sorted(set(main) | set(mine), key=str):
            if key not in main or key not in mine or main[key] != mine[key]:
                return _first_difference(main.get(key), mine.get(key), f"{path}.{key}" if path else str(key))
        return "no difference in the keys compared"
    return f"{path or 'value'}={mine!r} where rank 0 has {main!r}"


_WORLD: Optional[World] = None


def get_world() -> World:
    """The world this process belongs to: under ``mpirun -n N`` (N > 1) the
    MPI world, through mpi4py (``pip install "pyllm[mpi]"``); else one rank."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if world_size_from_env() <= 1:
        _WORLD = World()
        return _WORLD
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"this process was started by an MPI launcher with {world_size_from_env()} ranks, but mpi4py "
            f"cannot be imported ({e}); install it with pip install \"pyllm[mpi]\" (and an MPI library, e.g. "
            "Open MPI), or start a single process") from None
    world = World(MPI.COMM_WORLD)
    _default_threads(world)
    _WORLD = world
    return world


def _default_threads(world: World) -> None:
    """Each rank takes its share of the cores it may run on (divided by the ranks on its host) unless
    OMP_NUM_THREADS or pyllm.set_num_threads chose a count."""
    import pyllm

    if os.environ.get("OMP_NUM_THREADS") or pyllm._threads_chosen:
        return
    pyllm.set_num_threads(max(1, pyllm.get_num_threads() // max(world.local_size, 1)))
    pyllm._threads_chosen = False  # still the default: a later set_num_threads is the user's
