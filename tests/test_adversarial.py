# The adversarial suite: generated bad input for every public entry point (tests/adversarial_probes.py),
# each family in a child process with a timeout and a memory cap. Not the unit tests of each fix.
"""A child must finish (no hang), exit 0 (no signal, no finding) and stay under the
address-space cap (RLIMIT_AS: Linux does not enforce RLIMIT_RSS, and an allocation the cap
refuses surfaces as a MemoryError, which the probes count as a finding). The default run is
short and derandomized, so CI sees the same examples every time; ``pytest -m slow`` runs each
family with ``--fuzz-examples`` x 5 fresh random examples."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

PROBES = Path(__file__).parent / "adversarial_probes.py"
FAMILIES = ["ops", "tokenizers", "gguf", "hfdir", "generate", "trainer", "cli"]
MEM_MB = 3072
SHORT = {"ops": 60, "tokenizers": 60, "gguf": 40, "hfdir": 40, "generate": 60, "trainer": 40, "cli": 40}


def _run(family: str, examples: int, fixed: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEM_MB << 20, MEM_MB << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    try:
        return subprocess.run([sys.executable, str(PROBES), family, str(examples), "0" if fixed else "1"],
                              capture_output=True, text=True, timeout=timeout, preexec_fn=limit, env=env,
                              cwd=tempfile.gettempdir())  # the installed pyllm, not the source tree
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-3000:]
        pytest.fail(f"{family}: no answer within {timeout} s (a hang or unbounded work):\n{tail!r}")


def _check(family: str, r: subprocess.CompletedProcess[str]) -> None:
    if r.returncode < 0:
        pytest.fail(f"{family}: the child died of signal {-r.returncode}:\n{r.stderr[-4000:]}")
    assert r.returncode == 0, f"{family}: a finding:\n{r.stderr[-6000:]}"
    assert "no finding" in r.stdout, r.stdout
    # the probes must reach past the refusals: some inputs are accepted and their results checked
    accepted = int(r.stdout.split("(")[-1].split()[0])
    assert accepted > 0 or family == "cli", r.stdout


@pytest.mark.parametrize("family", FAMILIES)
def test_adversarial_short(family):
    _check(family, _run(family, SHORT[family], fixed=True, timeout=600))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_adversarial_long(family, request):
    n = 5 * int(request.config.getoption("--fuzz-examples"))
    _check(family, _run(family, n, fixed=False, timeout=3600))


def test_probes_notice_a_wrong_answer(tmp_path):
    # the ops probe compares with numpy: a softmax that is off is a finding, not a pass
    code = (f"import sys; sys.path.insert(0, {str(PROBES.parent)!r}); import adversarial_probes as a; "
            "import pyllm.ops as ops; real = ops.softmax; "
            "ops.softmax = lambda x, axis=-1: real(x, axis=axis) * 1.01; a.probe_ops(80, True)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       cwd=tempfile.gettempdir())
    assert r.returncode != 0 and "softmax" in r.stderr, r.stderr[-2000:]


def test_probes_notice_an_unclear_error():
    code = (f"import sys; sys.path.insert(0, {str(PROBES.parent)!r}); import adversarial_probes as a; "
            "a.attempt(lambda: [][1.5])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode != 0 and "not a clear refusal: TypeError" in r.stderr, r.stderr[-2000:]
