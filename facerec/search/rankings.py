"""Face rankings: what a face ranking study reads from its trials, and its report (ARCHITECTURE §3, §4).

A study (nas_core.rank_fidelity.RankingStudy, run by facerec.search.study) trains each candidate fully (the
reference: last-epoch accuracy, mean over run seeds) and cheaply (the search's dynamic epochs; static epochs).
From those trials it reads these rankings (higher score = better):

- ``paper``        the dynamic schedule exactly as the search runs it, best-epoch 10-fold accuracy;
- ``static-K``     every candidate K epochs (K = E_min is the paper's static baseline);
- ``truncated-K``  the first K epochs of the full training (same lr schedule as the full run, read at epoch K):
                   a short trial that does not anneal to lr 0, so it does not reward nets that converge fast;
- ``*-auc``        the same trials scored by the pairs' ROC AUC (threshold-free, less quantised than 10-fold
                   accuracy on a few thousand pairs);
- ``static-K-loss`` the training loss of the last epoch (lower = better);
- ``naswot``       NASWOT at initialisation (nas_core.zero_cost; no training), and ``static-K+naswot``, the mean
                   of the two rankings' ranks (the proxy as a tie-breaker).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eval_protocols.embed import normalize
from nas_core.evaluator import TrialResult, trial_seed
from nas_core.rank_fidelity import Ranking, RankingStudy, compare_rankings, rank_agreement, rank_average
from nas_core.zero_cost import naswot_score

NASWOT_BATCH = 64


def naswot_scores(space, val_set, candidates, seed: int) -> dict[str, float]:
    """NASWOT of each candidate at its seeded initialisation on the first held-out faces (no labels used)."""
    batch = torch.from_numpy(normalize(val_set.images[:NASWOT_BATCH])).permute(0, 3, 1, 2).contiguous()
    scores = {}
    for genotype, _ in candidates:
        torch.manual_seed(trial_seed(seed, genotype, 0))
        scores[genotype.key()] = naswot_score(space.build(genotype), batch)
    return scores


def _last(values: list) -> float:
    return float(values[-1])


def _readouts(table: dict, candidates, static: list[int], truncated: list[int]) -> list[Ranking]:
    """Every ranking of the module docstring from the study's trials (all present)."""
    def best_auc(r: TrialResult) -> float:
        return max(a for a in r.extra["epoch_auc"] if a is not None)

    keys = [g.key() for g, _ in candidates]
    dynamic_epochs = [e for _, e in candidates]
    ref0 = [table["reference"][k][0] for k in keys]
    dyn = [table["dynamic"][k] for k in keys]
    rankings = [
        Ranking("paper", "dynamic epochs as the search runs them, best-epoch accuracy",
                [r.accuracy for r in dyn], dynamic_epochs),
        Ranking("paper-auc", "dynamic epochs, best-epoch pair AUC", [best_auc(r) for r in dyn], dynamic_epochs),
    ]
    for e in static:
        runs = [table["static"][k][e] for k in keys]
        cost = [e] * len(keys)
        rankings += [Ranking(f"static-{e}", f"{e} epoch(s) each, best-epoch accuracy", [r.accuracy for r in runs], cost),
                     Ranking(f"static-{e}-auc", f"{e} epoch(s) each, best-epoch pair AUC", [best_auc(r) for r in runs],
                             cost),
                     Ranking(f"static-{e}-loss", f"{e} epoch(s) each, last-epoch training loss (lower is better)",
                             [-_last(r.extra["epoch_loss"]) for r in runs], cost)]
    for k in truncated:
        cost = [k] * len(keys)
        rankings += [Ranking(f"truncated-{k}", f"first {k} epochs of the full training, accuracy at epoch {k}",
                             [r.epoch_accuracies[k - 1] for r in ref0], cost),
                     Ranking(f"truncated-{k}-auc", f"first {k} epochs of the full training, pair AUC at epoch {k}",
                             [r.extra["epoch_auc"][k - 1] for r in ref0], cost)]
    naswot = [table["naswot"][k] for k in keys]
    rankings.append(Ranking("naswot", "NASWOT at initialisation (no training)", naswot, [0] * len(keys)))
    tie = min(static, key=lambda e: abs(e - 2))
    base = next(r for r in rankings if r.name == f"static-{tie}")
    rankings.append(Ranking(f"static-{tie}+naswot", f"mean rank of static-{tie} and NASWOT",
                            rank_average(base.scores, naswot), base.epochs))
    return rankings


def study_report(study: RankingStudy, naswot: dict[str, float], truncated: list[int], *,
                 resamples: int = 2000) -> dict[str, Any]:
    """ranking.json: per-candidate scores, and each ranking's ρ, τ, intervals and cost (nas_core.rank_fidelity)."""
    plan, table = study.plan, {**study.table(), "naswot": naswot}
    candidates, static, reference = plan.candidates, list(plan.static), plan.reference
    keys = [g.key() for g, _ in candidates]
    done, total = study.progress()
    report: dict[str, Any] = {"complete": done == total, "trials_done": done, "trials_total": total,
                              "reference_epochs": reference, "static_epochs": static, "truncated_epochs": truncated}
    rows = []
    for (genotype, dynamic), key in zip(candidates, keys):
        refs = table["reference"][key]
        row = {"genotype": genotype.to_dict(), "key": key, "dynamic_epochs": dynamic, "naswot": table["naswot"][key]}
        if all(r is not None for r in refs):
            row["reference"] = float(np.mean([_last(r.epoch_accuracies) for r in refs]))
            row["reference_seeds"] = [_last(r.epoch_accuracies) for r in refs]
            row["params"] = refs[0].params
        if table["dynamic"][key] is not None:
            row["dynamic"] = table["dynamic"][key].accuracy
        row["static"] = {str(e): r.accuracy for e, r in table["static"][key].items() if r is not None}
        rows.append(row)
    report["candidates"] = rows
    if not report["complete"]:
        return report
    ref = [row["reference"] for row in rows]
    report["reference_spread"] = max(ref) - min(ref)
    seeds = list(zip(*[row["reference_seeds"] for row in rows]))
    if len(seeds) >= 2:  # the ceiling any cheap ranking can reach: one full training against another
        report["seed_agreement"] = rank_agreement(seeds[0], seeds[1], resamples=resamples)
    rankings = _readouts(table, candidates, static, truncated)
    report["rankings"] = compare_rankings(rankings, ref, reference, resamples=resamples)
    for ranking, row in zip(rankings, report["rankings"]):
        row["scores"] = ranking.scores
    return report
