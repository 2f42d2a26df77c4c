"""--estimate: the worst-case trial list covers a real run; a CASIA-shaped pack's metadata gives a forecast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facerec.cli.search import main as face_search_main
from nas_core.classify.network import ClassifierSpace
from nas_core.estimate import schedule_seconds, worst_case_trials
from nas_core.genotype import Genotype
from nas_core.settings import SearchSettings

FACES = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "6", "--micro-epochs", "1",
         "--max-trials", "6", "--batch-size", "8", "--workers", "0", "--embedding-size", "32", "--no-progress",
         "--device", "cpu"]


def test_worst_case_list_is_every_phase_at_its_longest():
    settings = SearchSettings(d_min=2, d_max=5, w_min=4, w_max=10, e_min=3, micro_epochs=2)
    trials = worst_case_trials(ClassifierSpace(1, 10), settings)
    phases = [t.phase for t in trials]
    assert phases.count("depth") == 4 and phases.count("width") == 3  # D_min..D_max; W_max-2 .. W_min
    assert phases.count("micro_base") == 1 and phases.count("ops") == 5 and phases.count("kernels") == 5
    assert [t.epochs for t in trials if t.phase == "depth"] == [3, 4, 5, 6]
    assert [(t.genotype.width, t.epochs) for t in trials if t.phase == "width"] == [(8, 8), (6, 10), (4, 12)]
    assert all(t.genotype.depth == 5 for t in trials if t.phase not in ("depth",))


def test_schedule_runs_trials_in_order_on_the_workers():
    assert schedule_seconds([3.0, 1.0, 1.0, 1.0], 1) == 6.0
    assert schedule_seconds([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert schedule_seconds([3.0, 1.0, 2.0], 1, budget=2) == 5.0  # the costliest two


def _dominated(real: dict, planned: list[dict]) -> dict | None:
    """A planned trial of the same phase with no fewer epochs, no smaller depth, no smaller width."""
    genotype = Genotype.from_dict(real["genotype"])
    for plan in planned:
        other = Genotype.from_dict(plan["genotype"])
        if (plan["phase"] == real["phase"] and plan["epochs"] >= real["epochs"] and other.depth >= genotype.depth
                and other.width >= genotype.width):
            return plan
    return None


def test_estimate_covers_the_trials_of_a_real_demo_search(tmp_path, capsys):
    run = tmp_path / "run"
    assert face_search_main(["--estimate", "--output", str(run), *FACES]) == 0  # times a few steps here
    out = capsys.readouterr().out
    assert "projected:" in out and "at --parallel 1" in out and "data cache:" in out
    estimate = json.loads((run / "estimate.json").read_text())
    assert not (run / "journal.jsonl").exists() and estimate["step_source"].startswith("measured on cpu")
    assert 0 < estimate["step_seconds"]["smallest"] and estimate["cache_bytes"] == 240 * 112 * 112 * 3

    assert face_search_main(["--output", str(run), *FACES]) == 0  # the real search, in the same folder
    result = json.loads((run / "result.json").read_text())
    planned = list(estimate["trials"])
    for trial in result["trials"]:  # each real trial is matched by its own planned one
        match = _dominated(trial, planned)
        assert match is not None, trial
        planned.remove(match)
    assert result["estimate"]["actual_trials"] == len(result["trials"]) == 6
    assert result["estimate"]["projected_seconds"] > 0 and result["estimate"]["actual_seconds"] > 0


@pytest.fixture
def casia_metadata(tmp_path) -> Path:
    """CASIA-WebFace's shape without a pixel: property and train.idx (record 0, 490,623 images, 10,572 ids)."""
    pack = tmp_path / "faces_webface_112x112"
    pack.mkdir()
    (pack / "property").write_text("10572,112,112\n")
    with open(pack / "train.idx", "w") as handle:
        handle.writelines(f"{key}\t{key * 4096}\n" for key in range(1 + 490_623 + 10_572))
    return pack


def test_casia_metadata_gives_a_forecast_without_training(casia_metadata, tmp_path, capsys):
    run = tmp_path / "forecast"
    assert face_search_main(["--estimate", "--data", str(casia_metadata), "--size", "small", "--output", str(run),
                             "--parallel", "8", "--step-seconds", "0.05,0.4", "--device", "cpu"]) == 0
    estimate = json.loads((run / "estimate.json").read_text())
    assert estimate["data"]["pack_images"] == 490_623 and estimate["data"]["identities"] == 10_572
    assert estimate["data"]["train_identities"] == 10_572 - 1057  # 10% held out for verification pairs
    assert estimate["cache_bytes"] == 490_623 * 112 * 112 * 3
    assert estimate["recipe"] == "adaface" and estimate["batch_size"] == 512
    assert estimate["trial_count"] == 46 + 8 + 1 + 2 * 49  # Grow R-10..R-100, Prune 30..16, micro 1 + 2 x 49
    assert estimate["step_source"] == "assumed (--step-seconds)"
    assert 0 < estimate["hours"]["8"] < estimate["hours"]["1"]
    assert sorted(p.name for p in run.iterdir()) == ["estimate.json"]  # nothing trained, nothing else written
    assert "at --parallel 8" in capsys.readouterr().out


def test_nas_search_estimate_covers_its_real_search(tmp_path, capsys):
    from nas_core.cli.search import main as search_main

    digits = ["--d-min", "2", "--d-max", "3", "--w-max", "6", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
              "--device", "cpu"]
    run = tmp_path / "digits"
    assert search_main([*digits, "--estimate", "--parallel", "2", "--output", str(run)]) == 0
    assert "at --parallel 2" in capsys.readouterr().out
    estimate = json.loads((run / "estimate.json").read_text())
    assert sorted(p.name for p in run.iterdir()) == ["estimate.json"]
    assert search_main([*digits, "--output", str(run)]) == 0
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    planned = list(estimate["trials"])
    for trial in journal:
        match = _dominated(trial, planned)
        assert match is not None, trial
        planned.remove(match)
    result = json.loads((run / "result.json").read_text())
    assert result["estimate"]["actual_trials"] == result["trials"] == len(journal)
