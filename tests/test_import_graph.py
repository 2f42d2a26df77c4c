"""The package graph has no cycle: facerec -> nas_core, facerec -> eval_protocols, eval_protocols -> nas_core's
shared helpers only; nas_core imports neither facerec nor eval_protocols; and no two modules of the three packages
import each other, directly or through others, counting imports inside functions (docs/ARCHITECTURE.md §2)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What eval_protocols may take from nas_core: the shared helpers, not the search.
_SHARED_HELPERS = {"nas_core", "nas_core.errors", "nas_core.io", "nas_core.safe_pickle", "nas_core.registry"}


PACKAGES = ("nas_core", "facerec", "eval_protocols")


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


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    """module -> the modules of the three packages it imports anywhere in its file (relative imports resolved;
    ``from a.b import c`` counts a.b.c when that is a module, else a.b; a module's own parent packages are not
    edges: importing a submodule runs its package's __init__ anyway)."""
    paths = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets += [base] + [f"{base}.{alias.name}" for alias in node.names]
        graph[module] = {t for t in map(known, targets) if t and t != module and not module.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_cycle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    graph = _module_graph()
    assert "facerec.model.backbones" in graph and "nas_core.search" in graph  # the walk found the packages
    cycles = _cycles(graph)
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in cycles)
