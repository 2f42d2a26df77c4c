"""facerec-study ranking: short trials against a full training on a face pack; journaled, so a rerun
trains nothing; bad settings are one-line errors before anything is written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from facerec.cli.study import main

# A 2 x 2 grid on the 8-identity synthetic pack: R-10/R-12 (4/5 blocks) at stem width 4 and 2; dynamic epochs
# 1 (d4-w4), 3 (d4-w2), 2 (d5-w4), 4 (d5-w2); static 1 and 2 epochs; full training 3 epochs x 2 seeds.
_TINY = ["--e-min", "1", "--w-min", "2", "--w-res", "2", "--depths", "4,5", "--widths", "4,2",
         "--static-epochs", "1,2", "--truncated", "2", "--reference-epochs", "3", "--reference-seeds", "2",
         "--bootstrap", "200", "--holdout-ids", "3", "--embedding-size", "16", "--device", "cpu", "--no-progress"]


def _bin_beside(pack: Path) -> None:
    """An lfw.bin beside the pack (as in faces_webface_112x112/): the study must not rank on it."""
    tools = Path(__file__).resolve().parents[1] / "tools"
    spec = importlib.util.spec_from_file_location("make_fixtures", tools / "make_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.make_verification_pack(pack / "lfw.bin", np.random.default_rng(0), pairs=20, identities=4)


def test_ranking_study_in_parts_reports_every_ranking_and_resumes_from_its_journals(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    _bin_beside(tiny_pack)
    args = ["ranking", "--data", str(tiny_pack), "--output", str(out), *_TINY]
    assert main([*args, "--max-trainings", "5"]) == 0  # the first part
    partial = json.loads((out / "ranking.json").read_text())
    assert not partial["complete"] and partial["trials_done"] == 5 and not (out / "ranking.png").exists()
    assert main(args) == 0  # the rest
    report = json.loads((out / "ranking.json").read_text())
    assert report["complete"] and report["new_trainings"] == 17 - 5
    assert [row["dynamic_epochs"] for row in report["candidates"]] == [1, 3, 2, 4]
    # Seed 0: per candidate the full training, the dynamic trial and static 1 and 2, less those that coincide
    # (d4-w4's dynamic trial is its static-1 one, d4-w2's is its 3-epoch full training, d5-w4's its static-2).
    assert len((out / "journal.jsonl").read_text().splitlines()) == 13
    assert len((out / "journal-seed1.jsonl").read_text().splitlines()) == 4
    rows = {row["name"]: row for row in report["rankings"]}
    assert {"paper", "paper-auc", "static-1", "static-2", "static-2-loss", "truncated-2", "truncated-2-auc",
            "naswot", "static-2+naswot"} <= set(rows)
    assert rows["paper"]["cost"] == (1 + 3 + 2 + 4) / (3 * 4) and rows["naswot"]["cost"] == 0
    assert rows["truncated-2"]["cost"] == 2 / 3
    for row in rows.values():
        for stat in ("spearman", "kendall"):
            low, high = row[f"{stat}_ci"]
            assert -1.0 <= low <= high <= 1.0 and -1.0 <= row[stat] <= 1.0
    # The reference is the mean last-epoch accuracy of the two full trainings.
    for row in report["candidates"]:
        assert row["reference"] == pytest.approx(sum(row["reference_seeds"]) / 2)
    assert (out / "ranking.png").read_bytes()[:4] == b"\x89PNG"
    assert report["recipe"]["name"] == "small"  # 64 images: auto picks the small-data recipe
    assert "paper" in (out / "study.log").read_text()
    assert report["data"]["fitness_on"]["kind"] == "holdout"  # held-out identities, not lfw.bin beside the pack
    assert all(list(json.loads(line)["extra"]["val"]) == ["holdout"]
               for line in (out / "journal.jsonl").read_text().splitlines())

    journal = (out / "journal.jsonl").read_text()
    assert main(args) == 0  # everything journaled: nothing trains again
    assert (out / "journal.jsonl").read_text() == journal
    again = json.loads((out / "ranking.json").read_text())
    assert again["new_trainings"] == 0 and again["rankings"] == report["rankings"]


def test_too_few_candidates_fail_before_the_output_folder_exists(tiny_pack, tmp_path, capsys):
    out = tmp_path / "study"
    flags = ["--w-max", "4", "--w-min", "4", "--depth-steps", "1"]
    assert main(["ranking", "--data", str(tiny_pack), "--output", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected at least 3 distinct candidates" in err[0]
    assert not out.exists()


def test_unknown_recipe_is_refused_by_the_parser(tiny_pack, tmp_path, capsys):
    assert main(["ranking", "--data", str(tiny_pack), "--output", str(tmp_path / "o"), "--recipe", "huge"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --recipe huge: expected one of auto, adaface, small"]


def test_missing_pack_is_one_line_exit_2(tmp_path, capsys):
    assert main(["ranking", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]
    assert not (tmp_path / "o").exists()
