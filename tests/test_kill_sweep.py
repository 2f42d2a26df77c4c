"""Kill anywhere, resume to the same result: bench/kill_sweep.py's sweep of each long command (slow: ~10-15 min
each on two busy CPUs). The default suite samples the same kinds of kill point in test_nas_cli.py (a trial
boundary), test_face_search.py (a trial boundary, a step) and test_face_train.py (a step, a checkpoint
write, SIGTERM)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "kill_sweep.py"


def _kill_sweep():
    if "kill_sweep" not in sys.modules:  # registered first: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location("kill_sweep", _SCRIPT)
        sys.modules["kill_sweep"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["kill_sweep"])
    return sys.modules["kill_sweep"]


def test_kill_steps_are_spread_over_the_run():
    spread = _kill_sweep().spread
    assert spread(100, 5) == [1, 26, 50, 75, 100]
    assert spread(3, 5) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["nas-search", "facerec-search", "facerec-train"])
def test_every_kill_point_resumes_to_the_uninterrupted_result(command, tmp_path):
    sweep = _kill_sweep()
    for target in sweep.commands([command], tmp_path):
        tally = sweep.sweep(target, tmp_path / target.name.replace(" ", "_").replace("--", ""))
        assert not tally.failures, tally.failures
        assert tally.points == tally.interrupted == tally.identical
        # Every trial boundary plus at least 5 steps and a write (searches); 6 steps, a write (facerec-train).
        assert tally.points >= (7 if command == "facerec-train" else 5 + 1 + 2)
        assert tally.refused == tally.refusals == (3 if command == "facerec-train" else 0)
