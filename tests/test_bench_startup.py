"""bench/startup.py: one command per console script plus the baseline and `import facerec`, ratios taken to the
baseline's median, each target judged on its ratio."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def startup():
    spec = importlib.util.spec_from_file_location("startup_bench", ROOT / "bench" / "startup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["startup_bench"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("startup_bench", None)


def test_every_console_script_is_timed(startup):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    found = startup.commands(ROOT)
    assert set(found) == {"import torch", "import facerec"} | {f"{name} --help" for name in scripts}
    assert all(f"from {target.split(':')[0]} import main" in found[f"{name} --help"]
               for name, target in scripts.items())


def test_ratios_are_medians_over_the_baseline_median(startup):
    rows = startup.summary({"import torch": [4.0, 2.0, 3.0], "import facerec": [4.5, 3.0, 9.0],
                            "nas-report --help": [1.0, 0.6, 0.5]})
    assert rows["import torch"]["ratio"] == 1.0 and rows["import torch"]["met"] is None
    assert rows["import facerec"]["ratio"] == 1.5 and rows["import facerec"]["met"] is False
    assert rows["nas-report --help"]["ratio"] == 0.2 and rows["nas-report --help"]["met"] is True
    assert "| `import facerec` | 4.50 | 1.50 | ≤ 1.3 (missed) |" in startup.table(rows)


def test_a_failing_command_stops_the_bench(startup, capsys):
    with pytest.raises(SystemExit) as stop:
        startup.time_once("raise SystemExit(3)", ROOT)
    assert stop.value.code == 2 and "exited 3" in capsys.readouterr().err
