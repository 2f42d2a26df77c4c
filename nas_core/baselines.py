"""Random-sampling baseline, the RI metric, and the rank-correlation study (static vs dynamic epochs).

RI (relative improvement, Yang et al., "NAS evaluation is frustratingly hard", ICLR 2020) compares the found
network with the *average* randomly sampled architecture of the same space, trained with the same protocol:
``RI = 100 · (acc_found − mean(acc_random)) / mean(acc_random)`` (percent; > 0 means the search helped).

Budget of the random baseline (``samples_for_budget``): "trials" samples as many architectures as the search
trained (same trial count); "epochs" samples as many as fit in the search's total training epochs when each
random architecture trains ``epochs_per_sample`` epochs (same total epochs).

Rank correlation: candidates in the order the search meets them, with the search's dynamic epoch schedule
(E_min, +1 per depth candidate tried, +2 per width candidate tried; ARCHITECTURE §3), against a static schedule
(every candidate the same epochs) — each ranking's Spearman ρ with a longer-trained reference ranking.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import KERNELS, OPS, Genotype


def sample_genotypes(settings: Any, count: int, seed: int) -> list[Genotype]:
    """``count`` architectures drawn uniformly from the space the search explores.

    Depth in [d_min, d_max]; width among the widths Prune can reach (w_max − k·w_res ≥ w_min); op and
    kernel of each layer uniform over {sep, conv} × {3, 5}. Seeded, so a baseline is reproducible.
    """
    rng = random.Random(seed)
    widths = list(range(settings.w_max, settings.w_min - 1, -settings.w_res))
    if settings.d_min > settings.d_max or not widths:
        raise NasError("settings: expected d_min ≤ d_max and w_min ≤ w_max for random sampling")
    genotypes = []
    for _ in range(count):
        depth = rng.randint(settings.d_min, settings.d_max)
        genotypes.append(Genotype(depth, rng.choice(widths), tuple(rng.choice(OPS) for _ in range(depth)),
                                  tuple(rng.choice(KERNELS) for _ in range(depth))))
    return genotypes


def samples_for_budget(mode: str, *, trials: int, epochs_total: int, epochs_per_sample: int) -> int:
    """How many random architectures match a search's budget ("trials" or "epochs", see module doc)."""
    if mode == "trials":
        return max(1, trials)
    if mode == "epochs":
        return max(1, epochs_total // max(1, epochs_per_sample))
    raise NasError(f"--budget {mode}: expected 'trials' or 'epochs'")


def relative_improvement(found_accuracy: float, random_accuracies: Sequence[float]) -> float:
    """RI in percent: 100 · (found − mean(random)) / mean(random)."""
    if not random_accuracies:
        raise NasError("random baseline: expected at least one random architecture")
    mean = statistics.fmean(random_accuracies)
    if mean <= 0:
        raise NasError("random baseline: expected a positive mean accuracy")
    return 100.0 * (found_accuracy - mean) / mean


def summarize_random(found_accuracy: float, random_accuracies: Sequence[float]) -> dict[str, float]:
    return {
        "found_accuracy": found_accuracy,
        "random_mean": statistics.fmean(random_accuracies),
        "random_std": statistics.pstdev(random_accuracies),
        "random_best": max(random_accuracies),
        "random_count": len(random_accuracies),
        "ri": relative_improvement(found_accuracy, random_accuracies),
    }


def schedule_candidates(settings: Any, depth_steps: int, width_steps: int) -> list[tuple[Genotype, int]]:
    """Macro candidates with the search's dynamic epochs (ARCHITECTURE §3).

    Grow: (D_min + i, W_max, all sep3) at E_min + i for i < depth_steps; then Prune at the deepest of them:
    width W_max − j·W_res at E + 2j for 1 ≤ j ≤ width_steps (while ≥ W_min).
    """
    candidates = []
    epochs = settings.e_min
    depth = settings.d_min
    for i in range(depth_steps):
        depth = min(settings.d_min + i, settings.d_max)
        epochs = settings.e_min + i
        candidates.append((Genotype.uniform(depth, settings.w_max), epochs))
    for j in range(1, width_steps + 1):
        width = settings.w_max - j * settings.w_res
        if width < settings.w_min:
            break
        candidates.append((Genotype.uniform(depth, width), epochs + 2 * j))
    return candidates


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) != len(b) or len(a) < 2:
        raise NasError("rank correlation: expected two rankings of the same ≥ 2 candidates")
    rho = spearmanr(a, b).statistic
    return float(rho) if not math.isnan(rho) else 0.0  # constant ranking: no correlation to report


def ranking_study(run: Callable[[list[tuple[Genotype, int]]], list[TrialResult]],
                  candidates: Sequence[tuple[Genotype, int]], static_epochs: int,
                  reference_epochs: int) -> dict[str, Any]:
    """Spearman ρ of the static and the dynamic ranking against the reference ranking.

    ``run`` trains a list of (genotype, epochs) and returns their TrialResults (through an executor).
    Scores are the trials' ranking scores (best accuracy over epochs on the ranking split).
    """
    genotypes = [g for g, _ in candidates]
    dynamic = run(list(candidates))
    static = run([(g, static_epochs) for g in genotypes])
    reference = run([(g, reference_epochs) for g in genotypes])
    ref_scores = [r.accuracy for r in reference]
    rows = [
        {"genotype": g.to_dict(), "dynamic_epochs": e, "dynamic": d.accuracy, "static": s.accuracy,
         "reference": r.accuracy}
        for (g, e), d, s, r in zip(candidates, dynamic, static, reference)
    ]
    return {
        "static_epochs": static_epochs,
        "reference_epochs": reference_epochs,
        "spearman_static": spearman([r.accuracy for r in static], ref_scores),
        "spearman_dynamic": spearman([r.accuracy for r in dynamic], ref_scores),
        "candidates": rows,
    }
