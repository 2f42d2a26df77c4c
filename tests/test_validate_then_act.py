"""Validate, then act (ARCHITECTURE §7, §10): every command checks all its flags and the files they name before it
creates, locks or writes anything; a flag violation is one line ``error: --flag VALUE: what was expected`` (exit 2,
once under torchrun); a resume refuses a changed setting naming both values; a run folder of another kind or
fingerprint is refused; thread counts stop at the CPUs; numbers read from files are range-checked."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest

from facerec.cli.search import _check as face_search_check
from facerec.cli.search import build_parser as face_search_parser
from facerec.cli.search import main as face_search_main
from facerec.cli.study import main as study_main
from facerec.cli.train import main as train_main
from nas_core.classify.settings import ClassificationOptions
from nas_core.cli.search import main as search_main
from nas_core.command import cpu_count
from nas_core.errors import NasError
from nas_core.run_folder import RUN_FILE, mark_run_folder
from nas_core.settings import PRESETS


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@contextmanager
def _no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) if the body blocks, e.g. by opening a FIFO."""
    def stop(*_):
        raise TimeoutError("blocked")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- side effects before validation: no OUT after a bad flag ----------------------------------------------------

@pytest.mark.parametrize(("flags", "said"), [
    (["--arch", "iresnet19"], "error: --arch iresnet19: expected one of iresnet100, iresnet18"),
    (["--arch", "iresnet18", "--holdout-ids", "-1"], "error: --holdout-ids -1: expected an integer >= 0"),
    (["--arch", "iresnet18", "--holdout-ids", "50"], "error: --holdout-ids 50: expected 0 to 18"),
    (["--arch", "iresnet18", "--dropout", "1.5"], "error: --dropout 1.5: expected a dropout probability in [0, 1)"),
    (["--arch", "iresnet18", "--embedding-size", "0"], "error: --embedding-size 0: expected an integer >= 1"),
    (["--arch", "iresnet18", "--val-bins", ","], "error: --val-bins ,: expected a comma-separated list"),
    (["--arch", "iresnet18", "--report-every", "often"], "error: --report-every often: expected auto or"),
    (["--genotype", "missing.json"], "error: --genotype missing.json: expected a readable regular file (file not found)"),
    (["--arch", "iresnet18", "--epochs", "0"], "error: --epochs 0: expected a positive integer"),
])
def test_facerec_train_makes_no_output_folder_for_a_bad_flag(tmp_path, capsys, monkeypatch, flags, said):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert train_main([*flags, "--output", str(out)]) == 2
    assert _one_error(capsys).startswith(said)
    assert not out.exists()  # so the corrected command is not refused as "an earlier run"


def test_facerec_train_refuses_an_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert train_main(["--arch", "iresnet18", "--output", str(tmp_path / "out")]) == 2
    assert _one_error(capsys).endswith("expected a folder to write into, got a file")


# -- empty and degenerate values --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [",", " , ", "lfw,,agedb_30", ""])
def test_empty_name_lists_are_refused(tmp_path, capsys, value):
    assert face_search_main(["--output", str(tmp_path / "run"), "--val-bins", value]) == 2
    assert "--val-bins" in _one_error(capsys) and not (tmp_path / "run").exists()


