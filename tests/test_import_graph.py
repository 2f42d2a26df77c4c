"""The package graph has no cycle: facerec -> nas_core, facerec -> eval_protocols, eval_protocols -> nas_core's
shared helpers only; nas_core imports neither facerec nor eval_protocols (docs/ARCHITECTURE.md §2)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What eval_protocols may take from nas_core: the shared helpers, not the search.
_SHARED_HELPERS = {"nas_core", "nas_core.errors", "nas_core.io", "nas_core.safe_pickle", "nas_core.registry"}


def _imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported module) for every import statement in the package, lazy ones included."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.lineno, node.module))
    return found


@pytest.mark.parametrize("package, forbidden", [("nas_core", ("facerec", "eval_protocols")),
                                                ("eval_protocols", ("facerec",))])
def test_no_import_of_higher_packages(package, forbidden):
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in _imports(package) if mod.split(".")[0] in forbidden]
    assert not bad, bad


def test_eval_protocols_takes_only_shared_helpers_from_nas_core():
    bad = [f"{f}:{line} imports {mod}" for f, line, mod in _imports("eval_protocols")
           if mod.split(".")[0] == "nas_core" and mod not in _SHARED_HELPERS]
    assert not bad, bad


def test_fresh_interpreter_imports_stay_in_their_layer():
    code = f"""
import importlib, pkgutil, sys
sys.path.insert(0, {str(ROOT)!r})
def load_all(name):
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
load_all("nas_core")
assert "eval_protocols" not in sys.modules and "facerec" not in sys.modules, sorted(
    m for m in sys.modules if m.startswith(("eval_protocols", "facerec")))
load_all("eval_protocols")
assert "facerec" not in sys.modules, sorted(m for m in sys.modules if m.startswith("facerec"))
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
