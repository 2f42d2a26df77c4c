"""facerec-search: the demo run's result contract, kill + resume to the same genotype, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facerec.cli.search import main as search_main
from facerec.data.demo import DEMO_SEARCH, demo_identities, demo_pack
from nas_core.genotype import Genotype

# Tiny settings: Grow d4 -> d5 at width 6, Prune to 4, then micro trials; 5 trials in all.
_TINY = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "6", "--micro-epochs", "1",
         "--max-trials", "5", "--batch-size", "8", "--workers", "0", "--embedding-size", "32", "--no-progress"]



@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    return demo_pack(tmp_path_factory.mktemp("pack"), num_identities=6, images_per_identity=6)


def test_demo_set_is_deterministic_and_identity_structured():
    a, b = demo_identities(3, 4), demo_identities(3, 4)
    assert all((x == y).all() for fa, fb in zip(a, b) for x, y in zip(fa, fb))
    assert a[0][0].shape == (112, 112, 3) and a[0][0].dtype.name == "uint8"
    flat = [[im.astype(float).ravel() for im in face] for face in a]
    same = sum(((f[0] - f[1]) ** 2).mean() for f in flat) / 3
    different = sum(((flat[i][0] - flat[j][0]) ** 2).mean() for i in range(3) for j in range(3) if i != j) / 6
    assert same < different  # images of one identity are closer than images of different ones


def test_search_without_data_runs_the_demo_and_writes_the_contract(tmp_path, capsys):
    from facerec.model.checkpoint import load_backbone

    run = tmp_path / "demo"
    rc = search_main(["--size", "small", "--output", str(run), "--max-trials", "2", "--w-max", "4",
                      "--d-max", "5", "--no-progress"])
    assert rc == 0
    log = (run / "search.log").read_text()
    assert "no --data: searching on the built-in synthetic demo face set" in log
    result = json.loads((run / "result.json").read_text())
    genotype = Genotype.from_dict(result["genotype"])
    assert set(result) >= {"genotype", "params", "fitness", "trials", "search_seconds", "settings"}
    assert len(result["trials"]) == 2 and 0 <= result["fitness"] <= 100
    assert result["settings"]["w_max"] == 4  # an explicit flag overrides the demo budget
    assert result["settings"]["e_min"] == DEMO_SEARCH["e_min"]
    assert len((run / "journal.jsonl").read_text().splitlines()) == 2
    settings = json.loads((run / "settings.json").read_text())
    assert settings["options"]["data"] is None
    model, ckpt = load_backbone(run / "model.pt")  # facerec-eval / facerec-export take it
    assert Genotype.from_dict(ckpt["genotype"]) == genotype
    assert ckpt["fitness"] == pytest.approx(result["fitness"])
    assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 128)
    assert not (run / "trials").exists()
    assert Genotype.load(run / "result.json") == genotype  # facerec-train --genotype RUN/result.json


@pytest.fixture(scope="module")
def straight(tiny_pack, tmp_path_factory) -> Path:
    """The uninterrupted search, on one thread as the killed ones run (a module fixture is set up before
    conftest's function-scoped one-thread fixture; float sums depend on the thread count)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert search_main(["--output", str(run), "--data", str(tiny_pack), "--holdout-ids", "2", *_TINY]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def _key_fields(run: Path) -> list[dict]:
    """The journal without what differs from run to run (timings)."""
    lines = (run / "journal.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "time")} for line in lines]


# Killed once trials 0 and 1 are journaled, or inside trial 2 (24 training images, batch 8: 3 steps an epoch;
# trials of 1, 2 and 4 epochs: steps 1-3, 4-9, 10-21).
@pytest.mark.parametrize("fault", [("FACENAS_FAIL_AFTER_TRIALS", "2"), ("FACENAS_FAIL_AFTER_STEPS", "14")])
def test_killed_search_resumes_to_the_uninterrupted_journal(fault, straight, tiny_pack, tmp_path):
    common = ["--data", str(tiny_pack), "--holdout-ids", "2", *_TINY]
    expected = json.loads((straight / "result.json").read_text())
    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-m", "facerec.cli.search", "--output", str(run), *common],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", fault[0]: fault[1]})
    assert proc.returncode == 137 and "fault injection: killed" in proc.stderr, proc.stderr[-2000:]
    done_before = len((run / "journal.jsonl").read_text().splitlines())
    assert done_before == 2 and not (run / "result.json").exists()
    assert search_main(["--resume", str(run), "--no-progress"]) == 0
    resumed = json.loads((run / "result.json").read_text())
    assert resumed["genotype"] == expected["genotype"] and resumed["fitness"] == expected["fitness"]
    assert _key_fields(run) == _key_fields(straight)  # same trials, same fitness: none trained twice
    assert f"journal: {done_before} finished trial(s) will be reused" in (run / "search.log").read_text()


def test_new_search_refuses_a_folder_holding_a_search(tiny_pack, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "journal.jsonl").write_text('{"x": 1}\n')
    rc = search_main(["--data", str(tiny_pack), "--output", str(run), *_TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--resume" in err[0]


@pytest.mark.parametrize("bad", ["missing", "not_a_pack"])
def test_bad_data_exits_2_with_one_line(bad, tmp_path, capsys):
    data = tmp_path / "data"
    if bad == "not_a_pack":
        data.mkdir()
        (data / "train.rec").write_bytes(b"not a record file")
    rc = search_main(["--data", str(data), "--output", str(tmp_path / "run"), *_TINY])
    err = capsys.readouterr().err.strip().splitlines()
    said = f"error: --data {data}: expected an existing folder" if bad == "missing" else f"error: {data}"
    assert rc == 2 and len(err) == 1 and err[0].startswith(said)
    assert not (tmp_path / "run").exists()  # nothing written half-way


def test_resume_of_a_folder_without_settings_exits_2(tmp_path, capsys):
    rc = search_main(["--resume", str(tmp_path)])
    assert rc == 2 and "settings.json: expected" in capsys.readouterr().err


@pytest.mark.slow
def test_default_demo_search_then_train(tmp_path):
    """The README quickstart: `facerec-search --size small --output runs/demo` (~1-3 min on 2 CPUs)."""
    from facerec.cli.train import main as train_main

    run = tmp_path / "demo"
    assert search_main(["--size", "small", "--output", str(run), "--no-progress"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert len(result["trials"]) == 8 and (run / "model.pt").is_file()
    # Chance on the held-out pairs is 50 %: the found net's fitness was 70.0 % when this test was written.
    assert result["fitness"] >= 60, result["fitness"]
    out = tmp_path / "train"
    assert train_main(["--genotype", str(run / "result.json"), "--output", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] > 0 and metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    assert metrics["best_score"] >= 0.6, metrics["best_score"]  # 0.73 when written (chance 0.5)
