"""Each rule of Algorithm 1 (ARCHITECTURE §3) checked on small synthetic evaluators."""

import pytest

from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.ranking import EpochSchedule, at_least, greater
from nas_core.search import MacroMicroSearch
from nas_core.settings import PRESETS, SearchSettings, settings_for


class ToySpace:
    """params = 100 · width · Σ layer cost; conv costs 3, kernel 5 doubles: easy to work out by hand."""

    name = "toy"

    def build(self, genotype):
        raise NotImplementedError

    def count_params(self, genotype):
        cost = sum((3 if op == "conv" else 1) * (2 if k == 5 else 1)
                   for op, k in zip(genotype.ops, genotype.kernels))
        return 100 * genotype.width * cost


class TableEvaluator:
    """Accuracy from a function of the genotype; remembers every request."""

    def __init__(self, accuracy):
        self.accuracy = accuracy
        self.requests = []

    def evaluate(self, genotype, epochs):
        self.requests.append((genotype, epochs))
        return TrialResult(accuracy=self.accuracy(genotype), params=0, seconds=1.0)


def _macro_only(**kw):
    return SearchSettings(macro_only=True, **kw)


def _run(accuracy, settings, space=None):
    evaluator = TableEvaluator(accuracy)
    records = []
    result = MacroMicroSearch(space or ToySpace(), evaluator, settings, on_trial=records.append).run()
    return result, evaluator, records


def test_grow_strikes_neutral_and_reset():
    depth_acc = {10: 50.0, 11: 50.2, 12: 50.0, 13: 50.28, 14: 49.0, 15: 50.31, 16: 49.0, 17: 49.0, 18: 49.0}
    result, evaluator, records = _run(
        lambda g: depth_acc[g.depth] if g.width == 64 else 0.0, _macro_only(d_min=10, d_max=30))
    grow = [r for r in records if r.phase == "depth"]
    assert [r.genotype.depth for r in grow] == list(range(10, 19))
    # 12: below best-0.05 -> strike 1; 13: +0.08 -> neutral (no reset); 14: strike 2;
    # 15: +0.11 -> accept, strikes reset; 16, 17, 18: three strikes -> stop.
    assert [r.decision for r in grow] == ["baseline", "accept", "strike", "neutral", "strike", "accept",
                                          "strike", "strike", "strike"]
    widths = [r for r in records if r.phase == "width"]
    assert widths and all(r.genotype.depth == 15 for r in widths)  # Prune starts from the best depth
    assert result.macro_genotype == Genotype.uniform(15, 64)
    assert all(g.ops == ("sep",) * g.depth and set(g.kernels) == {3} for g, _ in evaluator.requests)


def test_grow_tries_one_past_the_last_tried_depth_not_the_best():
    acc = {10: 60.0, 11: 59.0, 12: 60.05}  # 11 strikes, 12 is neutral; next is 13, not 12 again
    result, evaluator, _ = _run(lambda g: acc.get(g.depth, 0.0) if g.width == 64 else 0.0,
                                _macro_only(d_max=30))
    assert [g.depth for g, _ in evaluator.requests][:4] == [10, 11, 12, 13]


def test_grow_stops_at_d_max_inclusive():
    result, evaluator, records = _run(lambda g: 10.0 * g.depth if g.width == 64 else 0.0,
                                      _macro_only(d_min=10, d_max=12))
    assert [r.genotype.depth for r in records if r.phase == "depth"] == [10, 11, 12]
    assert result.macro_genotype.depth == 12


