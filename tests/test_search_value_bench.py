"""bench/search_value.py's table: means and sd over seeds, RI against the random nets, and the quiet latency
pass taking over the figures measured after each training (README "Does the search pay?")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_value_bench", ROOT / "bench" / "search_value.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained(net: str, seed: int, accuracy: float, latency: float, cpu_seconds: float) -> dict:
    return {"step": f"{net}-s{seed}", "net": net, "seed": seed, "accuracy": accuracy, "std": 0.015,
            "train_wall_seconds": 2 * cpu_seconds, "train_cpu_seconds": cpu_seconds, "params": 1000, "mflops": 1.0,
            "latency_ms": latency}


def _journal(bench, folder: Path, rows: list[dict]):
    path = folder / "journal.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return bench.Journal(path)


def test_table_means_seeds_and_scores_the_found_net_against_the_random_ones(bench, tmp_path):
    rows = [_trained("found", 0, 0.83, 0.8, 600), _trained("found", 1, 0.85, 1.2, 720),
            _trained("random1", 0, 0.82, 0.9, 300), _trained("random2", 0, 0.80, 2.0, 900),
            {"step": "search", "cpu_seconds": 450.0}]
    result = bench.table(_journal(bench, tmp_path, rows))
    found = next(r for r in result["rows"] if r["net"] == "found")
    # By hand: mean(83, 85) = 84, sample sd = sqrt(2) = 1.414..., CPU minutes mean(600, 720) / 60 = 11.
    assert found["seeds"] == 2 and found["accuracy"] == pytest.approx(84.0)
    assert found["sd"] == pytest.approx(2 ** 0.5) and found["train_cpu_minutes"] == pytest.approx(11.0)
    # RI = 100 * (84 - 81) / 81; the found net is above both random nets.
    assert result["ri"] == pytest.approx(100 * 3 / 81) and result["found_above_every_random"] is True
    assert result["search_cpu_minutes"] == pytest.approx(7.5)
    # No quiet pass yet: the latency of a net is the one measured after its first training.
    assert found["latency_ms"] == 0.8 and result["latency"] == "after each training"


def test_quiet_latency_pass_replaces_the_figures_taken_after_each_training(bench, tmp_path):
    rows = [_trained("found", 0, 0.83, 0.8, 600), _trained("random1", 0, 0.86, 0.9, 300),
            {"step": "latency", "threads": 1, "repeats": 50, "ms": {"found": 0.61, "random1": 0.74}},
            {"step": "latency", "threads": 1, "repeats": 80, "ms": {"found": 0.63, "random1": 0.71}}]
    result = bench.table(_journal(bench, tmp_path, rows))
    by_net = {r["net"]: r for r in result["rows"]}
    assert by_net["found"]["latency_ms"] == 0.63 and by_net["random1"]["latency_ms"] == 0.71  # the latest pass
    assert result["latency"].startswith("one quiet") and result["found_above_every_random"] is False
    assert result["ri"] < 0


def test_latency_pass_without_a_search_or_with_no_rounds_is_one_error_line(bench, tmp_path, capsys):
    _journal(bench, tmp_path, [_trained("found", 0, 0.83, 0.8, 600)])
    for rounds in ("0", "5"):
        assert bench.main(["--work", str(tmp_path), "--latency", rounds]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "--latency" in err[0]
