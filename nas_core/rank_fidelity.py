"""Ranking studies: how well a cheap ranking of candidates agrees with full training (ρ, τ, bootstrap intervals,
cost), and the one driver of their trainings (``RankingStudy``), which nas-study ranking and facerec-study ranking
both run on.

A ranking study trains every candidate fully (the reference, averaged over run seeds) and cheaply: with the
epochs the search's dynamic schedule gives it and with each of a few static epoch counts (``StudyPlan``). Every
training is journaled as it finishes, so a rerun trains only what is missing and a study can run in parts. From
those trainings each domain reads its rankings (the search's dynamic epochs, static epochs, the first epochs of a
full training, other signals of those trials, zero-cost proxies); each is compared with the reference by Spearman
ρ and Kendall τ (scipy), with 95 % percentile intervals from resampling the candidates with replacement, and costs
its trained epochs as a fraction of one full training of every candidate. The grid of candidates and the epochs
the search would give each (``dynamic_epochs``) follow ARCHITECTURE §3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.journal import Journal

Training = tuple[int, Genotype, int]  # (run seed, genotype, epochs): one training of a study
# Trains a list of trainings, calling on_result(i, result) as the i-th finishes (in any order).
Trainer = Callable[[list[Training], Callable[[int, TrialResult], None]], None]


@dataclass
class Ranking:
    """One way to rank the candidates: a score per candidate (higher is better) and the epochs it trained."""

    name: str
    description: str
    scores: list[float]
    epochs: list[int]  # epochs trained per candidate (0 for a zero-cost proxy)


def dynamic_epochs(settings: Any, genotype: Genotype) -> int:
    """The epochs the search gives a macro candidate (ARCHITECTURE §3): Grow from D_min at W_max reaches its
    depth at E_min + (depth − D_min)·step, then Prune to its width adds width_step per W_res below W_max."""
    steps, rest = divmod(settings.w_max - genotype.width, settings.w_res)
    if genotype.depth < settings.d_min or steps < 0 or rest:
        raise NasError(f"{genotype.key()}: expected depth ≥ D_min {settings.d_min} and a width W_max − k·W_res "
                       f"(W_max {settings.w_max}, W_res {settings.w_res})")
    return (settings.e_min + (genotype.depth - settings.d_min) * settings.depth_epoch_step
            + steps * settings.width_epoch_step)


def grid_candidates(depths: Sequence[int], widths: Sequence[int]) -> list[Genotype]:
    """Every depth × width, all sep3 (the macro candidates' form), ordered by (depth, descending width)."""
    return [Genotype.uniform(d, w) for d in sorted(set(depths)) for w in sorted(set(widths), reverse=True)]


@dataclass(frozen=True)
class StudyPlan:
    """What a ranking study trains: every candidate (with the epochs the search's dynamic schedule gives it) fully,
    ``reference`` epochs for each of ``seeds`` run seeds from ``seed``; with its dynamic epochs and with each of
    ``static`` epochs, run seed ``seed``."""

    candidates: list[tuple[Genotype, int]]
    static: list[int]
    reference: int
    seeds: int = 1
    seed: int = 0

    def trainings(self) -> list[Training]:
        """Every distinct training, candidate by candidate (a study cut short covers whole candidates): the full
        ones, the dynamic one, the static ones. A dynamic trial may be a static or a full one as well."""
        order: dict[tuple[int, str, int], Training] = {}
        for genotype, dynamic in self.candidates:
            wanted = [(self.seed + s, self.reference) for s in range(self.seeds)]
            wanted += [(self.seed, epochs) for epochs in (dynamic, *self.static)]
            for seed, epochs in wanted:
                order.setdefault((seed, genotype.key(), epochs), (seed, genotype, epochs))
        return list(order.values())


class RankingStudy:
    """The trainings of a StudyPlan, journaled in ``out``: run seed ``plan.seed`` in OUT/journal.jsonl, another seed S
    in OUT/journal-seedS.jsonl. ``run`` trains what is missing; ``table`` and ``results`` read the journals."""

    def __init__(self, out: str | Path, plan: StudyPlan):
        self.out, self.plan = Path(out), plan
        self.trained = 0  # new trainings of this invocation
        self._journals: dict[int, Journal] = {}

    def journal(self, run_seed: int) -> Journal:
        if run_seed not in self._journals:
            name = "journal.jsonl" if run_seed == self.plan.seed else f"journal-seed{run_seed}.jsonl"
            self._journals[run_seed] = Journal(self.out / name)
        return self._journals[run_seed]

    def lookup(self, training: Training) -> TrialResult | None:
        seed, genotype, epochs = training
        return self.journal(seed).lookup(genotype, epochs)

    def run(self, train: Trainer, limit: int | None = None) -> None:
        """Train the trainings not journaled yet (the first ``limit`` of them, in plan order), journaling each the
        moment it finishes."""
        todo = [t for t in self.plan.trainings() if self.lookup(t) is None][:limit]

        def journal(i: int, result: TrialResult) -> None:
            seed, genotype, epochs = todo[i]
            self.journal(seed).append(genotype, epochs, result, study="ranking", run_seed=seed)
            self.trained += 1

        if todo:
            train(todo, journal)

    def progress(self) -> tuple[int, int]:
        """(trainings journaled, trainings in the plan)."""
        trainings = self.plan.trainings()
        return sum(self.lookup(t) is not None for t in trainings), len(trainings)

    def results(self, pairs: Sequence[tuple[Genotype, int]]) -> list[TrialResult | None]:
        """The journaled result of each (genotype, epochs) at run seed ``plan.seed`` (None: not trained yet)."""
        return [self.lookup((self.plan.seed, genotype, epochs)) for genotype, epochs in pairs]

    def table(self) -> dict[str, dict[str, Any]]:
        """Per candidate key: "reference" [result per seed], "dynamic" result, "static" {epochs: result}; None
        for a training not done yet."""
        plan = self.plan
        table: dict[str, dict[str, Any]] = {"reference": {}, "dynamic": {}, "static": {}}
        for genotype, dynamic in plan.candidates:
            key = genotype.key()
            table["reference"][key] = [self.lookup((plan.seed + s, genotype, plan.reference)) for s in range(plan.seeds)]
            table["dynamic"][key] = self.lookup((plan.seed, genotype, dynamic))
            table["static"][key] = {e: self.lookup((plan.seed, genotype, e)) for e in plan.static}
        return table


def _correlations(scores: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    import warnings

    from scipy.stats import kendalltau, spearmanr

    with warnings.catch_warnings():  # a constant resample: NaN, reported as 0 below
        warnings.simplefilter("ignore")
        rho, tau = spearmanr(scores, reference).statistic, kendalltau(scores, reference).statistic
    # a constant ranking (all ties) correlates with nothing
    return (0.0 if math.isnan(rho) else float(rho)), (0.0 if math.isnan(tau) else float(tau))


def rank_agreement(scores: Sequence[float], reference: Sequence[float], *, resamples: int = 2000,
                   seed: int = 0) -> dict[str, Any]:
    """Spearman ρ and Kendall τ of ``scores`` against ``reference`` with 95 % bootstrap intervals (candidates
    resampled with replacement; resamples with fewer than 3 distinct candidates are drawn again)."""
    scores, reference = np.asarray(scores, float), np.asarray(reference, float)
    if scores.shape != reference.shape or len(scores) < 3:
        raise NasError("rank agreement: expected two score lists over the same ≥ 3 candidates")
    rho, tau = _correlations(scores, reference)
    rng = np.random.default_rng(seed)
    draws = []
    while len(draws) < resamples:
        pick = rng.integers(0, len(scores), len(scores))
        if len(set(pick.tolist())) >= 3:
            draws.append(_correlations(scores[pick], reference[pick]))
    low, high = np.percentile(np.asarray(draws), [2.5, 97.5], axis=0)
    return {"spearman": rho, "spearman_ci": [float(low[0]), float(high[0])],
            "kendall": tau, "kendall_ci": [float(low[1]), float(high[1])]}


def compare_rankings(rankings: Sequence[Ranking], reference: Sequence[float], reference_epochs: int,
                     **bootstrap: Any) -> list[dict[str, Any]]:
    """One row per ranking: its agreement with the reference and its cost (its epochs over one full training
    of every candidate)."""
    full = reference_epochs * len(reference)
    rows = []
    for ranking in rankings:
        rows.append({"name": ranking.name, "description": ranking.description,
                     **rank_agreement(ranking.scores, reference, **bootstrap),
                     "epochs": int(sum(ranking.epochs)), "cost": float(sum(ranking.epochs)) / full})
    return rows


def rank_average(*score_lists: Sequence[float]) -> list[float]:
    """A combined ranking: the mean of each candidate's ranks under several rankings (ties averaged)."""
    from scipy.stats import rankdata

    return np.mean([rankdata(s) for s in score_lists], axis=0).tolist()


def fidelity_png(rows: Sequence[dict[str, Any]], title: str) -> bytes:
    """PNG bytes: each ranking's Spearman ρ (with its 95 % interval) against its cost."""
    from nas_core.report.document import figure_png, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for row in rows:
        low, high = row["spearman_ci"]
        ax.errorbar(100 * row["cost"], row["spearman"], yerr=[[row["spearman"] - low], [high - row["spearman"]]],
                    fmt="o", capsize=3)
        ax.annotate(row["name"], (100 * row["cost"], row["spearman"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("cost (% of one full training of every candidate)")
    ax.set_ylabel("Spearman ρ vs full training")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title, fontsize=10)
    return figure_png(fig, dpi=110)
