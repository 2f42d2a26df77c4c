"""docs/ARCHITECTURE.md §2 names every module of the three packages, and only paths that exist.

The convention is stated at the top of §2: a module's line starts with its path from the repository root
(`facerec/data/cache.py`); a package is named by its folder (`facerec/data/`), which stands for its
`__init__.py`. Moving a module means moving its line: the test names both the missing and the stale paths.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas_core", "eval_protocols", "facerec")


def layout_lines() -> list[str]:
    """The lines of §2's layout block (the first ``` block after the §2 heading)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = re.search(r"^## 2\..*?(?=^## )", text, re.S | re.M)
    assert section, "docs/ARCHITECTURE.md has no '## 2.' section"
    block = re.search(r"^```\n(.*?)^```", section.group(0), re.S | re.M)
    assert block, "§2 of docs/ARCHITECTURE.md has no ``` layout block"
    return block.group(1).splitlines()


def named_paths(lines: list[str]) -> set[str]:
    """The path each line starts with; indented lines continue a description and name nothing."""
    return {line.split()[0] for line in lines if line and not line[0].isspace()}


def module_paths() -> list[str]:
    """Every module of PACKAGES as §2 names it."""
    paths = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            paths.append(f"{relative.parent.as_posix()}/" if path.name == "__init__.py" else relative.as_posix())
    return paths


def test_every_module_has_its_line():
    named = named_paths(layout_lines())
    missing = [path for path in module_paths() if path not in named]
    assert not missing, "docs/ARCHITECTURE.md §2 has no line for: " + ", ".join(missing)


def test_every_line_names_a_path_that_exists():
    stale = sorted(path for path in named_paths(layout_lines()) if not (ROOT / path).exists())
    assert not stale, "docs/ARCHITECTURE.md §2 names paths that do not exist: " + ", ".join(stale)
