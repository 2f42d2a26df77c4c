"""Deployment budgets (--max-params / --max-mflops / --max-latency-ms): no candidate over one is trained, and a
resumed, parallel or replayed search decides from the costs the run measured (RUN/latency.json)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from facerec.cli.search import main as face_search_main
from nas_core.classify.network import ClassifierSpace, layer_channels
from nas_core.cli.search import main as search_main
from nas_core.cost import CostTable, count_mflops, onnx_cpu_latency_ms
from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.journal import Journal
from nas_core.search import MacroMicroSearch
from nas_core.settings import Budget, SearchSettings

REPO = Path(__file__).resolve().parents[1]
# digits (8x8, 1 channel): d2-w8 = 1,658 params fits, d3-w8 = 1,746 does not: Grow stops at once; the micro
# phase meets changes over the params or the MFLOPs budget. 9 candidates, 6 of them trained, ~1 s each.
DIGITS = ["--d-min", "2", "--d-max", "4", "--w-max", "8", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
          "--device", "cpu", "--max-params", "1700", "--max-mflops", "0.03"]


# -- costs ----------------------------------------------------------------------------------------


def _fcn_macs(space: ClassifierSpace, genotype: Genotype) -> int:
    """Multiply-accumulates of the FCN's convs and its linear head, worked out from ARCHITECTURE §3."""
    side = space.image_size
    macs = space.in_channels * 2 * genotype.width * 9 * side * side
    for (cin, cout, stride), op, k in zip(layer_channels(genotype), genotype.ops, genotype.kernels):
        side = (side + 2 * (k // 2) - k) // stride + 1
        macs += (cin * cout * k * k if op == "conv" else cin * k * k + cin * cout) * side * side
    return macs + layer_channels(genotype)[-1][1] * space.num_classes


@pytest.mark.parametrize("genotype", [Genotype.uniform(3, 8), Genotype(6, 12, ["conv", "sep"] * 3, [3, 5, 5, 3, 3, 5])])
def test_mflops_count_the_macs_of_convs_and_linears(genotype):
    space = ClassifierSpace(in_channels=3, num_classes=10, image_size=32)
    assert count_mflops(space.build(genotype), space.input_shape()) * 1e6 == pytest.approx(_fcn_macs(space, genotype))


def test_iresnet100_counts_as_published():
    """Open Model Zoo lists 24.209 GFLOPs (2 per MAC, BN included) for LResNet100E-IR at 112x112: twice our MACs."""
    from facerec.model.backbones import create_backbone

    with torch.device("meta"):  # shapes only: no 65M weights to initialise
        model = create_backbone("iresnet100")
    assert 2 * count_mflops(model, (3, 112, 112)) == pytest.approx(24_209, rel=2e-3)


def test_latency_is_measured_on_onnxruntime():
    space = ClassifierSpace(in_channels=1, num_classes=10, image_size=8)
    ms = onnx_cpu_latency_ms(space.build(Genotype.uniform(2, 4)), space.input_shape(), threads=1, repeats=5)
    assert 0 < ms < float("inf")


def test_budget_values_are_checked():
    with pytest.raises(NasError, match="max_params to be a positive number"):
        Budget(max_params=0)
    with pytest.raises(NasError, match="latency_threads"):
        SearchSettings(latency_threads=0)
    assert not SearchSettings().budget.active and SearchSettings(max_mflops=1.5).budget.active


# -- the search's rules with a budget (no training) -----------------------------------------------


class ToySpace:
    """params = 100 · width · Σ layer cost; conv costs 3, kernel 5 doubles."""

    name = "toy"

    def count_params(self, genotype):
        cost = sum((3 if op == "conv" else 1) * (2 if k == 5 else 1) for op, k in zip(genotype.ops, genotype.kernels))
        return 100 * genotype.width * cost


class Scores:
    """Accuracy from a function of the genotype; remembers every request."""

    def __init__(self, accuracy):
        self.accuracy, self.requests = accuracy, []

    def evaluate(self, genotype, epochs):
        self.requests.append(genotype)
        return TrialResult(accuracy=self.accuracy(genotype), params=0)


def _search(settings, accuracy, costs=None):
    evaluator, records = Scores(accuracy), []
    result = MacroMicroSearch(ToySpace(), evaluator, settings, on_trial=records.append, costs=costs).run()
    return result, evaluator.requests, records


def test_grow_starts_at_the_widest_fitting_width_and_stops_over_budget():
    settings = SearchSettings(d_min=2, d_max=6, w_min=2, w_max=10, w_res=2, e_min=1, macro_only=True,
                              max_params=1600)  # d2-w8 = 1,600 fits; d2-w10 and d3-w8 do not
    result, requests, records = _search(settings, lambda g: 50.0 + 10 * g.depth + g.width)
    assert requests[0] == Genotype.uniform(2, 8)
    assert all(ToySpace().count_params(g) <= 1600 for g in requests)  # nothing over budget is trained
    over = [r for r in records if r.decision == "over_budget"]
    assert [r.genotype for r in over] == [Genotype.uniform(3, 8)] and over[0].result is None
    assert over[0].over_budget == ["params 2,400 > 1,600"]
    assert [r.phase for r in records[2:]] == ["width"] * 3  # Prune from the depth winner: 6, 4, 2 (3 strikes)
    assert [r.epochs for r in records] == [1, 2, 4, 6, 8]  # the untrained candidate was tried: E moved on
    assert result.genotype == Genotype.uniform(2, 8)
    assert result.epochs_total == records[0].epochs + sum(r.epochs for r in records[2:])


def test_no_fitting_net_is_a_one_line_error():
    with pytest.raises(NasError, match="budget: expected a net of depth D_min 2 .* over budget: params 400 > 300"):
        _search(SearchSettings(d_min=2, w_min=2, w_max=8, max_params=300), lambda g: 50.0)


def test_prune_strikes_on_a_stored_slow_latency(tmp_path):
    """Latency decides from the stored figures: a read-only table answers every check (and would refuse a
    candidate it lacks), so nothing is measured again; d2-w6 measured slow is a strike, not a trial."""
    slow = {Genotype.uniform(2, 6).key()}
    candidates = [Genotype.uniform(2, w) for w in (8, 6, 4, 2)] + [Genotype.uniform(3, 8)]
    store = tmp_path / "latency.json"
    store.write_text(json.dumps({"format": 1, "costs": {
        g.key(): {"params": ToySpace().count_params(g), "latency_ms": 9.0 if g.key() in slow else 1.0,
                  "latency_threads": 1} for g in candidates}}))
    settings = SearchSettings(d_min=2, d_max=3, w_min=2, w_max=8, w_res=2, e_min=1, macro_only=True,
                              max_latency_ms=5.0, max_strikes=2)
    _, requests, records = _search(settings, lambda g: 60.0 - g.width, CostTable(ToySpace(), store, measure=False))
    assert Genotype.uniform(2, 6) not in requests and Genotype.uniform(2, 4) in requests
    assert [(r.genotype.width, r.decision) for r in records if r.phase == "width"] == [
        (6, "over_budget"), (4, "accept"), (2, "accept")]
    assert records[-3].over_budget == ["latency 9 ms > 5 ms (1 thread(s))"]


def test_micro_rejects_changes_over_budget_and_they_cost_no_trial():
    # Macro result d2-w4 (800 params); a conv layer triples its cost (1,600), kernel 5 doubles it (1,200).
    settings = SearchSettings(d_min=2, d_max=2, w_min=4, w_max=4, e_min=1, micro_epochs=1, param_slack=10_000,
                              max_params=1300, max_trials=3)
    result, requests, records = _search(settings, lambda g: 50.0 + g.kernels.count(5))
    assert [r.decision for r in records] == ["baseline", "baseline", "over_budget", "over_budget", "accept",
                                             "over_budget"]
    # max_trials 3 counts the trained ones only: the kernel trial still ran after two untrained candidates
    assert len(requests) == 3 and result.genotype == Genotype(2, 4, ["sep", "sep"], [5, 3])


# -- nas-search on digits ---------------------------------------------------------------------------


def _jsonl(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]


def _decisions(run: Path) -> list[tuple]:
    """The search's path as result.json and the log give it: (genotype, epochs, params, fitness, decision)."""
    lines = [line for line in (run / "search.log").read_text().splitlines() if " -> " in line]
    count = json.loads((run / "result.json").read_text())["trials"]
    return [line[line.index("trial "):].removesuffix(" (journal)") for line in lines[-count:]]


def _assert_same_search(run: Path, straight: Path) -> None:
    got, want = json.loads((run / "result.json").read_text()), json.loads((straight / "result.json").read_text())
    for key in ("genotype", "fitness", "over_budget", "cost", "budget"):
        assert got[key] == want[key], key
    assert _decisions(run) == _decisions(straight)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("budget") / "straight"
    assert search_main([*DIGITS, "--output", str(run)]) == 0
    return run


def test_no_candidate_over_budget_is_trained(straight):
    costs = json.loads((straight / "latency.json").read_text())["costs"]
    records = _jsonl(straight)
    trained = [r for r in records if r["accuracy"] is not None]
    over = [r for r in records if r["accuracy"] is None]
    assert over and all(r["over_budget"] and "epoch_accuracies" not in r for r in over)
    for r in trained:
        key = Genotype.from_dict(r["genotype"]).key()
        assert r["params"] <= 1700 and costs[key]["mflops"] <= 0.03
    assert {Genotype.from_dict(r["genotype"]).key() for r in over}.isdisjoint(
        Genotype.from_dict(r["genotype"]).key() for r in trained)
    result = json.loads((straight / "result.json").read_text())
    assert result["budget"] == {"max_params": 1700, "max_mflops": 0.03, "max_latency_ms": None, "latency_threads": 1}
    assert result["cost"]["params"] == result["params"] <= 1700 and 0 < result["cost"]["mflops"] <= 0.03
    assert [o["genotype"] for o in result["over_budget"]] == [Genotype.from_dict(r["genotype"]).key() for r in over]
    assert result["over_budget"][0]["phase"] == "depth"  # Grow stopped at the first net over budget
    report = (straight / "report.md").read_text()
    assert "| budget | params ≤ 1,700 (found " in report and "over budget: params 1,746 > 1,700" in report
    assert f"{len(over)} over budget (not trained)" in report
    assert "does not replay" not in report and "not on the search path" not in report  # all placed on the path


def test_resume_decides_from_the_stored_costs(straight, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(straight, run)
    # What a kill after the 3rd journal line leaves (the journal is append-only): lines 1..3, no result.
    lines = (run / "journal.jsonl").read_text().splitlines(keepends=True)
    (run / "journal.jsonl").write_text("".join(lines[:3]))
    for name in ("result.json", "report.html", "report.md"):
        (run / name).unlink()
    stored = (run / "latency.json").read_text()
    assert search_main(["--resume", str(run)]) == 0
    _assert_same_search(run, straight)
    assert (run / "latency.json").read_text() == stored  # nothing measured again
    assert len(_jsonl(run)) == len(lines)  # the over-budget line was not journaled twice


def test_parallel_search_returns_the_sequential_answer(straight, tmp_path):
    run = tmp_path / "parallel"
    assert search_main([*DIGITS, "--output", str(run), "--parallel", "2"]) == 0
    _assert_same_search(run, straight)


def test_replay_decides_from_the_runs_costs(straight, tmp_path):
    run = tmp_path / "replay"
    assert search_main(["--replay", str(straight), "--output", str(run)]) == 0
    _assert_same_search(run, straight)
    assert json.loads((run / "latency.json").read_text()) == json.loads((straight / "latency.json").read_text())


def test_a_stored_latency_decides_and_the_estimate_honours_budgets(tmp_path, capsys):
    run = tmp_path / "latency"
    slow = Genotype.uniform(2, 6).key()  # Prune's first candidate: a strike, never trained
    flags = ["--d-min", "2", "--d-max", "2", "--w-max", "8", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
             "--device", "cpu", "--max-latency-ms", "50", "--max-trials", "2", "--output", str(run)]
    assert search_main([*flags, "--estimate"]) == 0
    estimate = json.loads((run / "estimate.json").read_text())
    costs = json.loads((run / "latency.json").read_text())["costs"]
    assert all(costs[Genotype.from_dict(t["genotype"]).key()]["latency_ms"] <= 50 for t in estimate["trials"])
    assert "latency ms ≤ 50 at 1 thread(s)" in capsys.readouterr().out
    # The search reads the estimate's measurements; one of them said slow: that net is never trained.
    costs[slow]["latency_ms"] = 999.0
    (run / "latency.json").write_text(json.dumps({"format": 1, "costs": costs}))
    assert search_main(flags) == 0
    over = [r for r in _jsonl(run) if r["accuracy"] is None]
    assert [(Genotype.from_dict(r["genotype"]).key(), r["over_budget"]) for r in over] == [
        (slow, ["latency 999 ms > 50 ms (1 thread(s))"])]
    result, stored = json.loads((run / "result.json").read_text()), json.loads((run / "latency.json").read_text())
    assert stored["costs"][slow]["latency_ms"] == 999.0  # the stored figure was read, not measured again
    found = stored["costs"][Genotype.from_dict(result["genotype"]).key()]
    assert result["cost"]["latency_ms"] == found["latency_ms"] <= 50 and found["latency_threads"] == 1


@pytest.mark.parametrize(("flag", "value"), [("--max-params", "0"), ("--max-params", "2.5"), ("--max-mflops", "abc"),
                                             ("--max-latency-ms", "-3"), ("--max-latency-ms", "nan"),
                                             ("--latency-threads", "0")])
def test_bad_budget_values_exit_2_with_one_line(tmp_path, capsys, flag, value):
    assert search_main(["--device", "cpu", "--output", str(tmp_path / "run"), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} {value}: expected a positive")
    assert not (tmp_path / "run").exists()
    assert face_search_main(["--output", str(tmp_path / "face"), flag, value]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_latency_budget_needs_onnxruntime(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    assert search_main(["--device", "cpu", "--output", str(tmp_path / "run"), "--max-latency-ms", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --max-latency-ms: expected onnxruntime")


# -- facerec-search on the built-in demo faces --------------------------------------------------------


def test_face_search_starts_within_budget(tmp_path):
    # IResNet, embedding 32: d4-w8 = 114,384 params, d4-w6 = 83,760, d5-w6 = 89,568.
    run = tmp_path / "face"
    assert face_search_main(["--output", str(run), "--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4",
                             "--w-max", "8", "--max-trials", "1", "--batch-size", "8", "--embedding-size", "32",
                             "--no-progress", "--max-params", "86000"]) == 0
    records = _jsonl(run)
    assert [(Genotype.from_dict(r["genotype"]).key(), r["accuracy"] is None) for r in records] == [
        (Genotype.uniform(4, 6).key(), False), (Genotype.uniform(5, 6).key(), True)]
    result = json.loads((run / "result.json").read_text())
    assert result["cost"]["params"] == result["params"] == 83_760 and result["budget"]["max_params"] == 86_000
    assert result["cost"]["mflops"] > 0
    report = (run / "report.md").read_text()
    assert "over budget: params 89,568 > 86,000" in report and "does not replay" not in report
    model = torch.load(run / "model.pt", weights_only=True)
    assert Genotype.from_dict(model["genotype"]) == Genotype.uniform(4, 6)


def test_lfw_demo_passes_the_params_budget_to_its_search(tmp_path):
    import argparse

    from facerec.cli.search import build_parser

    sys.path.insert(0, str(REPO / "tools"))
    try:
        from lfw_demo import search_command
    finally:
        sys.path.pop(0)
    args = argparse.Namespace(recipe="auto", device="cpu", seed=0, max_params=500_000)
    command = search_command(args, tmp_path)
    assert command[0] == "facerec-search"
    Path(command[command.index("--data") + 1]).mkdir(parents=True)  # --data names an existing folder
    parsed = build_parser().parse_args(command[1:])
    assert parsed.max_params == "500000" and parsed.size == "small"


def test_journal_keeps_over_budget_lines_apart(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    genotype = Genotype.uniform(3, 8)
    journal.append_over_budget(genotype, 2, {"params": 1746}, ["params 1,746 > 1,700"], phase="depth")
    journal.append(Genotype.uniform(2, 8), 1, TrialResult(accuracy=50.0, params=1658))
    again = Journal(tmp_path / "journal.jsonl")
    assert again.lookup(genotype, 2) is None and again.is_over_budget(genotype, 2)
    assert len(again.records()) == 1 and len(again.all_records()) == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps({"genotype": genotype.to_dict(), "epochs": 2, "accuracy": 5.0,
                                                    "over_budget": ["params"]}) + "\n")
    with pytest.raises(NasError, match="accuracy': null"):
        Journal(tmp_path / "bad.jsonl")
