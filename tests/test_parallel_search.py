"""--parallel N: speculative workers (local processes, a Ray local cluster) return the sequential search's answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facerec.cli.search import main as face_search_main
from nas_core.classify.network import ClassifierSpace
from nas_core.cli.search import main as search_main
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.settings import SearchSettings
from nas_core.speculative import next_trials

REPO = Path(__file__).resolve().parents[1]
# digits, every phase visited: 14 trials of a second or less on one thread.
DIGITS = ["--d-min", "2", "--d-max", "4", "--w-max", "8", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
          "--device", "cpu"]
# The built-in synthetic face set (no --data): Grow d4 -> d5 at width 6, Prune to 4, a micro baseline.
FACES = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "6", "--micro-epochs", "1",
         "--max-trials", "4", "--batch-size", "8", "--workers", "0", "--embedding-size", "32", "--no-progress"]


def _trial_table(run: Path) -> list[str]:
    """The last invocation's trial lines (index, phase, layer, genotype, epochs, params, fitness, decision)."""
    result = json.loads((run / "result.json").read_text())
    count = result["trials"] if isinstance(result["trials"], int) else len(result["trials"])
    lines = [line for line in (run / "search.log").read_text().splitlines() if " -> " in line]
    return [line[line.index("trial "):].removesuffix(" (journal)") for line in lines[-count:]]


def _exact_results(run: Path) -> dict[tuple[str, int], tuple]:
    """Every journaled trial's fitness, epoch scores, seed and params, to the last bit."""
    table = {}
    for line in (run / "journal.jsonl").read_text().splitlines():
        r = json.loads(line)
        table[(Genotype.from_dict(r["genotype"]).key(), r["epochs"])] = (
            r["accuracy"], r["epoch_accuracies"], r["seed"], r["params"])
    return table


def _assert_same_search(run: Path, straight: Path) -> None:
    got, want = json.loads((run / "result.json").read_text()), json.loads((straight / "result.json").read_text())
    assert got["genotype"] == want["genotype"] and got["fitness"] == want["fitness"]
    assert _trial_table(run) == _trial_table(straight)
    exact, reference = _exact_results(run), _exact_results(straight)
    assert all(exact[key] == value for key, value in reference.items())  # every asked trial, bit for bit
    speculative = [k for k in exact if k not in reference]
    assert got["speculative_trials"] == len(speculative) and got["parallel"] == 2
    assert got["speculative_seconds"] >= 0 and got["speculative_dropped"] >= 0


# -- which trials run ahead ------------------------------------------------------------------------


def _result(accuracy: float) -> TrialResult:
    return TrialResult(accuracy=accuracy, params=0)


def test_grow_runs_the_next_depths_ahead():
    settings = SearchSettings(d_min=2, d_max=6, w_min=4, w_max=8, e_min=1)
    running = {(Genotype.uniform(2, 8).key(), 1)}  # the baseline trains; nothing is known yet
    ahead = next_trials(ClassifierSpace(1, 10), settings, {}, running, limit=3)
    assert [(g.depth, g.width, e) for g, e in ahead] == [(3, 8, 2), (4, 8, 3), (5, 8, 4)]


def test_prune_runs_the_next_widths_ahead():
    settings = SearchSettings(d_min=2, d_max=3, w_min=2, w_max=8, e_min=1, max_strikes=3)
    known = {(Genotype.uniform(2, 8).key(), 1): _result(50.0), (Genotype.uniform(3, 8).key(), 2): _result(40.0)}
    ahead = next_trials(ClassifierSpace(1, 10), settings, known, set(), limit=3)
    assert [(g.depth, g.width, e) for g, e in ahead] == [(2, 6, 4), (2, 4, 6), (2, 2, 8)]


