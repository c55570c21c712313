"""Thread counts of training steps: the _C.ThreadChooser / _C.ScopedThreads binding and its
argument checks, StepThreads, the Trainer honoring set_num_threads and adaptive=False, and what
the count may change in a step's results. No timings are asserted (bench/train_contention.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import pytest

import pyllm
from pyllm import _C, AdamW, GPT2Config, GPT2LMHeadModel
from pyllm.training import StepThreads, TokenDataset, Trainer, TrainingArguments


@pytest.fixture
def two_threads() -> Iterator[None]:
    """set_num_threads(2, adaptive=True) for the test (on any machine), restored after."""
    before, adaptive = pyllm.get_num_threads(), bool(pyllm.cpu_info()["adaptive_threads"])
    pyllm.set_num_threads(2, adaptive=True)
    yield
    pyllm.set_num_threads(before, adaptive=adaptive)


# ---- the binding

def test_scoped_threads_sets_restores_and_nests(two_threads: None) -> None:
    assert pyllm.get_num_threads() == 2
    with _C.ScopedThreads(1) as s:
        assert s.n == 1 and pyllm.get_num_threads() == 1
        with _C.ScopedThreads(2):
            assert pyllm.get_num_threads() == 2
        assert pyllm.get_num_threads() == 1
    assert pyllm.get_num_threads() == 2
    with pytest.raises(KeyError):
        with _C.ScopedThreads(1):
            raise KeyError("inside")
    assert pyllm.get_num_threads() == 2
    # the count is the entering thread's: another thread keeps the process-wide one
    seen: List[int] = []
    with _C.ScopedThreads(1):
        t = threading.Thread(target=lambda: seen.append(pyllm.get_num_threads()))
        t.start()
        t.join()
    assert seen == [2]


def test_scoped_threads_argument_and_state_checks(two_threads: None) -> None:
    for bad in (0, -1, 3):
        with pytest.raises(ValueError, match=r"between 1 and the thread count 2 .*got " + str(bad)):
            _C.ScopedThreads(bad)
    with pytest.raises(TypeError):
        _C.ScopedThreads(1.5)  # type: ignore[arg-type]
    s = _C.ScopedThreads(1)
    with s:
        pass
    with pytest.raises(RuntimeError, match="already entered"):
        s.__enter__()
    with pytest.raises(RuntimeError, match="without __enter__"):
        _C.ScopedThreads(1).__exit__(None, None, None)
    s = _C.ScopedThreads(1)
    s.__enter__()
    errors: List[BaseException] = []

    def leave() -> None:
        try:
            s.__exit__(None, None, None)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=leave)
    t.start()
    t.join()
    assert len(errors) == 1 and "another thread" in str(errors[0])
    assert pyllm.get_num_threads() == 1
    s.__exit__(None, None, None)
    assert pyllm.get_num_threads() == 2


def test_thread_chooser_argument_checks(two_threads: None) -> None:
    ch = _C.ThreadChooser()
    with pytest.raises(RuntimeError, match="call pick"):
        ch.record(2, 0.1, 1.0)
    n = ch.pick()
    with pytest.raises(ValueError, match=f"n=3 is not the count the last pick.. returned .{n}."):
        ch.record(3, 0.1, 1.0)
    for seconds in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
            ch.record(n, seconds, 1.0)
    for units in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="units must be a finite number > 0"):
            ch.record(n, 0.1, units)
    with pytest.raises(TypeError):
        ch.record("2", 0.1, 1.0)  # type: ignore[arg-type]
    ch.record(n, 0.1, 1.0)  # the checks left the pick in place
    with pytest.raises(RuntimeError, match="one record per pick"):
        ch.record(n, 0.1, 1.0)


def _feed(ch: Any, cost: Dict[int, float], calls: int) -> List[int]:
    """pick/record `calls` times, each call costing cost[n] seconds per unit: the picks."""
    picks = []
    for _ in range(calls):
        n = ch.pick()
        picks.append(n)
        ch.record(n, cost[n], 1.0)
    return picks


def test_thread_chooser_moves_to_the_cheaper_count(two_threads: None) -> None:
    # all threads first; the one-thread try (the 8th call) wins, then one thread runs
    # and all threads are tried again at doubling intervals
    picks = _feed(_C.ThreadChooser(), {1: 1.0, 2: 3.0}, 60)
    assert picks[:7] == [2] * 7 and picks[7] == 1
    assert picks.count(2) < 12 and picks[-8:].count(1) >= 7
    # where all threads are cheaper, one thread is only tried now and then
    picks = _feed(_C.ThreadChooser(), {1: 2.0, 2: 1.0}, 60)
    assert picks.count(1) <= 4 and picks[:7] == [2] * 7


def test_thread_chooser_honors_set_num_threads_and_adaptive(two_threads: None) -> None:
    pyllm.set_num_threads(2, adaptive=False)
    assert _feed(_C.ThreadChooser(), {1: 1.0, 2: 9.0}, 40) == [2] * 40
    pyllm.set_num_threads(1, adaptive=True)
    assert _feed(_C.ThreadChooser(), {1: 9.0, 2: 1.0}, 40) == [1] * 40


def test_adaptive_threads_env_off() -> None:
    code = ("import pyllm, pyllm._C as c; pyllm.set_num_threads(2); ch = c.ThreadChooser(); picks = []\n"
            "for _ in range(40):\n"
            "    n = ch.pick(); picks.append(n); ch.record(n, 1.0 if n == 1 else 9.0, 1.0)\n"
            "print(sorted(set(picks)), pyllm.cpu_info()['adaptive_threads'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYLLM_")}
    env["PYLLM_ADAPTIVE_THREADS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[2]", "False"]


# ---- StepThreads and the Trainer

def test_step_threads_scope_and_checks(two_threads: None) -> None:
    threads = StepThreads()
    for units in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="units must be a number > 0"):
            with threads.step(units):
                pass
    with threads.step(100) as n:
        assert n == 2 and pyllm.get_num_threads() == 2
    with pytest.raises(KeyError):
        with threads.step(100):
            raise KeyError("inside")  # nothing recorded; the next step picks afresh
    assert pyllm.get_num_threads() == 2
    pyllm.set_num_threads(1)
    with threads.step(100) as n:
        assert n == 1 and pyllm.get_num_threads() == 1


V, T, B = 65, 64, 8  # B*T*C = 32768 reaches the kernels' parallel threshold: 2 threads really split the work


def _model(seed: int = 0) -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=T, n_embd=64, n_layer=2, n_head=4), seed=seed)


def _dataset() -> TokenDataset:
    # a learnable stream: mostly each id's successor, one in eight at random
    rng = np.random.default_rng(3)
    ids = np.cumsum(np.where(rng.random(20_000) < 0.125, rng.integers(0, V, 20_000), 1)) % V
    return TokenDataset(ids.astype(np.uint16), T, V)


class _Recorder:
    """Wraps a model's forward_backward and its optimizer's step to note the
    kernels' thread count in each."""

    def __init__(self, model: GPT2LMHeadModel, opt: AdamW):
        self.fb: List[int] = []
        self.opt: List[int] = []
        fb, step = model.forward_backward, opt.step

        def counted_fb(x: Any, y: Any) -> float:
            self.fb.append(pyllm.get_num_threads())
            return fb(x, y)

        def counted_step() -> None:
            self.opt.append(pyllm.get_num_threads())
            step()

        model.forward_backward = counted_fb  # type: ignore[method-assign]
        opt.step = counted_step  # type: ignore[method-assign]


