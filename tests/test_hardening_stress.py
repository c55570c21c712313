# Several threads at once against one process: set_num_threads flipping, models loaded and
# closed, generate / stream / score on a shared model and on each thread's own, for a few
# seconds (``pytest -m slow``: a minute). Every answer must equal the one computed alone
# first; a signal, a hang or a different token fails. .ci/sanitize runs it under ASan+UBSan.
# Not the single races pinned one by one (test_hardening_threads.py, test_hardening_stream.py).

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "data", "tiny", "llama3", "llama3-f32.gguf")

# the child: reference answers computed on one thread, then every worker repeats its kind of call
# until the deadline, comparing each answer; it prints "ok <calls by kind>" or the first mismatch
CHILD = """
    import json, sys, threading, time
    import numpy as np
    import pyllm
    from pyllm import AutoModelForCausalLM

    path, seconds = sys.argv[1], float(sys.argv[2])
    PROMPTS = [[1, 2, 3], [7, 8, 9, 10, 11], [42]]
    TEXTS = ["Once upon a time", "The capital of France"]
    N = 8

    shared = AutoModelForCausalLM.from_pretrained(path)
    want_gen = [shared.generate(p, max_new_tokens=N).tolist() for p in PROMPTS]
    want_sampled = shared.generate(PROMPTS[0], max_new_tokens=N, do_sample=True, seed=3).tolist()
    want_stream = ["".join(shared.stream(t, max_new_tokens=N)) for t in TEXTS]
    want_score = shared.score(list(range(1, 40)), stride=16).logprobs

    stop = time.monotonic() + seconds
    errors = []
    calls = {}

    def worker(kind, body):
        def run():
            n, i = 0, 0
            try:
                while time.monotonic() < stop and not errors:
                    body(i)
                    n, i = n + 1, i + 1
            except BaseException as e:  # any exception is a finding, reported by the main thread
                errors.append(f"{kind}: {type(e).__name__}: {e}")
            calls[kind] = n
        return threading.Thread(target=run, name=kind)

    def check(kind, got, want):
        if got != want:
            errors.append(f"{kind}: got {got!r}, expected {want!r}")

    def threads(i):
        pyllm.set_num_threads(1 + i % 4)

    def generate(i):
        p = i % len(PROMPTS)
        check("generate", shared.generate(PROMPTS[p], max_new_tokens=N).tolist(), want_gen[p])

    def sampled(i):
        check("sampled", shared.generate(PROMPTS[0], max_new_tokens=N, do_sample=True, seed=3).tolist(),
              want_sampled)

    def stream(i):
        t = i % len(TEXTS)
        it = shared.stream(TEXTS[t], max_new_tokens=N)
        if i % 3 == 2:  # an abandoned stream holds nothing
            next(it)
            return
        check("stream", "".join(it), want_stream[t])

    def score(i):
        got = shared.score(list(range(1, 40)), stride=16).logprobs
        if not np.array_equal(got, want_score, equal_nan=True):
            errors.append(f"score: logprobs differ by {np.nanmax(np.abs(got - want_score))}")

    def load_close(i):
        with AutoModelForCausalLM.from_pretrained(path, n_threads=1 + i % 2) as own:
            p = i % len(PROMPTS)
            check("load_close", own.generate(PROMPTS[p], max_new_tokens=N).tolist(), want_gen[p])

    pool = [worker("threads", threads), worker("generate", generate), worker("generate2", generate),
            worker("sampled", sampled), worker("stream", stream), worker("stream2", stream),
            worker("score", score), worker("load_close", load_close)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 120)
        if t.is_alive():
            errors.append(f"{t.name}: still running {seconds + 120:.0f} s after the deadline (a hang)")
    shared.close()
    if errors:
        print("\\n".join(errors[:5]))
        sys.exit(1)
    print("ok " + json.dumps(calls))
"""


def _stress(seconds: float) -> None:
    timeout = seconds + 300
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), TINY, str(seconds)],
                              capture_output=True, text=True, timeout=timeout,
                              cwd=tempfile.gettempdir())  # the installed pyllm
    except subprocess.TimeoutExpired:
        pytest.fail(f"the stress run did not finish within {timeout} s (a deadlock)")
    rc = proc.returncode
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    assert rc == 0 and proc.stdout.startswith("ok"), (
        f"child ended with {how}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    # every kind of call ran at least once while the others did
    calls = json.loads(proc.stdout[3:])
    assert all(n > 0 for n in calls.values()), calls


def test_threads_at_once_short():
    _stress(float(os.environ.get("PYLLM_STRESS_SECONDS", "4")))


@pytest.mark.slow
def test_threads_at_once_long():
    # the long run: pytest -m slow tests/test_hardening_stress.py
    _stress(60.0)
