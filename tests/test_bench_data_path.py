"""bench/data_path.py --tiny runs end to end on the CPU and prints every rate and both ratios."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "data_path.py"


def test_data_path_bench_tiny_prints_rates_and_ratios(capsys):
    spec = importlib.util.spec_from_file_location("data_path_bench", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["data_path_bench"] = module
    try:
        spec.loader.exec_module(module)
        assert module.main(["--tiny", "--device", "cpu", "--workers", "0"]) == 0
    finally:
        sys.modules.pop("data_path_bench", None)
    out = capsys.readouterr().out
    assert "320 images of 32 identities" in out and "CASIA-WebFace's cache: 18.5 GB" in out
    for name in ("(a) jpeg", "(b) cache", "(c) compute", "(b) + step"):
        rate = re.search(re.escape(name) + r"\s+([0-9.]+) images/s", out)
        assert rate and float(rate.group(1)) > 0, (name, out)
    assert re.search(r"data path ratio \(b\) cache / \(a\) jpeg: [0-9.]+x", out), out
    assert "round 1: (a) jpeg" in out
    assert re.search(r"training step ratio \(b\) \+ step / \(c\) compute: [0-9.]+ ", out), out