def test_an_empty_study_grid_is_refused(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    assert study_main(["ranking", "--data", str(tiny_pack), "--output", str(out), "--depths=", "--widths="]) == 2
    assert _one_error(capsys) == ("error: --depths '': expected a comma-separated list of one or more integers, "
                                  "none empty")
    assert not out.exists()


@pytest.mark.parametrize(("flags", "said"), [
    (["--ranking", "best"], "error: --ranking best: expected one of paper, static, truncated, truncated-auc"),
    (["--ranking-full-epochs", "0"], "error: --ranking-full-epochs 0: expected a positive integer"),
    (["--no-such-flag"], "error: --no-such-flag: expected a flag of facerec-search"),
    (["--e-min"], "error: --e-min: expected one argument"),
    (["--embedding-size", "0"], "error: --embedding-size 0: expected a positive integer"),
    (["--latency-threads", "100000"], "error: --latency-threads 100000: expected 1 to"),
    (["--latency-threads", "1e10"], "error: --latency-threads 1e10: expected 1 to"),
    (["--max-params", "1" + "0" * 400], "error: --max-params 1" + "0" * 39 + "...: expected a positive integer up to"),
])
def test_flag_errors_are_one_line_without_usage(tmp_path, capsys, flags, said):
    assert face_search_main(["--output", str(tmp_path / "run"), *flags]) == 2
    assert _one_error(capsys).startswith(said)
    assert not (tmp_path / "run").exists()


def test_thread_flags_stop_at_the_cpu_count(tmp_path, capsys):
    too_many = str(cpu_count() + 1)
    assert search_main(["--output", str(tmp_path / "run"), "--threads", too_many]) == 2
    assert _one_error(capsys) == f"error: --threads {too_many}: expected a positive integer <= {cpu_count()}"


# -- one line under torchrun ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rank", "lines"), [("0", 1), ("1", 0), ("3", 0)])
def test_an_error_is_printed_once_per_torchrun_job(tmp_path, capsys, monkeypatch, rank, lines):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert train_main(["--arch", "iresnet18", "--dropout", "2", "--output", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == lines  # every rank exits 2; rank 0 says why


# -- special files: a FIFO is refused without blocking ----------------------------------------------------------

def test_a_fifo_as_init_is_refused_without_opening_it(tmp_path, capsys):
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    with _no_hang():
        assert train_main(["--init", str(fifo), "--output", str(tmp_path / "out")]) == 2
    assert _one_error(capsys) == f"error: --init {fifo}: expected a readable regular file (it is a FIFO (named pipe))"
    assert not (tmp_path / "out").exists()


def test_a_fifo_as_imported_weights_is_refused_without_opening_it(tmp_path, capsys):
    from facerec.cli.import_weights import main as import_main

    fifo = tmp_path / "backbone.pth"
    os.mkfifo(fifo)
    with _no_hang():
        assert import_main(["--format", "arcface_torch", "--arch", "iresnet18", "--weights", str(fifo),
                            "--output", str(tmp_path / "r18.pt")]) == 2
    assert "FIFO" in _one_error(capsys)


def test_a_fifo_is_not_a_model_a_json_file_or_a_bin_pack(tmp_path):
    from eval_protocols.bins import read_bin
    from facerec.deploy.embedding import check_model_file
    from nas_core.io import read_json_object
    from nas_core.safe_pickle import load_weights_only

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with _no_hang():
        for read in (check_model_file, lambda p: load_weights_only(p, "a checkpoint"), read_json_object, read_bin):
            with pytest.raises(NasError, match="FIFO"):
                read(fifo)


def test_a_400_digit_number_in_latency_json_is_one_line(tmp_path):
    from nas_core.cost import read_costs

    path = tmp_path / "latency.json"
    path.write_text('{"format": 1, "costs": {"d2-w8": {"params": 1' + "0" * 400 + '}}}')
    with pytest.raises(NasError, match=r"expected 'params' of d2-w8 to be an integer from 0 to 1e\+15, got 10000"):
        read_costs(path)


# -- resume is strict -------------------------------------------------------------------------------------------

def _nas_run(tmp_path: Path) -> Path:
    run = tmp_path / "nas"
    run.mkdir()
    config = {"size": "tiny", **asdict(ClassificationOptions()), "device": "cpu", "search": PRESETS["tiny"].to_dict()}
    (run / "settings.json").write_text(json.dumps(config))
    (run / "journal.jsonl").write_text("")
    return run


def _face_run(tmp_path: Path) -> Path:
    run = tmp_path / "face"
    run.mkdir()
    options = {"size": "small", "data": None, "val_bins": None, "recipe": "auto", "fitness": "holdout",
               "ranking": "paper", "ranking_full_epochs": 12, "batch_size": 32, "lr": 0.05, "head": "adaface",
               "workers": 0, "holdout_ids": 4, "subset_ids": None, "embedding_size": 128}
    settings = {"search": PRESETS["small"].to_dict(), "options": options, "space": {"name": "iresnet"}}
    (run / "settings.json").write_text(json.dumps(settings))
    return run


@pytest.mark.parametrize(("flags", "said"), [
    (["--max-params", "500"], "error: --max-params 500: expected (not set) as in the run it resumes"),
    (["--max-params", "banana"], "error: --max-params banana: expected a positive integer"),
    (["--w-max", "16"], "error: --w-max 16: expected 64 as in the run it resumes"),
    (["--size", "mobile"], "error: --size mobile: expected tiny as in the run it resumes"),
    (["--output", "elsewhere"], "error: --output elsewhere: expected no --output with --resume"),
])
def test_nas_search_resume_refuses_a_changed_setting(tmp_path, capsys, monkeypatch, flags, said):
    monkeypatch.chdir(tmp_path)
    run = _nas_run(tmp_path)
    before = sorted(p.name for p in run.iterdir())
    assert search_main(["--resume", str(run), *flags]) == 2
    assert _one_error(capsys).startswith(said)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing locked, logged or written


@pytest.mark.parametrize(("flags", "said"), [
    (["--max-params", "500"], "error: --max-params 500: expected (not set) as in the run it resumes"),
    (["--max-params", "banana"], "error: --max-params banana: expected a positive integer"),
    (["--embedding-size", "512"], "error: --embedding-size 512: expected 128 as in the run it resumes"),
    (["--ranking", "static"], "error: --ranking static: expected paper as in the run it resumes"),
])
def test_facerec_search_resume_refuses_a_changed_setting(tmp_path, capsys, flags, said):
    run = _face_run(tmp_path)
    assert face_search_main(["--resume", str(run), *flags]) == 2
    assert _one_error(capsys).startswith(said)
    assert sorted(p.name for p in run.iterdir()) == ["settings.json"]


def test_a_resume_takes_the_same_values_and_the_changeable_flags(tmp_path):
    run = _face_run(tmp_path)
    args = face_search_parser().parse_args(["--resume", str(run), "--embedding-size", "128", "--e-min", "10",
                                            "--device", "cpu", "--no-progress", "--parallel", "2"])
    face_search_check(args)
    assert args.applied == ["--device cpu", "--parallel 2", "--progress off"]


# -- run folders know what they are -----------------------------------------------------------------------------

def test_a_study_refuses_a_search_folder(tiny_pack, tmp_path, capsys):
    run = _nas_run(tmp_path)
    journal = (run / "journal.jsonl").read_text()
    assert study_main(["ranking", "--data", str(tiny_pack), "--output", str(run)]) == 2
    assert _one_error(capsys) == (f"error: {run}: expected a facerec-study ranking folder (new, or one of its own "
                                  "runs); it holds a search run (choose another --output)")
    assert (run / "journal.jsonl").read_text() == journal and not (run / RUN_FILE).exists()


def test_a_study_refuses_another_studys_data_or_trainings(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    settings = {"--data": str(tiny_pack.resolve()), "--subset-ids": None, "--holdout-ids": 2, "--seed": 0,
                "--embedding-size": 512, "--recipe": "auto", "--batch-size": None, "--lr": None, "--head": None}
    mark_run_folder(out, "facerec-study ranking", settings)
    (out / "journal.jsonl").write_text('{"trained": "before"}\n')
    assert study_main(["ranking", "--data", str(tiny_pack), "--output", str(out), "--holdout-ids", "3"]) == 2
    assert _one_error(capsys).startswith("error: --holdout-ids 3: expected 2 as in the facerec-study ranking run in")
    assert (out / "journal.jsonl").read_text() == '{"trained": "before"}\n'


def test_searches_refuse_each_others_folders(tmp_path, capsys):
    face = _face_run(tmp_path)
    mark_run_folder(face, "facerec-search", {})
    nas = tmp_path / "nas-out"
    nas.mkdir()
    mark_run_folder(nas, "nas-search", {})
    assert search_main(["--resume", str(face)]) == 2
    assert "expected a nas-search folder" in _one_error(capsys)
    assert face_search_main(["--output", str(nas)]) == 2
    assert "expected a facerec-search folder" in _one_error(capsys)
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.log").write_text("")
    assert search_main(["--output", str(study)]) == 2
    assert "it holds a ranking study run" in _one_error(capsys)


def test_nas_study_refuses_a_search_folder_and_another_studys_data(tmp_path, capsys):
    from nas_core.cli.study import main as nas_study_main

    run = _nas_run(tmp_path)
    mark_run_folder(run, "nas-search", {})
    assert nas_study_main(["ranking", "--output", str(run)]) == 2
    assert "expected a nas-study ranking folder" in _one_error(capsys)
    study = tmp_path / "study"
    study.mkdir()
    mark_run_folder(study, "nas-study ranking", {"--dataset": "digits", "--data-root": None, "--val-fraction": 0.1,
                                                 "--rank-on": "val", "--batch-size": 64,
                                                 "--reference-schedule": False, "--seed": 0})
    (study / "journal.jsonl").write_text('{"trained": "before"}\n')
    assert nas_study_main(["ranking", "--output", str(study), "--seed", "1"]) == 2
    assert _one_error(capsys).startswith("error: --seed 1: expected 0 as in the nas-study ranking run in")


def test_a_bin_pack_too_small_for_ten_folds_is_named(tmp_path):
    import importlib.util

    import numpy as np

    from facerec.train.validation import load_bin_sets

    tools = Path(__file__).resolve().parents[1] / "tools" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", tools)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    path = tmp_path / "tiny.bin"
    fixtures.make_verification_pack(path, np.random.default_rng(0), pairs=4, identities=4)
    with pytest.raises(NasError, match=f"{path}: expected at least 10 pairs for 10-fold verification, got 4"):
        load_bin_sets([path])


def test_cache_threads_stop_at_the_cpu_count(tmp_path, capsys):
    from facerec.cli.data import main as data_main

    too_many = str(cpu_count() + 1)
    assert data_main(["cache", str(tmp_path), "--workers", too_many]) == 2
    assert _one_error(capsys) == f"error: --workers {too_many}: expected a positive integer <= {cpu_count()}"


SCRIPTS = __import__("tomllib").loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
    "project"]["scripts"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_goes_through_the_one_error_path(script, capsys):
    import importlib

    from nas_core.command import CommandParser

    module = importlib.import_module(SCRIPTS[script].split(":")[0])
    assert isinstance(module.build_parser(), CommandParser)
    assert module.main(["--no-such-flag"]) == 2
    assert _one_error(capsys).startswith("error: ")


def test_a_resume_applies_and_logs_a_changeable_flag_and_keeps_the_runs_settings(tmp_path):
    run = tmp_path / "digits"
    tiny = ["--d-min", "2", "--d-max", "2", "--w-max", "6", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
            "--max-trials", "2", "--no-progress"]
    assert search_main([*tiny, "--device", "cpu", "--output", str(run)]) == 0
    marker = json.loads((run / RUN_FILE).read_text())
    assert marker["kind"] == "nas-search" and marker["settings"]["--w-max"] == 6
    assert search_main(["--resume", str(run), "--w-max", "6", "--device", "cpu", "--no-progress"]) == 0
    log = (run / "search.log").read_text()
    assert "resume: --device cpu, --progress off (changeable on resume) apply to this invocation" in log
    assert json.loads((run / RUN_FILE).read_text()) == marker


def test_a_400_digit_cost_in_a_journal_is_one_line(tmp_path):
    from nas_core.genotype import Genotype
    from nas_core.journal import Journal

    line = {"genotype": Genotype.uniform(2, 8).to_dict(), "epochs": 1, "accuracy": None, "params": 0,
            "over_budget": ["params too many"], "cost": {"params": 10**400}}
    (tmp_path / "journal.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(NasError, match="expected 'cost' to be an object of numbers"):
        Journal(tmp_path / "journal.jsonl").records()
