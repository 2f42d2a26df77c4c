"""nas-search / nas-train / nas-study end to end on the embedded digits set, including kill-and-resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats

from nas_core.checkpoint import build_searched, load_weights, read_checkpoint
from nas_core.classify.network import ClassifierSpace
from nas_core.cli.search import main as search_main
from nas_core.cli.study import main as study_main
from nas_core.cli.train import main as train_main
from nas_core.genotype import Genotype

# Small enough to finish in seconds on one CPU thread, large enough to visit every phase (14 trials).
SEARCH_ARGS = ["--d-min", "2", "--d-max", "4", "--w-max", "8", "--w-min", "4", "--e-min", "1",
               "--micro-epochs", "1", "--device", "cpu"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "digits"
    assert search_main(SEARCH_ARGS + ["--output", str(run)]) == 0
    return run


def test_search_writes_the_result_contract(digits_run):
    result = json.loads((digits_run / "result.json").read_text())
    assert set(result["genotype"]) == {"depth", "width", "ops", "kernels"}
    genotype = Genotype.from_dict(result["genotype"])
    assert 2 <= genotype.depth <= 4 and 4 <= genotype.width <= 8
    assert set(genotype.ops) <= {"sep", "conv"}
    assert result["params"] == ClassifierSpace(1, 10).count_params(genotype)
    assert 0 < result["fitness"] <= 100 and result["search_seconds"] > 0
    assert result["settings"]["search"]["w_max"] == 8 and result["settings"]["dataset"] == "digits"
    journal = (digits_run / "journal.jsonl").read_text().splitlines()
    assert result["trials"] == len(journal) >= 5
    phases = {json.loads(line)["phase"] for line in journal}
    assert {"depth", "width", "micro_base", "ops", "kernels"} <= phases
    log = (digits_run / "search.log").read_text()
    assert "trial   0 depth: d2-w8-ss-33 E=1" in log and "-> baseline" in log
    settings = json.loads((digits_run / "settings.json").read_text())
    # digits trains on 8x8 images (its crop): the space's input size, what MFLOPs/latency are measured at
    assert settings["space"]["task"] == {"in_channels": 1, "num_classes": 10, "image_size": 8}


def test_search_refuses_to_overwrite_a_run(digits_run, capsys):
    assert search_main(SEARCH_ARGS + ["--output", str(digits_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a new output folder" in err[0]


def _key_fields(run: Path) -> list[dict]:
    """The journal without what differs from run to run (timings)."""
    lines = (run / "journal.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "time")} for line in lines]


def test_killed_search_resumes_to_the_same_genotype(digits_run, tmp_path):
    run = tmp_path / "killed"
    # Killed (as by SIGKILL: nas_core.faults) right after the 3rd trial is journaled.
    proc = subprocess.run([sys.executable, "-m", "nas_core.cli.search", *SEARCH_ARGS, "--output", str(run)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FACENAS_FAIL_AFTER_TRIALS": "3"})
    assert proc.returncode == 137 and "fault injection: killed after trial 3" in proc.stderr, proc.stderr[-2000:]
    assert not (run / "result.json").exists() and len((run / "journal.jsonl").read_text().splitlines()) == 3
    assert search_main(["--resume", str(run)]) == 0
    resumed = json.loads((run / "result.json").read_text())
    straight = json.loads((digits_run / "result.json").read_text())
    assert resumed["genotype"] == straight["genotype"]
    assert resumed["fitness"] == straight["fitness"] and resumed["trials"] == straight["trials"]
    assert _key_fields(run) == _key_fields(digits_run)
    assert "journal: 3 finished trial(s) will be reused" in (run / "search.log").read_text()


def test_replay_cli_reproduces_an_authors_trace(seed_traces_dir, tmp_path):
    trace = json.loads((seed_traces_dir / "fashionmnist_64.json").read_text())
    assert search_main(["--replay", str(seed_traces_dir / "fashionmnist_64.json"), "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    logged = trace["result"]
    assert result["genotype"]["depth"] == logged["depth"] and result["genotype"]["width"] == logged["final_width"]
    assert result["genotype"]["ops"] == [("sep", "conv")[o] for o in logged["ops"]]
    assert result["genotype"]["kernels"] == logged["kernels"] and result["params"] == logged["params"]
    assert result["macro_genotype"]["width"] == logged["macro_width"]
    assert result["trials"] == len(trace["candidates"])
    assert search_main(["--replay", str(seed_traces_dir / "fashionmnist_64.json"), "--max-trials", "5",
                        "--output", str(tmp_path / "cut")]) == 0
    assert json.loads((tmp_path / "cut" / "result.json").read_text())["trials"] == 5


def test_replay_of_a_run_folder_matches_it(digits_run, tmp_path):
    assert search_main(["--replay", str(digits_run), "--output", str(tmp_path)]) == 0
    replayed = json.loads((tmp_path / "result.json").read_text())
    assert replayed["genotype"] == json.loads((digits_run / "result.json").read_text())["genotype"]


def test_train_found_network(digits_run, tmp_path):
    out = tmp_path / "final"
    assert train_main(["--genotype", str(digits_run / "result.json"), "--dataset", "digits", "--epochs", "2",
                       "--output", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    genotype = Genotype.from_dict(json.loads((digits_run / "result.json").read_text()))
    assert metrics["genotype"] == genotype.to_dict() and len(metrics["test_accuracies"]) == 2
    assert metrics["test_accuracy"] == metrics["test_accuracies"][-1]
    # The checkpoint rebuilds its model with no other input (ARCHITECTURE §2).
    ckpt = read_checkpoint(out / "model.pt")  # weights_only=True
    model = build_searched(ckpt)
    load_weights(model, ckpt["model"], "model.pt")
    assert ckpt["space"]["name"] == "fcn" and ckpt["genotype"] == genotype.to_dict()
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]
    macro = tmp_path / "macro"
    assert train_main(["--genotype", str(digits_run / "result.json"), "--dataset", "digits", "--epochs", "1",
                       "--final-width", "macro", "--output", str(macro), "--device", "cpu"]) == 0
    macro_width = json.loads((digits_run / "result.json").read_text())["macro_genotype"]["width"]
    assert json.loads((macro / "metrics.json").read_text())["genotype"]["width"] == macro_width


def test_killed_training_resumes_from_its_run_folder(digits_run, tmp_path, capsys):
    args = ["--genotype", str(digits_run / "result.json"), "--dataset", "digits", "--epochs", "2", "--device", "cpu"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train_main([*args, "--output", str(straight), "--no-progress"]) == 0
    # Killed (as by SIGKILL: nas_core.faults) in epoch 2 (23 steps an epoch): checkpoint.pt holds epoch 1.
    proc = subprocess.run([sys.executable, "-m", "nas_core.cli.train", *args, "--output", str(killed)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "FACENAS_FAIL_AFTER_STEPS": "30"})
    assert proc.returncode == 137 and not (killed / "model.pt").exists(), proc.stderr[-2000:]
    assert train_main([*args, "--resume", str(killed), "--output", str(straight)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output {straight}: expected the folder --resume continues "
                                               f"({killed}), or no --output")
    assert train_main([*args, "--resume", str(killed)]) == 0
    resumed, uninterrupted = (json.loads((run / "metrics.json").read_text()) for run in (killed, straight))
    assert resumed["test_accuracies"] == uninterrupted["test_accuracies"]
    assert resumed["train_accuracies"] == uninterrupted["train_accuracies"]
    assert train_main([*args, "--epochs", "3", "--resume", str(killed)]) == 2  # another schedule: another run
    assert "expected the same training settings" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["wrong-lengths", "missing", "not-json"])
def test_train_rejects_bad_genotype_files(case, tmp_path, capsys):
    path = tmp_path / "result.json"
    if case == "wrong-lengths":
        path.write_text(json.dumps({"genotype": {"depth": 3, "width": 8, "ops": ["sep"], "kernels": [3, 3, 3]}}))
    elif case == "not-json":
        path.write_text("{depth: 3")
    code = train_main(["--genotype", str(path), "--dataset", "digits", "--epochs", "1",
                       "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert {"wrong-lengths": "expected 3 ops (one per layer), got 1", "missing": "file not found",
            "not-json": "expected JSON"}[case] in err[0]
    assert str(path) in err[0]


def test_resume_of_a_missing_run_exits_2(tmp_path, capsys):
    assert search_main(["--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --resume {tmp_path / 'nope'}: expected an existing folder (not found)"]


def test_random_study_reports_ri_of_its_rows(digits_run, tmp_path):
    out = tmp_path / "random"
    args = ["random", "--run", str(digits_run), "--output", str(out), "--samples", "2", "--epochs", "1",
            "--device", "cpu"]
    assert study_main(args) == 0
    report = json.loads((out / "random.json").read_text())
    randoms = [row["test_accuracy"] for row in report["random"]]
    mean = sum(randoms) / len(randoms)
    found = report["found"]["test_accuracy"]
    assert report["test"]["ri"] == pytest.approx(100 * (found - mean) / mean)
    assert len((out / "journal.jsonl").read_text().splitlines()) == 3
    assert study_main(args) == 0  # re-run: every trial comes from the journal
    assert "3 of 3 trials found in the journal" in (out / "study.log").read_text()


def test_ranking_study_runs(tmp_path):
    out = tmp_path / "ranking"
    assert study_main(["ranking", "--output", str(out), "--d-min", "2", "--w-max", "6", "--w-min", "4",
                       "--e-min", "1", "--depth-steps", "2", "--width-steps", "1", "--reference-epochs", "2",
                       "--device", "cpu"]) == 0
    report = json.loads((out / "ranking.json").read_text())
    rows = report["candidates"]
    assert len(rows) == 3
    # The reported ρ are those of the scores the study itself trained (checked with scipy directly).
    reference = [row["reference"] for row in rows]
    for kind in ("static", "dynamic"):
        expected = scipy.stats.spearmanr([row[kind] for row in rows], reference).statistic
        assert report[f"spearman_{kind}"] == pytest.approx(expected, nan_ok=True)
