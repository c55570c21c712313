# The import structure of pyllm.models, pyllm.generation and pyllm.tokenizers: no cycles at import time, every
# module importable on its own, and the layering DESIGN.md asks for. Not a check of what the modules do.
"""Import-time cycles are found from the sources (module-level imports, not
those under ``if TYPE_CHECKING:`` or inside functions); each module is then
imported alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pyllm.models", "pyllm.generation", "pyllm.tokenizers")


def module_files(root: Path, top: str = "pyllm") -> Dict[str, Path]:
    """Dotted name -> source file of every Python module under ``root / top``."""
    out = {}
    for p in sorted((root / top).rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(body: List[ast.stmt], lazy: bool) -> Iterator[ast.stmt]:
    """The import statements that run when the module is imported (with ``lazy``: also those in
    functions); never those under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                yield from _imports(node.body, lazy)
            yield from _imports(node.orelse, lazy)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _imports(block, lazy)
        elif isinstance(node, (ast.With, ast.For, ast.While, ast.ClassDef)):
            yield from _imports(node.body, lazy)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lazy:
            yield from _imports(node.body, lazy)


def import_graph(modules: Dict[str, Path], lazy: bool = False) -> Dict[str, Set[str]]:
    """Module -> the modules of ``modules`` it imports, with the packages whose ``__init__`` runs on
    the way (importing ``a.b.c`` runs ``a.b`` first); a package's own parents are left out."""
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: Set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")).body, lazy):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = package[: len(package) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                names = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for full in names:
                parts = full.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                        targets.add(prefix)
        graph[name] = targets
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(v: str) -> Optional[List[str]]:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def within(graph: Dict[str, Set[str]], prefixes: Tuple[str, ...]) -> Dict[str, Set[str]]:
    return {m: {t for t in ts if t.startswith(prefixes)} for m, ts in graph.items() if m.startswith(prefixes)}


MODULES = module_files(ROOT)
SCOPED = sorted(m for m in MODULES if m.startswith(PACKAGES))


def test_the_graph_sees_a_cycle_when_there_is_one(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..b import g\n"
                                      "def f():\n    from .. import b\n")
    (pkg / "b.py").write_text("from .sub.a import f\n")
    graph = import_graph(module_files(tmp_path, "pkg"))
    assert graph["pkg.b"] == {"pkg.sub", "pkg.sub.a"} and graph["pkg.sub.a"] == set()
    assert find_cycle(graph) is None  # the TYPE_CHECKING and the in-function imports do not run at import time
    (pkg / "sub" / "a.py").write_text("from ..b import g\n")
    assert find_cycle(import_graph(module_files(tmp_path, "pkg"))) == ["pkg.b", "pkg.sub", "pkg.sub.a", "pkg.b"]


def test_models_generation_and_tokenizers_have_no_import_cycle() -> None:
    graph = within(import_graph(MODULES), PACKAGES)
    assert len(graph) >= 30 and "pyllm.models.base" in graph["pyllm.models.decoder"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layering() -> None:
    # DESIGN.md: tokenizers do not import models; the decoding loop does not either (models build on it),
    # not even inside a function; and a model module imports the shared modules, not another model class
    graph = import_graph(MODULES, lazy=True)
    for name in SCOPED:
        if name.startswith(("pyllm.tokenizers", "pyllm.generation")):
            bad = sorted(t for t in graph[name] if t.startswith("pyllm.models"))
            assert not bad, f"{name} imports {bad}"
    eager = import_graph(MODULES)
    for model in ("pyllm.models.decoder", "pyllm.models.gpt2"):
        other = {"pyllm.models.decoder", "pyllm.models.gpt2", "pyllm.models.auto"} - {model}
        assert not eager[model] & other, f"{model} imports {sorted(eager[model] & other)}"


@pytest.mark.parametrize("name", SCOPED)
def test_each_module_imports_alone(name: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import importlib; importlib.import_module({name!r})"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"import {name} in a fresh interpreter failed:\n{r.stderr}"
