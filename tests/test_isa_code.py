"""The built extension runs on any x86-64: no AVX instruction (VEX/EVEX
encoded, or a ymm/zmm register) outside the per-ISA kernel namespaces.
Checked statically with objdump, since emulators do not enforce CPUID."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import pyllm
from pyllm import _C

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")

# functions that may use AVX: the kernels compiled per ISA (and their OpenMP bodies)
ISA_NAMESPACES = ("pyllm::avx2::", "pyllm::avx512::")
AVX_MNEMONIC = re.compile(r"^v[a-z0-9]+")  # every VEX/EVEX instruction starts with v
WIDE_REGISTER = re.compile(r"%[yz]mm\d+")


def _extensions():
    pkg = Path(pyllm.__file__).parent
    return sorted({Path(_C.__file__)} | set(pkg.rglob("*.so")))


def _functions(lib: Path):
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to check the instruction sets"
    out = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    name = None
    for line in out.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            name = header.group(1)
            continue
        parts = line.split("\t")
        if name and len(parts) >= 2 and re.match(r"^\s*[0-9a-f]+:$", parts[0]):
            yield name, parts[1].strip()


def test_baseline_code_has_no_avx():
    bad = {}
    checked = 0
    for lib in _extensions():
        for fn, insn in _functions(lib):
            checked += 1
            if any(ns in fn for ns in ISA_NAMESPACES):
                continue
            if AVX_MNEMONIC.match(insn.split()[0] if insn else "") or WIDE_REGISTER.search(insn):
                bad.setdefault(f"{lib.name}: {fn}", insn)
    assert checked > 10000  # the disassembly really was read
    listing = "\n".join(f"  {k}: {v}" for k, v in list(bad.items())[:20])
    assert not bad, f"{len(bad)} baseline functions use AVX instructions:\n{listing}"


def test_avx2_kernels_are_really_avx2():
    # the check above is only meaningful if the per-ISA code is where the AVX is
    if "avx2" not in pyllm.cpu_info()["available_isas"] and not pyllm.cpu_info()["features"]:
        pytest.skip("no AVX2 build")
    wide = sum(1 for fn, insn in _functions(Path(_C.__file__)) if "pyllm::avx2::" in fn and "ymm" in insn)
    assert wide > 100