def test_micro_runs_the_next_layer_under_either_outcome():
    space = ClassifierSpace(1, 10)
    settings = SearchSettings(d_min=3, d_max=3, w_min=8, w_max=8, e_min=1, micro_epochs=1)
    macro = Genotype.uniform(3, 8)
    known = {(macro.key(), 1): _result(50.0)}  # the macro phase is one trial; the micro baseline trains
    ahead = next_trials(space, settings, known, set(), limit=1)  # the micro baseline (macro, 1) is known
    first = ahead[0]
    assert first[0].ops[0] == "conv" and first[1] == 1
    running = {(first[0].key(), 1)}
    ahead = next_trials(space, settings, known, running, limit=2)
    # layer 1 as conv, after layer 0 was rejected (sep) and after it was accepted (conv)
    assert [tuple(g.ops[:2]) for g, _ in ahead] == [("sep", "conv"), ("conv", "conv")]


# -- the same answer, local processes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "digits"
    assert search_main([*DIGITS, "--output", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def faces_straight(tmp_path_factory) -> Path:
    """One thread, as each worker of --parallel 2 runs here (float sums depend on the thread count)."""
    run = tmp_path_factory.mktemp("straight") / "faces"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert face_search_main(["--output", str(run), *FACES]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def test_parallel_digits_search_returns_the_sequential_answer(digits_straight, tmp_path):
    run = tmp_path / "parallel"
    assert search_main([*DIGITS, "--output", str(run), "--parallel", "2"]) == 0
    _assert_same_search(run, digits_straight)
    assert "parallel: 2 process worker(s)" in (run / "search.log").read_text()


def test_parallel_face_search_returns_the_sequential_answer(faces_straight, tmp_path):
    run = tmp_path / "parallel"
    assert face_search_main(["--output", str(run), *FACES, "--parallel", "2"]) == 0
    _assert_same_search(run, faces_straight)
    assert (run / "model.pt").is_file() and not (run / "trials").exists()


def test_killed_parallel_search_resumes_to_the_sequential_answer(digits_straight, tmp_path):
    run = tmp_path / "killed"
    # Killed (as by SIGKILL: nas_core.faults) right after the 4th finished trial is journaled, asked or
    # run ahead; the workers die with the search (a leftover one would hold the pipes open: a timeout here).
    proc = subprocess.run([sys.executable, "-m", "nas_core.cli.search", *DIGITS, "--output", str(run),
                           "--parallel", "2"], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "FACENAS_FAIL_AFTER_TRIALS": "4"})
    assert proc.returncode == 137 and "killed after trial 4" in proc.stderr, proc.stderr[-2000:]
    assert not (run / "result.json").exists() and len((run / "journal.jsonl").read_text().splitlines()) == 4
    assert search_main(["--resume", str(run), "--parallel", "2"]) == 0
    _assert_same_search(run, digits_straight)
    assert "journal: 4 finished trial(s) will be reused" in (run / "search.log").read_text()


def test_parallel_flags_are_checked(tmp_path, capsys):
    assert search_main([*DIGITS, "--output", str(tmp_path / "run"), "--parallel", "0"]) == 2
    assert capsys.readouterr().err == "error: --parallel 0: expected a positive integer\n"


# -- the same answer, Ray tasks on a local cluster -------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the optional ray extra is not installed (pip install '.[ray]'; "
                                            ".ci/run installs it)")
    # Workers import this checkout (PYTHONPATH), not another installed copy.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_digits_search_returns_the_sequential_answer(ray_cluster, digits_straight, tmp_path):
    run = tmp_path / "ray"
    assert search_main([*DIGITS, "--output", str(run), "--parallel", "2", "--executor", "ray"]) == 0
    _assert_same_search(run, digits_straight)


def test_ray_face_search_returns_the_sequential_answer(ray_cluster, faces_straight, tmp_path):
    run = tmp_path / "ray"
    assert face_search_main(["--output", str(run), *FACES, "--parallel", "2", "--executor", "ray"]) == 0
    _assert_same_search(run, faces_straight)