def _train(tmp: str, steps: int, accum: int = 1, chooser: Any = None, model_seed: int = 0
           ) -> Tuple[Trainer, _Recorder, List[float]]:
    model = _model(model_seed)
    opt = AdamW(model, lr=3e-3, weight_decay=0.1)
    rec = _Recorder(model, opt)
    args = TrainingArguments(tmp, max_steps=steps, per_device_train_batch_size=B, gradient_accumulation_steps=accum,
                             learning_rate=3e-3, warmup_steps=2, logging_steps=1, save_strategy="no",
                             disable_tqdm=True, seed=1)
    trainer = Trainer(model, args, train_dataset=_dataset(), optimizers=(opt, None), log_file=io.StringIO())
    if chooser is not None:
        trainer._step_threads._chooser = chooser
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return trainer, rec, losses


class _ScriptedChooser:
    """A ThreadChooser stand-in: picks from a script, keeps what was recorded."""

    def __init__(self, script: List[int]):
        self.script = list(script)
        self.recorded: List[Tuple[int, float, float]] = []

    def pick(self) -> int:
        return self.script.pop(0)

    def record(self, n: int, seconds: float, units: float) -> None:
        self.recorded.append((n, seconds, units))


def test_trainer_runs_each_whole_step_on_the_picked_count(tmp_path: Any, two_threads: None) -> None:
    script = [2, 1, 1, 2, 1, 2]
    chooser = _ScriptedChooser(script)
    _, rec, _ = _train(str(tmp_path), steps=6, accum=2, chooser=chooser)
    assert rec.fb == [n for n in script for _ in range(2)]  # both micro-batches of a step
    assert rec.opt == script  # and its update
    assert [r[0] for r in chooser.recorded] == script
    assert all(r[1] > 0 and r[2] == 2 * B * T for r in chooser.recorded)  # per token of the step
    assert pyllm.get_num_threads() == 2  # restored after the run


