"""Package code reads in pieces a reader can hold: no function or method over 60 lines (decorators and docstring
included) in nas_core/, facerec/ or eval_protocols/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60


def test_no_function_over_60_lines():
    long = []
    for package in ("nas_core", "facerec", "eval_protocols"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    if node.end_lineno - first + 1 > LIMIT:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                    f"({node.end_lineno - first + 1} lines)")
    assert not long, long
