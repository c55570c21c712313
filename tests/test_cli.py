"""The `pyllm` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pyllm
from pyllm import cli


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["isa"] == pyllm.cpu_info()["isa"]


def test_info_text_via_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pyllm.cli", "info"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert f"pyllm {pyllm.__version__}" in out.stdout and "isa:" in out.stdout


def test_unknown_command_fails(capsys):
    try:
        cli.main(["frobnicate"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("an unknown command must exit with status 2")
