"""Shared fixtures: the ISA paths to run kernel tests on, a seeded generator,
and the CI rule that a skipped test is a failed test."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import pyllm

# test helpers (llama_ref.py) import by name; --import-mode=importlib adds no path
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _isas():
    # PYLLM_ISA pins the run to one path (CI runs the kernel tests again with scalar)
    forced = os.environ.get("PYLLM_ISA")
    if forced and forced != "auto":
        return [forced]
    return pyllm.cpu_info()["available_isas"]


@pytest.fixture(params=_isas())
def isa(request):
    """Runs the test once per kernel ISA this build and CPU support."""
    before = pyllm.cpu_info()["isa"]
    pyllm.set_isa(request.param)
    yield request.param
    pyllm.set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_addoption(parser):
    parser.addoption("--fuzz-examples", type=int, default=200, help="hypothesis examples for fuzz tests")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # In CI a missing dependency must not hide a test: report skips as failures.
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI (skips are failures here): {reason}"


@pytest.fixture(scope="session")
def smollm_path():
    """The default model's GGUF file, fetched into the cache on first use."""
    from pyllm.hub import resolve_model_file

    return resolve_model_file("SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def smollm(smollm_path):
    from pyllm import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm_path, n_ctx=1024)
