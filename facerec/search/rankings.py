"""Face rankings: the trials of a ranking study and the rankings read from them (ARCHITECTURE §3, §4).

A study trains each candidate fully (the reference: last-epoch accuracy, mean over run seeds) and cheaply (the
search's dynamic epochs; static epochs). From those trials it reads these rankings (higher score = better):

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

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas_core.evaluator import TrialResult, trial_seed
from nas_core.genotype import Genotype
from nas_core.journal import Journal
from nas_core.rank_fidelity import Ranking, compare_rankings, rank_agreement, rank_average

NASWOT_BATCH = 64


class StudyTrials:
    """Trains and journals the study's trials: run seed 0 in OUT/journal.jsonl, seed S in OUT/journal-seedS.jsonl."""

    def __init__(self, out: Path, data, config, embedding_size: int, device, *, seed: int = 0, progress: bool = True,
                 budget: int | None = None, log: logging.Logger | None = None):
        from facerec.model.space import IResNetSpace

        self.out, self.data, self.config, self.device = Path(out), data, config, device
        self.space = IResNetSpace(embedding_size=embedding_size)
        self.seed, self.progress, self.budget = seed, progress, budget
        self.log = log or logging.getLogger("facerec")
        self.trained = 0
        self._journals: dict[int, Journal] = {}
        self._evaluators: dict[int, Any] = {}

    def _journal(self, run_seed: int) -> Journal:
        if run_seed not in self._journals:
            name = "journal.jsonl" if run_seed == self.seed else f"journal-seed{run_seed}.jsonl"
            self._journals[run_seed] = Journal(self.out / name)
        return self._journals[run_seed]

    def _evaluator(self, run_seed: int):
        from facerec.search.evaluator import FaceEvaluator

        if run_seed not in self._evaluators:
            self._evaluators[run_seed] = FaceEvaluator(
                self.space, self.data.train_set, self.data.val_sets, replace(self.config, seed=run_seed),
                run_seed=run_seed, device=self.device, progress=self.progress)
        return self._evaluators[run_seed]

    def trial(self, genotype: Genotype, epochs: int, run_seed: int) -> TrialResult | None:
        """The journaled result, else a new training (None once --max-trainings new ones are done)."""
        journal = self._journal(run_seed)
        result = journal.lookup(genotype, epochs)
        if result is None and (self.budget is None or self.trained < self.budget):
            result = self._evaluator(run_seed).evaluate(genotype, epochs)
            journal.append(genotype, epochs, result, study="ranking", run_seed=run_seed)
            self.trained += 1
        return result

    def run(self, candidates, static: list[int], reference: int, seeds: int) -> dict[str, Any]:
        """Every trial of every candidate, candidate by candidate (a partial study covers whole candidates)."""
        table: dict[str, Any] = {"reference": {}, "dynamic": {}, "static": {}, "naswot": {}}
        for genotype, dynamic in candidates:
            key = genotype.key()
            table["reference"][key] = [self.trial(genotype, reference, self.seed + s) for s in range(seeds)]
            table["dynamic"][key] = self.trial(genotype, dynamic, self.seed)
            table["static"][key] = {k: self.trial(genotype, k, self.seed) for k in static}
            table["naswot"][key] = self.naswot(genotype)
        return table

    def naswot(self, genotype: Genotype) -> float:
        """NASWOT of the candidate at its seeded initialisation on the first held-out faces (no labels used)."""
        from eval_protocols.embed import normalize
        from nas_core.zero_cost import naswot_score

        images = self.data.val_sets[0].images[:NASWOT_BATCH]
        batch = torch.from_numpy(normalize(images)).permute(0, 3, 1, 2).contiguous()
        torch.manual_seed(trial_seed(self.seed, genotype, 0))
        return naswot_score(self.space.build(genotype), batch)


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


def study_report(table: dict, candidates, static: list[int], reference: int, truncated: list[int], *,
                 resamples: int = 2000) -> dict[str, Any]:
    """ranking.json: per-candidate scores, and each ranking's ρ, τ, intervals and cost (nas_core.rank_fidelity)."""
    keys = [g.key() for g, _ in candidates]
    # Distinct trainings (run seed, genotype, epochs): a dynamic trial may be a static or a full one as well.
    trainings: dict[tuple, bool] = {}
    for (_, dynamic), k in zip(candidates, keys):
        for s, r in enumerate(table["reference"][k]):
            trainings[(s, k, reference)] = r is not None
        trainings[(0, k, dynamic)] = table["dynamic"][k] is not None
        for e, r in table["static"][k].items():
            trainings[(0, k, e)] = r is not None
    done = sum(trainings.values())
    report: dict[str, Any] = {"complete": done == len(trainings), "trials_done": done,
                              "trials_total": len(trainings),
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
