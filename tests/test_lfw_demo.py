"""Real in-the-wild faces end to end (tools/lfw_demo.py on lfw_train): ~40 min on 2 shared CPU cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "lfw_demo.py"


def _lfw_dir() -> Path:
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "lfw_train"
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def test_split_is_seeded_by_people_and_disjoint(tmp_path):
    sys.path.insert(0, str(TOOL.parent))
    try:
        from lfw_demo import split_people
    finally:
        sys.path.pop(0)
    source = tmp_path / "faces"
    for i in range(10):
        (source / f"person_{i}").mkdir(parents=True)
        cv2.imwrite(str(source / f"person_{i}" / "a.jpg"), np.zeros((8, 8), np.uint8))
    train, unseen = split_people(source, tmp_path / "w1", 0.2, seed=0)
    again = split_people(source, tmp_path / "w2", 0.2, seed=0)
    assert (train, unseen) == again and len(unseen) == 2 and not set(train) & set(unseen)
    assert sorted(p.name for p in (tmp_path / "w1" / "unseen_images").iterdir()) == unseen
    assert split_people(source, tmp_path / "w3", 0.2, seed=1)[1] != unseen


@pytest.mark.slow
def test_lfw_search_train_export_beats_raw_pixels_by_ten_points(tmp_path):
    work = tmp_path / "lfw"
    proc = subprocess.run([sys.executable, str(TOOL), "--lfw", str(_lfw_dir()), "--work", str(work)],
                          capture_output=True, text=True)
    summary = json.loads((work / "lfw_demo.json").read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best_raw = max(summary["raw_pixels"]["accuracy"], summary["raw_pixels_centred"]["accuracy"])
    assert summary["onnx"]["accuracy"] >= best_raw + 0.10
    assert summary["collapse"]["warning"] is None
    assert summary["train_recipe"]["name"] == "small"