def test_trainer_honors_set_num_threads_and_adaptive_off(tmp_path: Any, two_threads: None) -> None:
    pyllm.set_num_threads(1)
    _, rec, _ = _train(str(tmp_path / "one"), steps=10)
    assert rec.fb == [1] * 10 and rec.opt == [1] * 10
    pyllm.set_num_threads(2, adaptive=False)
    chooser = _C.ThreadChooser()
    for _ in range(20):  # teach it that one thread is far cheaper: adaptive=False must ignore that
        n = chooser.pick()
        chooser.record(n, 0.01 if n == 1 else 1.0, 1.0)
    _, rec, _ = _train(str(tmp_path / "two"), steps=10, chooser=chooser)
    assert rec.fb == [2] * 10 and rec.opt == [2] * 10
    pyllm.set_num_threads(2, adaptive=True)
    _, rec, _ = _train(str(tmp_path / "default"), steps=10)
    assert set(rec.fb) <= {1, 2} and rec.fb == rec.opt


# ---- what the thread count may change

def _grads(nt: int) -> Tuple[float, np.ndarray, Dict[str, np.ndarray], float]:
    model = _model()
    ids = np.random.default_rng(5).integers(0, V, (B, T))
    with _C.ScopedThreads(nt):
        loss = model.forward_backward(ids, np.roll(ids, -1, axis=1))
        sumsq = _C.sumsq(model._grads)
    assert model._acts is not None
    return loss, model._acts.logits.copy(), {k: g.copy() for k, g in model.named_gradients()}, sumsq


def test_forward_and_matrix_gradients_are_the_same_bits_on_1_and_2_threads(two_threads: None) -> None:
    loss1, dlogits1, g1, sumsq1 = _grads(1)
    loss2, dlogits2, g2, sumsq2 = _grads(2)
    assert loss1 == loss2 and np.array_equal(dlogits1, dlogits2)
    for name in g1:
        if g1[name].ndim == 2:  # GEMM outputs (and the embedding scatter): split by output tiles
            assert np.array_equal(g1[name], g2[name]), name
        else:
            # biases and layernorm parameters: per-thread partial sums over the rows, added in
            # thread order, so the last bits depend on the thread count
            scale = float(np.abs(g1[name]).max()) + 1e-30
            assert np.abs(g1[name] - g2[name]).max() <= 1e-5 * scale, name
    assert sumsq1 == pytest.approx(sumsq2, rel=1e-6)  # of the gradients above, in per-thread slices


def test_training_on_1_and_2_threads_agrees_within_rounding(tmp_path: Any, two_threads: None) -> None:
    pyllm.set_num_threads(1, adaptive=False)
    t1, _, losses1 = _train(str(tmp_path / "one"), steps=12)
    pyllm.set_num_threads(2, adaptive=False)
    t2, _, losses2 = _train(str(tmp_path / "two"), steps=12)
    t2b, _, losses2b = _train(str(tmp_path / "again"), steps=12)
    assert losses2 == losses2b and np.array_equal(t2.model._params, t2b.model._params)  # a pinned count repeats
    assert losses1[0] == losses2[0]  # the first step's loss is the same bits
    assert losses1[-1] < losses1[0] - 0.1  # it trains
    np.testing.assert_allclose(losses1, losses2, rtol=1e-7, atol=0)  # seen: 5e-9
    p1, p2 = t1.model._params, t2.model._params
    assert np.abs(p1 - p2).max() <= 5e-5 and not np.array_equal(p1, np.zeros_like(p1))
