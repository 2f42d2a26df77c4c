"""The photo path's benches: README's tables are what each bench prints from its committed JSON (so a figure
cannot drift), and the JSON holds together (counts add up, every photo accounted for, exact equals brute force)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHES = {"align_report": RESULTS / "align_report.json", "align_pays": RESULTS / "align_pays" / "align_pays.json",
           "gallery_scale": RESULTS / "gallery_scale.json"}


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", BENCHES)
def test_readme_shows_the_table_the_bench_prints_from_its_json(name):
    table = _bench(name).table(json.loads(BENCHES[name].read_text()))
    assert table.strip() and table in (ROOT / "README.md").read_text()


def test_align_report_accounts_for_every_photo():
    full = json.loads(BENCHES["align_report"].read_text())["full"]
    for name, s in full["sets"].items():
        assert s["aligned"] + sum(s["skipped"].values()) == s["photos"], name
        assert s["detection_rate"] == pytest.approx(s["aligned"] / s["photos"])
    assert sum(s["photos"] for s in full["sets"].values()) == full["photos"]
    assert len(full["misses"]) == full["photos"] - full["aligned_photos"]
    assert {m["reason"] for m in full["misses"]} <= set(full["skipped"])
    speed = json.loads(BENCHES["align_report"].read_text()).get("speed")
    if speed:
        one, two = speed["workers"]["1"]["photos_per_second"], speed["workers"]["2"]["photos_per_second"]
        assert speed["ratio_2_over_1"] == pytest.approx(two / one, rel=1e-3)


def test_align_pays_compares_the_same_pairs_three_ways():
    result = json.loads(BENCHES["align_pays"].read_text())
    assert (ROOT / result["model"]).is_file()  # the row's model, kept as ONNX
    for s in result["sets"].values():
        for way in ("aligned", "centre_crop", "fit_whole"):
            assert 0.0 <= s[way]["accuracy"] <= 1.0 and 0.0 <= s[way]["auc"] <= 1.0
        assert s["pairs"] % 10 == 0


def test_gallery_scale_exact_equals_brute_force():
    result = json.loads(BENCHES["gallery_scale"].read_text())
    assert result["top1_agreement"] == 1.0 and result["size"] == 1_000_000 and result["queries"] == 1000
    assert result["ratio"] == pytest.approx(result["exact_queries_per_second"]
                                            / result["brute_force_queries_per_second"], rel=0.02)
