"""The face issue's end-to-end check on real faces (ORL): tools/orl_demo.py, ~6 min on 2 CPUs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "orl_demo.py"


@pytest.mark.slow
def test_orl_search_train_export_beats_raw_pixels(orl_dir, tmp_path):
    work = tmp_path / "orl"
    proc = subprocess.run([sys.executable, str(TOOL), "--orl", str(orl_dir), "--work", str(work)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((work / "orl_demo.json").read_text())
    assert summary["heldout_pairs"] == 600
    assert summary["onnx"]["accuracy"] > summary["raw_pixels"]["accuracy"]
    assert summary["onnx"]["accuracy"] == pytest.approx(summary["pt"]["accuracy"], abs=1e-9)
    assert summary["search_train_export_seconds"] < 15 * 60
