"""The fault-injection points the kill/resume tests use (nas_core.faults)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, dies_on", [("2", "b.json"), ("a.json:2", "a.json (2nd)"), ("c.json:1", None)])
def test_fail_in_write_dies_between_the_temp_file_and_the_rename(tmp_path, value, dies_on):
    code = ("import sys\nfrom nas_core.io import atomic_write_text\n"
            "for name in ('a.json', 'b.json', 'a.json'):\n"
            f"    atomic_write_text({str(tmp_path)!r} + '/' + name, name)\n    print(name, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FACENAS_FAIL_IN_WRITE": value})
    if dies_on is None:
        assert proc.returncode == 0 and proc.stdout.split() == ["a.json", "b.json", "a.json"]
        return
    assert proc.returncode == 137 and "fault injection: killed writing" in proc.stderr
    temps = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1  # written and left behind, never renamed: as a kill at that instant would
    if dies_on == "b.json":
        assert proc.stdout.split() == ["a.json"] and not (tmp_path / "b.json").exists()
    else:
        assert proc.stdout.split() == ["a.json", "b.json"] and (tmp_path / "a.json").read_text() == "a.json"