def test_prune_ties_accept_and_stop_after_third_strike():
    # depth phase: 10 baseline, 11..13 three strikes -> depth 10; then widths 62.. with these scores
    width_acc = {62: 70.0, 60: 69.0, 58: 70.0, 56: 69.9, 54: 69.0, 52: 68.0, 50: 71.0}

    def accuracy(g):
        if g.width == 64:
            return 70.0 if g.depth == 10 else 60.0
        return width_acc.get(g.width, 0.0)

    result, _, records = _run(accuracy, _macro_only(d_max=30))
    prune = [r for r in records if r.phase == "width"]
    assert [r.genotype.width for r in prune] == [62, 60, 58, 56, 54, 52]
    # 62 ties 70.0 -> accept; 60 strike; 58 ties -> accept (resets); 56, 54, 52 strikes -> stop
    assert [r.decision for r in prune] == ["accept", "strike", "accept", "strike", "strike", "strike"]
    assert result.macro_genotype == Genotype.uniform(10, 58)
    assert result.genotype == result.macro_genotype  # macro_only: no micro trials
    assert not [r for r in records if r.phase not in ("depth", "width")]


@pytest.mark.parametrize(("w_max", "expected"), [(24, [22, 20, 18, 16]), (23, [21, 19, 17])])
def test_prune_stops_at_w_min(w_max, expected):
    def accuracy(g):
        return 50.0 if g.width == w_max and g.depth == 10 else (40.0 if g.width == w_max else 60.0 - g.width / 100)

    result, _, records = _run(accuracy, _macro_only(w_min=16, w_max=w_max))
    assert [r.genotype.width for r in records if r.phase == "width"] == expected  # never below W_min
    assert result.macro_genotype.width == expected[-1]


def test_epoch_counter_counts_tried_candidates():
    depth_acc = {10: 50.0, 11: 50.5, 12: 40.0, 13: 40.0, 14: 40.0}

    def accuracy(g):
        return depth_acc[g.depth] if g.width == 64 else 30.0

    _, _, records = _run(accuracy, SearchSettings(d_max=30, e_min=10))
    assert [(r.phase, r.epochs) for r in records if r.phase in ("depth", "width")] == [
        ("depth", 10), ("depth", 11), ("depth", 12), ("depth", 13), ("depth", 14),  # +1 per depth tried
        ("width", 16), ("width", 18), ("width", 20),  # +2 per width tried, from the last tried depth
    ]
    assert {r.epochs for r in records if r.phase in ("micro_base", "ops", "kernels")} == {2}


def test_epoch_schedule_class():
    schedule = EpochSchedule(e_min=10, depth_step=1, width_step=2, micro_epochs=2)
    assert schedule.baseline() == 10
    assert [schedule.next_depth() for _ in range(3)] == [11, 12, 13]
    assert [schedule.next_width() for _ in range(2)] == [15, 17]
    assert schedule.micro() == 2 and schedule.current == 17


def test_micro_replace_then_update_with_width_matching():
    # depth 3 fixed, width 60 fixed: the macro result is sss/333 at W_m = 60, params 100·60·3 = 18,000.
    micro_acc = {
        ("sep", "sep", "sep", 3, 3, 3): 40.0,   # b
        ("conv", "sep", "sep", 3, 3, 3): 41.0,  # accept, b = 41
        ("conv", "conv", "sep", 3, 3, 3): 41.0,  # tie: rejected (strictly better only)
        ("conv", "sep", "conv", 3, 3, 3): 40.5,  # reject
        ("conv", "sep", "sep", 5, 3, 3): 41.5,  # accept (b carried over from the op phase)
        ("conv", "sep", "sep", 5, 5, 3): 41.2,  # reject
        ("conv", "sep", "sep", 5, 3, 5): 42.0,  # accept
    }

    def accuracy(g):
        return micro_acc[(*g.ops, *g.kernels)]

    settings = SearchSettings(d_min=3, d_max=3, w_min=60, w_max=60, param_slack=0)
    result, evaluator, records = _run(accuracy, settings)
    micro = [(r.phase, r.layer, r.genotype.width, r.decision) for r in records if r.phase != "depth"]
    assert micro == [
        ("micro_base", None, 60, "baseline"),
        # Replace: width lowered from W_m = 60 until params <= 18,000 (cost 5 -> 36, cost 7 -> 25)
        ("ops", 0, 36, "accept"), ("ops", 1, 25, "reject"), ("ops", 2, 25, "reject"),
        # Update: reference = op result (width 36, 18,000 params): cost 8 -> 22, cost 9 -> 20
        ("kernels", 0, 22, "accept"), ("kernels", 1, 20, "reject"), ("kernels", 2, 20, "accept"),
    ]
    assert result.genotype == Genotype(3, 20, ("conv", "sep", "sep"), (5, 3, 5))
    assert result.macro_genotype == Genotype.uniform(3, 60)
    assert result.accuracy == 42.0 and result.params == 100 * 20 * 9
    assert all(rec.decision != "strike" for rec in records if rec.phase in ("ops", "kernels"))


