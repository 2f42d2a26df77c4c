"""facerec-study ranking: short trials against a full training on a face pack; journaled, so a rerun
trains nothing; bad settings are one-line errors before anything is written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from facerec.cli.study import main

# 3 candidates on the 8-identity synthetic pack: at stem width 4 (Grow), then R-12 at width 2
# (Prune); trials of 1, 2 and 4 epochs, static 1 epoch, full training 2 epochs.
_TINY = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "2", "--w-max", "4", "--w-res", "2",
         "--depth-steps", "2", "--width-steps", "1", "--reference-epochs", "2", "--holdout-ids", "3",
         "--embedding-size", "16", "--device", "cpu", "--no-progress"]


def _bin_beside(pack: Path) -> None:
    """An lfw.bin beside the pack (as in faces_webface_112x112/): the study must not rank on it."""
    tools = Path(__file__).resolve().parents[1] / "tools"
    spec = importlib.util.spec_from_file_location("make_fixtures", tools / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.make_verification_pack(pack / "lfw.bin", np.random.default_rng(0), pairs=20, identities=4)


def test_ranking_reports_both_spearman_figures_and_resumes_from_its_journal(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    _bin_beside(tiny_pack)
    assert main(["ranking", "--data", str(tiny_pack), "--output", str(out), *_TINY]) == 0
    report = json.loads((out / "ranking.json").read_text())
    assert [row["dynamic_epochs"] for row in report["candidates"]] == [1, 2, 4]
    assert report["static_epochs"] == 1 and report["reference_epochs"] == 2
    for key in ("spearman_dynamic", "spearman_static"):
        assert -1.0 <= report[key] <= 1.0
    assert report["recipe"]["name"] == "small"  # 64 images: auto picks the small-data recipe
    assert report["data"]["fitness_on"]["kind"] == "holdout"  # held-out identities, not lfw.bin beside the pack
    journal = (out / "journal.jsonl").read_text().splitlines()
    assert all(list(json.loads(line)["extra"]["val"]) == ["holdout"] for line in journal)
    # 3 candidates x (dynamic, static, full) = 9 trainings, 7 distinct: R-10 at 1 epoch is both its dynamic and
    # its static trial, R-12 at 2 epochs both its dynamic and its full one (the journal trains each once).
    assert len(journal) == 7
    log = (out / "study.log").read_text()
    assert "Spearman rho vs the 2-epoch training: dynamic" in log and "recipe small" in log

    assert main(["ranking", "--data", str(tiny_pack), "--output", str(out), *_TINY]) == 0  # all journaled
    assert (out / "journal.jsonl").read_text().splitlines() == journal
    assert json.loads((out / "ranking.json").read_text())["candidates"] == report["candidates"]


def test_too_few_candidates_fail_before_the_output_folder_exists(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    flags = ["--w-max", "4", "--w-min", "4", "--depth-steps", "1"]
    assert main(["ranking", "--data", str(tiny_pack), "--output", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected at least 3 distinct candidates" in err[0]
    assert not out.exists()


def test_unknown_recipe_is_refused_by_the_parser(tiny_pack, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ranking", "--data", str(tiny_pack), "--output", str(tmp_path / "o"), "--recipe", "huge"])
    assert exit_info.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def test_missing_pack_is_one_line_exit_2(tmp_path, capsys):
    assert main(["ranking", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]
    assert not (tmp_path / "o").exists()
