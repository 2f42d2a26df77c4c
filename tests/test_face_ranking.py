"""facerec-search --ranking: how trials are trained and scored (facerec.search.rankings.SEARCH_RANKINGS)."""

from __future__ import annotations

import json

import pytest

from facerec.cli.search import main as search_main
from facerec.train.config import TrainConfig
from facerec.train.recipe import scheduled_lr

# Grow d4 -> d5 at width 6, then Prune to 4: three macro trials on the 8-identity pack.
_TINY = ["--e-min", "2", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "6", "--w-res", "2",
         "--macro-only", "--holdout-ids", "3", "--embedding-size", "16", "--workers", "0", "--device", "cpu",
         "--no-progress", "--max-trials", "3"]


def _journal(run):
    return [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]


def test_paper_ranking_gives_later_candidates_more_epochs_and_static_ones_do_not(tiny_pack, tmp_path):
    paper, truncated = tmp_path / "paper", tmp_path / "truncated"
    assert search_main(["--data", str(tiny_pack), "--output", str(paper), *_TINY]) == 0
    assert [r["epochs"] for r in _journal(paper)] == [2, 3, 5]  # E_min, +1 per depth, +2 per width
    assert search_main(["--data", str(tiny_pack), "--output", str(truncated), *_TINY, "--ranking", "truncated-auc",
                        "--ranking-full-epochs", "6"]) == 0
    records = _journal(truncated)
    assert [r["epochs"] for r in records] == [2, 2, 2]
    for record in records:  # scored by the held-out pairs' AUC, in percent
        assert record["epoch_accuracies"] == pytest.approx([100 * a for a in record["extra"]["epoch_auc"]])
        assert record["accuracy"] == max(record["epoch_accuracies"])
    result = json.loads((truncated / "result.json").read_text())
    assert result["options"]["ranking"] == "truncated-auc" and result["options"]["ranking_full_epochs"] == 6
    assert "ranking truncated-auc" in (truncated / "search.log").read_text()


def test_a_truncated_trial_follows_the_full_trainings_learning_rate():
    full = TrainConfig(epochs=6, lr=0.1, schedule="cosine", warmup_epochs=1.0)
    first_two = TrainConfig(epochs=2, lr=0.1, schedule="cosine", warmup_epochs=1.0, schedule_epochs=6)
    short = TrainConfig(epochs=2, lr=0.1, schedule="cosine", warmup_epochs=1.0)
    steps = 10
    for step in range(2 * steps):
        assert scheduled_lr(first_two, step, steps) == scheduled_lr(full, step, steps)
    assert scheduled_lr(short, 2 * steps - 1, steps) < 0.01 < scheduled_lr(first_two, 2 * steps - 1, steps)
