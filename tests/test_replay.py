"""Replaying the authors' ten search traces must ask for exactly the logged candidates (ARCHITECTURE §3)."""

import json

import pytest

from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.journal import Journal, JournaledEvaluator
from nas_core.replay import LookupEvaluator, load_trace, replay
from nas_core.search import MacroMicroSearch
from nas_core.settings import SearchSettings

TRACES = [  # the ten published logs; test_all_ten_traces_are_listed keeps this list honest
    "cifar10_64.json", "cifar10_128.json", "cifar100_64.json", "cifar100_128.json", "emnist_64.json",
    "emnist_128.json", "fashionmnist_64.json", "fashionmnist_128.json", "kmnist_64.json", "kmnist_128.json",
]


def test_all_ten_traces_are_listed(seed_traces_dir):
    assert sorted(p.name for p in seed_traces_dir.glob("*.json")) == sorted(TRACES)
    assert len(TRACES) == 10


@pytest.mark.parametrize("name", TRACES)
def test_trace_replays_exactly(seed_traces_dir, name):
    path = seed_traces_dir / name
    settings, space, evaluator, info = load_trace(path)
    result = MacroMicroSearch(space, evaluator, settings).run()
    raw = json.loads(path.read_text())

    asked = [(g.key(), e) for g, e in evaluator.requests]
    logged = [(g.key(), e) for g, e in info["expected_requests"]]
    assert asked == logged  # same depth, width, ops, kernels and epochs, in order
    assert [t.phase for t in result.trials] == [c["phase"] for c in raw["candidates"]]
    assert [t.layer for t in result.trials] == [c.get("layer") for c in raw["candidates"]]

    expected = raw["result"]
    assert result.genotype.depth == expected["depth"]
    assert result.genotype.width == expected["final_width"]
    assert result.macro_genotype.width == expected["macro_width"]
    assert result.genotype.ops == tuple("conv" if o else "sep" for o in expected["ops"])
    assert result.genotype.kernels == tuple(expected["kernels"])
    assert result.params == expected["params"]
    assert result.macro_epochs == expected["final_epochs"]
    assert result.accuracy == pytest.approx(expected["test_acc"], abs=1e-6)
    assert result.epochs_total == raw["total_epochs_trained"]
    # the closed-form count is what the reference logged for every candidate
    assert [space.count_params(t.genotype) for t in result.trials] == [c["params"] for c in raw["candidates"]]


def test_macro_only_replay_returns_the_macro_result(seed_traces_dir):
    raw = json.loads((seed_traces_dir / "cifar10_64.json").read_text())
    result = replay(seed_traces_dir / "cifar10_64.json", macro_only=True)
    assert result.genotype == Genotype.uniform(26, 46)
    assert result.genotype == result.macro_genotype
    assert result.params == raw["macro_summary"]["params"]
    assert {t.phase for t in result.trials} == {"depth", "width"}


def test_fewer_strikes_re_decide_without_training(seed_traces_dir):
    # cifar10_64 with 2 strikes: depth stops at 25 (strikes at 23 and 25), best depth 22;
    # the width phase at depth 22 was never trained, so the replay must say so.
    with pytest.raises(NasError, match=r"d22-w62-.* at 27 epochs: not in the trace; it would need training"):
        replay(seed_traces_dir / "cifar10_64.json", max_strikes=2)


def test_changed_threshold_hits_a_missing_candidate(seed_traces_dir):
    # +1.0 point to accept a deeper net: the depth phase never strikes out before depth 31,
    # which the authors never trained.
    with pytest.raises(NasError, match=r"^\S*cifar10_64.json: d31-w64-s{31}-3{31} at 31 epochs: not in the trace; "
                                      r"it would need training"):
        replay(seed_traces_dir / "cifar10_64.json", depth_accept=1.0)


def test_budget_replay_stops_at_max_trials(seed_traces_dir):
    result = replay(seed_traces_dir / "cifar10_64.json", max_trials=5)
    assert len(result.trials) == 5
    assert result.genotype == Genotype.uniform(14, 64)  # the best depth among the first five


def test_lookup_evaluator_names_the_missing_candidate():
    evaluator = LookupEvaluator({})
    with pytest.raises(NasError, match=r"^d10-w64-s{10}-3{10} at 10 epochs: not in the trace"):
        evaluator.evaluate(Genotype.uniform(10, 64), 10)


def test_run_folder_replays_like_the_trace(seed_traces_dir, tmp_path):
    # Record a search into a run folder through the journal, then replay the folder alone.
    settings, space, evaluator, _ = load_trace(seed_traces_dir / "fashionmnist_128.json")
    run = tmp_path / "RUN"
    journaled = JournaledEvaluator(evaluator, Journal(run / "journal.jsonl"))
    search = MacroMicroSearch(space, journaled, settings)
    original = search.run()
    (run / "settings.json").write_text(json.dumps(search.describe()))

    again = replay(run)
    assert again.genotype == original.genotype and again.params == original.params
    assert [t.genotype for t in again.trials] == [t.genotype for t in original.trials]
    assert replay(run / "journal.jsonl", macro_only=True).genotype == original.macro_genotype
    records = Journal(run / "journal.jsonl").records()
    assert [r["phase"] for r in records] == [t.phase for t in original.trials]


def test_run_folder_without_settings_is_a_clear_error(tmp_path):
    Journal(tmp_path / "journal.jsonl")
    (tmp_path / "journal.jsonl").write_text("")
    with pytest.raises(NasError, match="settings.json or result.json"):
        load_trace(tmp_path)


def test_missing_trace_is_a_clear_error(tmp_path):
    with pytest.raises(NasError, match="not found"):
        load_trace(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"candidates\": []}")
    with pytest.raises(NasError, match="expected key 'settings'"):
        load_trace(bad)
    assert SearchSettings().max_strikes == 3


def test_run_folder_in_the_cli_layout(seed_traces_dir, tmp_path):
    # nas-search writes settings.json {"dataset", ..., "search": settings} at the start and
    # result.json {"settings": config, "space": spec, ...} at the end.
    settings, space, evaluator, _ = load_trace(seed_traces_dir / "kmnist_64.json")
    journaled = JournaledEvaluator(evaluator, Journal(tmp_path / "journal.jsonl"))
    search = MacroMicroSearch(space, journaled, settings)
    original = search.run()
    config = {"dataset": "kmnist", "search": settings.to_dict()}
    (tmp_path / "settings.json").write_text(json.dumps(config))
    with pytest.raises(NasError, match="holding 'space'"):
        load_trace(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({**original.to_dict(), "settings": config}))
    again = replay(tmp_path, max_strikes=3)
    assert again.genotype == original.genotype
    assert again.space == {"name": "fcn", "module": "nas_core.classify.network",
                           "task": {"in_channels": 1, "num_classes": 10}}
