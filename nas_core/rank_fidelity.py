"""How well a cheap ranking of candidates agrees with full training: ρ, τ, bootstrap intervals, cost.

A ranking study trains every candidate fully (the reference, averaged over seeds) and scores it cheaply in
several ways (short trials with the search's dynamic epochs, static epochs, the first epochs of a full
training, other signals of those trials, zero-cost proxies). Each cheap ranking is compared with the
reference by Spearman ρ and Kendall τ (scipy), with 95 % percentile intervals from resampling the
candidates with replacement, and costs its trained epochs as a fraction of one full training of every
candidate. The grid of candidates and the epochs the search would give each (``dynamic_epochs``) follow
ARCHITECTURE §3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_core.errors import NasError
from nas_core.genotype import Genotype


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
