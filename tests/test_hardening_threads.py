# Thread counts and threads against the runtime: set_num_threads while kernels
# run on other threads, and interpreter exit while a daemon thread is inside a
# call. Each probe runs in a child process, so a signal fails the test instead
# of the run. Not the several-threads stress run (test_hardening_stress.py).

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "data", "tiny", "llama3", "llama3-f32.gguf")


def _run_child(code: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=tempfile.gettempdir())  # the installed pyllm
    except subprocess.TimeoutExpired:
        pytest.fail(f"child did not finish within {timeout} s:\n{code}")


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    rc = proc.returncode
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    return f"child ended with {how}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"


def test_set_num_threads_while_kernels_run():
    # Fresh threads (fresh scratch buffers) call a kernel while another thread
    # flips the process-wide count: each call must size its scratch and start
    # its threads from one reading of the count (it used to read it twice and
    # overrun a buffer sized for one thread with 16 threads' blocks).
    code = """
        import threading
        import numpy as np
        import pyllm
        from pyllm import ops

        pyllm.set_num_threads(1)
        a = np.random.default_rng(0).random((64, 256), dtype=np.float32)
        b = np.random.default_rng(1).random((256, 256), dtype=np.float32)
        want = a.astype(np.float64) @ b
        stop = threading.Event()

        def flip():
            while not stop.is_set():
                pyllm.set_num_threads(64)
                pyllm.set_num_threads(1)

        bad = []

        def one():
            if not np.allclose(ops.matmul(a, b), want, rtol=1e-4, atol=1e-3):
                bad.append(1)

        flipper = threading.Thread(target=flip)
        flipper.start()
        for _ in range(150):
            workers = [threading.Thread(target=one) for _ in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        stop.set()
        flipper.join()
        assert not bad, f"{len(bad)} wrong products"
        print("ok")
    """
    proc = _run_child(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, _describe(proc)


def test_n_threads_of_a_second_model_while_the_first_generates():
    # from_pretrained(n_threads=...) sets the process-wide count: loading
    # models with other counts while one prefills must not change the count a
    # running forward step uses between its chunks.
    code = """
        import sys
        import threading
        import numpy as np
        import pyllm
        from pyllm import AutoModelForCausalLM

        path = sys.argv[1]
        model = AutoModelForCausalLM.from_pretrained(path, n_threads=1, n_ctx=1024)
        ids = (np.arange(1000) % 300)[None, :]
        want = model(ids).logits[0, -1]
        done = threading.Event()
        errors = []

        def run():
            try:
                for _ in range(3):
                    got = model(ids).logits[0, -1]
                    if not np.array_equal(got, want):
                        errors.append("logits changed")
            finally:
                done.set()

        t = threading.Thread(target=run)
        t.start()
        n = 0
        while not done.is_set():
            AutoModelForCausalLM.from_pretrained(path, n_threads=64 if n % 2 == 0 else 1)
            n += 1
        t.join()
        assert not errors, errors
        print("ok", n)
    """
    proc = _run_child(code, TINY)
    assert proc.returncode == 0 and "ok" in proc.stdout, _describe(proc)


@pytest.mark.parametrize("delay", ["0.2", "0.35", "0.5", "0.65"])
def test_exit_while_a_daemon_thread_generates(delay):
    # The main thread returns while a daemon thread is inside generate(): the
    # interpreter ends the daemon thread when its C++ call wants the GIL back,
    # which aborted the process (std::terminate) instead of exiting with 0.
    code = """
        import sys
        import threading
        import time
        import numpy as np
        from pyllm import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
        ids = np.array([[1, 5, 9, 23, 42]])

        def run():
            while True:
                model.generate(ids, max_new_tokens=64, do_sample=False)

        threading.Thread(target=run, daemon=True).start()
        time.sleep(float(sys.argv[2]))
        print("leaving")
    """
    proc = _run_child(code, TINY, delay)
    assert proc.returncode == 0 and "leaving" in proc.stdout, _describe(proc)


def test_exit_while_a_daemon_thread_is_in_a_kernel():
    code = """
        import threading
        import time
        import numpy as np
        from pyllm import ops

        a = np.ones((512, 512), np.float32)
        started = threading.Event()

        def run():
            while True:
                started.set()
                ops.matmul(a, a)

        threading.Thread(target=run, daemon=True).start()
        started.wait()
        time.sleep(0.3)
        print("leaving")
    """
    for _ in range(3):
        proc = _run_child(code)
        assert proc.returncode == 0 and "leaving" in proc.stdout, _describe(proc)


BAD_COUNTS = [
    (99999999999, ValueError, r"set_num_threads: n must be in \[1, 1024\] \(a thread count\), got 99999999999"),
    (2**70, ValueError, r"got 1180591620717411303424"),
    (1025, ValueError, r"must be in \[1, 1024\]"),
    (0, ValueError, r"must be in \[1, 1024\] \(a thread count\), got 0"),
    (-3, ValueError, r"got -3"),
    (True, TypeError, r"set_num_threads: n must be an int \(a thread count\), got bool True"),
    (2.0, TypeError, r"got float 2\.0"),
    ("4", TypeError, r"got str '4'"),
    (None, TypeError, r"got NoneType None"),
]


@pytest.mark.parametrize("n, error, message", BAD_COUNTS, ids=[repr(c[0])[:12] for c in BAD_COUNTS])
def test_set_num_threads_refuses_bad_counts(n, error, message):
    import pyllm

    before = pyllm.get_num_threads()
    with pytest.raises(error, match=message):
        pyllm.set_num_threads(n)
    assert pyllm.get_num_threads() == before  # nothing changed


@pytest.mark.parametrize("n, error, message", BAD_COUNTS[:6], ids=[repr(c[0])[:12] for c in BAD_COUNTS[:6]])
def test_from_pretrained_refuses_bad_n_threads(n, error, message):
    from pyllm import AutoModelForCausalLM

    with pytest.raises(error, match=message.replace("set_num_threads: n", "n_threads")):
        AutoModelForCausalLM.from_pretrained(TINY, n_threads=n)


def test_the_private_binding_refuses_too():
    # the compiled function is the last line: a count past the int range or over the cap raises
    # ValueError/TypeError there as well, never a wrapped-around count of threads
    import pyllm
    from pyllm import _C

    with pytest.raises(ValueError, match=r"set_num_threads: n must be an integer in \[1, 1024\], got 5000"):
        _C.set_num_threads(5000)
    with pytest.raises(TypeError):
        _C.set_num_threads(2**70)
    assert 1 <= pyllm.get_num_threads() <= 1024


def test_huge_omp_num_threads_is_capped():
    # it used to overflow atoi (or ask OpenMP for as many threads as it said)
    proc = subprocess.run([sys.executable, "-c", "import pyllm; print(pyllm.get_num_threads())"],
                          capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
                          env=dict(os.environ, OMP_NUM_THREADS="99999999999"))
    assert proc.returncode == 0, _describe(proc)
    assert proc.stdout.strip() == "1024"