def test_micro_width_matching_uses_the_slack():
    settings = SearchSettings(d_min=3, d_max=3, w_min=60, w_max=60, param_slack=1_000)
    _, _, records = _run(lambda g: 1.0, settings)
    # conv at layer 0 costs 5: 100·w·5 <= 19,000 -> w = 38
    assert [r.genotype.width for r in records if r.phase == "ops"][0] == 38


def test_max_trials_returns_best_so_far():
    result, evaluator, records = _run(lambda g: float(g.depth), SearchSettings(max_trials=4))
    assert len(evaluator.requests) == 4 and len(records) == 4
    assert result.genotype == Genotype.uniform(13, 64) and result.accuracy == 13.0
    # a budget that ends inside the micro phase returns the best micro genotype so far
    settings = SearchSettings(d_min=3, d_max=3, w_min=60, w_max=60, param_slack=0, max_trials=3)
    result, _, records = _run(lambda g: 50.0 if g.ops[0] == "conv" else 40.0, settings)
    assert [r.phase for r in records] == ["depth", "micro_base", "ops"]
    assert result.genotype.ops[0] == "conv" and result.accuracy == 50.0


def test_on_trial_sees_every_trial_in_order():
    result, evaluator, records = _run(lambda g: 1.0, SearchSettings(d_min=3, d_max=4, w_min=60, w_max=62))
    assert [r.index for r in records] == list(range(len(evaluator.requests)))
    assert [r.genotype for r in records] == [g for g, _ in evaluator.requests]
    assert result.trials == records
    assert result.epochs_total == sum(e for _, e in evaluator.requests)
    assert result.seconds == float(len(records))


def test_float32_thresholds_match_the_reference():
    # fashionmnist_64 depth 16 and kmnist_128 depth 27 sit exactly on a threshold in float32
    assert at_least(93.879997, 93.779999, 0.10)
    assert not (93.879997 >= 93.779999 + 0.10)  # float64 would decide otherwise
    assert at_least(99.009995, 99.059998, -0.05)
    assert not (99.009995 >= 99.059998 - 0.05)
    assert at_least(5.0, 5.0) and not greater(5.0, 5.0) and greater(5.000001, 5.0)


def test_presets_and_overrides():
    assert settings_for("tiny").w_max == 64 and settings_for("mobile").w_max == 128
    small = settings_for("small")
    assert (small.w_max, small.d_min, small.d_max) == (32, 4, 49)
    assert settings_for("medium").w_max == 64
    assert settings_for("tiny", w_max=None, seed=3).seed == 3  # None overrides are ignored
    assert settings_for("tiny", seed=3).w_max == 64
    assert set(PRESETS) == {"tiny", "mobile", "small", "medium"}
    with pytest.raises(NasError, match="huge: unknown search size"):
        settings_for("huge")
    with pytest.raises(NasError, match="unknown setting"):
        settings_for("tiny", wmax=3)
    with pytest.raises(NasError, match="w_min <= w_max"):
        SearchSettings(w_min=70, w_max=64)
    with pytest.raises(NasError, match="micro_kernels"):
        SearchSettings(micro_kernels=(7,))
    settings = SearchSettings(micro_kernels=[5], max_trials=9)
    assert SearchSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(NasError, match="unknown setting"):
        SearchSettings.from_dict({"bogus": 1})
