# Static checks as tests: mypy --strict over the package and ruff over the Python sources, with the
# settings in pyproject.toml. Not a style guide; a missing tool is a failure, never a skip.
"""mypy and ruff run from the repository root (found from this file's path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]


def run_tool(args: List[str]) -> subprocess.CompletedProcess[str]:
    # the interpreter running the tests, so the tools come from the `test` extra of this environment
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_repository_root_is_found() -> None:
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "pyllm" / "__init__.py").is_file(), ROOT


def test_mypy_strict_is_clean() -> None:
    r = run_tool(["mypy", "--strict", "pyllm"])
    assert r.returncode == 0, f"mypy --strict pyllm failed ({r.returncode}):\n{r.stdout}{r.stderr}"


def test_ruff_is_clean() -> None:
    r = run_tool(["ruff", "check", "pyllm", "tests", "bench", "scripts", "fuzz"])
    assert r.returncode == 0, f"ruff check failed ({r.returncode}):\n{r.stdout}{r.stderr}"
