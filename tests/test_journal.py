"""RUN/journal.jsonl: append and look up, survive a torn last line, resume to the same answer."""

import json

import pytest

from nas_core.classify.network import ClassifierSpace
from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.journal import Journal, JournaledEvaluator
from nas_core.search import MacroMicroSearch
from nas_core.settings import SearchSettings


def _result(acc, params=100):
    return TrialResult(accuracy=acc, params=params, seconds=2.5, seed=7, epoch_accuracies=[acc - 1, acc])


def test_append_and_lookup(tmp_path):
    journal = Journal(tmp_path / "run" / "journal.jsonl")  # creates the folder
    genotype = Genotype.uniform(10, 64)
    journal.append(genotype, 10, _result(84.83), index=0, phase="depth", layer=None)
    journal.append(genotype.with_width(62), 12, _result(85.0))
    assert journal.lookup(genotype, 10) == _result(84.83)
    assert journal.lookup(genotype, 11) is None  # same genotype, other epochs: a different trial
    reopened = Journal(tmp_path / "run" / "journal.jsonl")
    assert len(reopened) == 2
    first = reopened.records()[0]
    assert first["phase"] == "depth" and first["index"] == 0 and first["genotype"] == genotype.to_dict()
    assert first["epochs"] == 10 and first["seed"] == 7 and first["seconds"] == 2.5
    assert reopened.lookup(genotype.with_width(62), 12).accuracy == 85.0


def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append(Genotype.uniform(10, 64), 10, _result(80.0))
    with open(path, "ab") as handle:  # a SIGKILL in the middle of a write
        handle.write(b'{"genotype": {"depth": 11, "width": 64, "op')
    reopened = Journal(path)
    assert len(reopened) == 1
    reopened.append(Genotype.uniform(11, 64), 11, _result(81.0))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert Journal(path).lookup(Genotype.uniform(11, 64), 11).accuracy == 81.0


def test_corrupt_middle_line_is_a_clear_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('not json\n{"genotype": {"depth": 1, "width": 2, "ops": ["sep"], "kernels": [3]}, '
                    '"epochs": 1, "accuracy": 1.0}\n')
    with pytest.raises(NasError, match=r"journal.jsonl:1: expected one JSON trial record per line"):
        Journal(path)


class CountingEvaluator:
    """Deterministic stand-in for training; can be told to die after some trials."""

    def __init__(self, die_after=None):
        self.calls = 0
        self.die_after = die_after

    def evaluate(self, genotype, epochs):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt  # the search is killed mid-run
        self.calls += 1
        score = 80.0 + 0.15 * min(genotype.depth, 13) - 0.01 * abs(genotype.width - 58)
        score += 0.3 * genotype.ops.count("conv") * (genotype.ops[1] == "conv") + 0.01 * epochs
        return TrialResult(accuracy=round(score, 4), params=0, seconds=1.0)


def test_journaled_evaluator_skips_journaled_trials(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    inner = CountingEvaluator()
    journaled = JournaledEvaluator(inner, journal)
    genotype = Genotype.uniform(10, 64)
    first = journaled.evaluate(genotype, 10)
    again = journaled.evaluate(genotype, 10)
    assert inner.calls == 1 and journaled.hits == 1 and journaled.last_was_hit
    assert again == first


def test_resumed_search_reaches_the_same_result(tmp_path):
    space = ClassifierSpace(3, 10)
    settings = SearchSettings(d_min=10, d_max=20, w_min=52, w_max=64)
    reference = MacroMicroSearch(space, CountingEvaluator(), settings).run()

    path = tmp_path / "journal.jsonl"
    with pytest.raises(KeyboardInterrupt):
        MacroMicroSearch(space, JournaledEvaluator(CountingEvaluator(die_after=9), Journal(path)), settings).run()
    assert len(Journal(path)) == 9

    inner = CountingEvaluator()
    resumed = MacroMicroSearch(space, JournaledEvaluator(inner, Journal(path)), settings).run()
    assert resumed.genotype == reference.genotype and resumed.accuracy == reference.accuracy
    assert [t.genotype for t in resumed.trials] == [t.genotype for t in reference.trials]
    assert inner.calls == len(reference.trials) - 9  # only the unfinished trials were trained
    records = Journal(path).records()
    assert [r["index"] for r in records] == list(range(len(reference.trials)))
    assert [r["phase"] for r in records] == [t.phase for t in reference.trials]
