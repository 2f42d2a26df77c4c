"""bench/search_value.py's table: means, sd and 95 % intervals over seeds, each budget's RI against its random nets,
the quiet latency pass taking over the figures measured after each training, and the Pareto plot (README "Does
the search pay?")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_value_bench", ROOT / "bench" / "search_value.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trained(net: str, seed: int, accuracy: float, latency: float, cpu_seconds: float, search=None) -> dict:
    budget = net.split("-", 1)[1] if "-" in net else None
    return {"step": f"{net}-s{seed}", "net": net, "budget": budget, "seed": seed, "accuracy": accuracy, "std": 0.015,
            "train_wall_seconds": 2 * cpu_seconds, "train_cpu_seconds": cpu_seconds, "params": 1000, "mflops": 1.0,
            "latency_ms": latency, "search_cpu_seconds": search}


def _journal(bench, folder: Path, rows: list[dict]):
    path = folder / "journal.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return bench.Journal(path)


def test_steps_name_net_budget_and_seed_and_run_most_decisive_first(bench):
    assert bench.parse_step("found-mfn-s2") == ("found-mfn", "mfn", 2)
    assert bench.parse_step("random3-lat1-s0") == ("random3-lat1", "lat1", 0)
    assert bench.parse_step("mobilefacenet-s1") == ("mobilefacenet", None, 1)
    assert bench.ORDER[:2] == ("found-mfn-s0", "mobilefacenet-s0") and len(set(bench.ORDER)) == len(bench.ORDER)
    # every budget: 3 seeds of its found net and 3 random nets; MobileFaceNet 3 seeds, IResNet-18 one
    nets = [bench.parse_step(step)[0] for step in bench.ORDER]
    for budget in bench.BUDGETS:
        assert nets.count(f"found-{budget}") == 3
        assert sorted(n for n in nets if n.startswith("random") and n.endswith(budget)) == [
            f"random{i}-{budget}" for i in (1, 2, 3)]
    assert nets.count("mobilefacenet") == 3 and nets.count("iresnet18") == 1


def test_interval_is_students_t_over_seeds_else_binomial_on_the_pairs(bench):
    # By hand: mean 84, sd sqrt(2), t(1 df) 12.706: 84 ± 12.706 · sqrt(2) / sqrt(2) = 84 ± 12.706.
    low, high = bench.interval([83.0, 85.0], 12_000)
    assert (low, high) == pytest.approx((84 - 12.706, 84 + 12.706))
    # one seed: 1.96 · sqrt(80 · 20 / 12,000) = 0.7157 points
    assert bench.interval([80.0], 12_000) == pytest.approx((80 - 0.7157, 80 + 0.7157), abs=1e-4)


def test_table_means_seeds_and_scores_each_found_net_against_its_budgets_random_ones(bench, tmp_path):
    rows = [_trained("found-lat1", 0, 0.83, 0.8, 600, search=450.0), _trained("found-lat1", 1, 0.85, 1.2, 720, 450.0),
            _trained("random1-lat1", 0, 0.82, 0.9, 300), _trained("random2-lat1", 0, 0.80, 0.7, 900),
            _trained("random1-lat3", 0, 0.90, 2.9, 900), _trained("mobilefacenet", 0, 0.86, 7.0, 2000),
            {"step": "budget", "latency_ms": 7.0}, {"step": "data", "unseen_pairs": 12_000}]
    result = bench.table(_journal(bench, tmp_path, rows))
    found = next(r for r in result["rows"] if r["net"] == "found-lat1")
    # By hand: mean(83, 85) = 84, sample sd = sqrt(2) = 1.414..., CPU minutes mean(600, 720) / 60 = 11.
    assert found["seeds"] == 2 and found["accuracy"] == pytest.approx(84.0)
    assert found["sd"] == pytest.approx(2 ** 0.5) and found["train_cpu_minutes"] == pytest.approx(11.0)
    assert found["search_cpu_minutes"] == pytest.approx(7.5)
    # RI = 100 * (84 - 81) / 81 against lat1's random nets only (random1-lat3's 90 % is another budget's)
    assert result["ri"] == {"lat1": {"ri": pytest.approx(100 * 3 / 81), "randoms": 2,
                                     "found_above_every_random": True}}
    assert result["budgets_ms"] == {"mfn": 7.0, "lat3": 3.0, "lat1": 1.0}
    # rows by budget as BUDGETS orders them, the references last
    assert [r["net"] for r in result["rows"]] == ["random1-lat3", "found-lat1", "random1-lat1", "random2-lat1",
                                                  "mobilefacenet"]
    # No quiet pass yet: the latency of a net is the one measured after its first training.
    assert found["latency_ms"] == 0.8 and result["latency"] == "after each training"


def test_quiet_latency_pass_replaces_the_figures_taken_after_each_training(bench, tmp_path):
    rows = [_trained("found-lat1", 0, 0.83, 0.8, 600), _trained("random1-lat1", 0, 0.86, 0.9, 300),
            {"step": "latency", "threads": 1, "repeats": 50, "ms": {"found-lat1": 0.61, "random1-lat1": 0.74}},
            {"step": "latency", "threads": 1, "repeats": 80, "ms": {"found-lat1": 0.63, "random1-lat1": 0.71}}]
    result = bench.table(_journal(bench, tmp_path, rows))
    by_net = {r["net"]: r for r in result["rows"]}
    assert by_net["found-lat1"]["latency_ms"] == 0.63 and by_net["random1-lat1"]["latency_ms"] == 0.71  # latest
    assert result["latency"].startswith("one quiet") and result["ri"]["lat1"]["found_above_every_random"] is False
    assert result["ri"]["lat1"]["ri"] < 0


def test_pareto_plot_is_drawn_from_the_table(bench, tmp_path):
    rows = [_trained("found-lat1", 0, 0.83, 0.8, 600), _trained("found-lat1", 1, 0.84, 0.8, 600),
            _trained("found-lat3", 0, 0.86, 2.5, 600), _trained("mobilefacenet", 0, 0.85, 7.0, 2000),
            _trained("random1-lat1", 0, 0.80, 0.9, 300), {"step": "budget", "latency_ms": 7.0}]
    bench.pareto_plot(bench.table(_journal(bench, tmp_path, rows)), tmp_path / "pareto.png")
    import cv2

    image = cv2.imread(str(tmp_path / "pareto.png"))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 500


def test_latency_pass_with_nothing_trained_or_no_rounds_is_one_error_line(bench, tmp_path, capsys):
    for rounds in ("0", "5"):  # nothing trained yet
        assert bench.main(["--work", str(tmp_path), "--latency", rounds]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    _journal(bench, tmp_path, [_trained("found-lat1", 0, 0.83, 0.8, 600)])
    assert bench.main(["--work", str(tmp_path), "--latency", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--latency" in err[0]


def test_readme_shows_the_tables_the_benches_print_from_their_json(bench):
    """README's "Does the search pay?" tables are what the benches print from their committed JSON."""
    readme = (ROOT / "README.md").read_text()
    work = ROOT / "bench" / "results" / "search_value_4k"
    value = json.loads((work / "search_value.json").read_text())
    if value["rows"]:
        assert bench.markdown(value) in readme
    else:  # the bench runs over several sessions: README says where it stands
        assert "No row of the table has finished yet" in readme
    spec = importlib.util.spec_from_file_location("recipe_study_bench", ROOT / "bench" / "recipe_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    recipes = json.loads((work / "recipe_study.json").read_text())
    assert recipes["rows"] and study.markdown(recipes) in readme
