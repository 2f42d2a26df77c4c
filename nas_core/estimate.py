"""Cost forecast of a search without running it (``--estimate``): the worst-case trial list and projected hours.

The worst case is found by running the search itself on scripted results (ARCHITECTURE §3 is not restated):
Grow accepts every depth (D_min..D_max, E growing by 1 each) and Prune every width (down to W_min, E by 2),
the longest macro phases; the micro phase is planned on the largest macro result (D_max, W_max), rejecting
every candidate so widths stay at W_max: 1 + 2·D_max trials of micro E. No single run does all of this;
every trial a real run makes is matched by one entry of the same phase with no fewer epochs, no smaller
depth and no smaller width. A trial's time is epochs × steps per epoch × step time, the step time
interpolated in parameters between the smallest and the largest candidate, each timed for a few steps.
At ``--parallel N`` the list is scheduled in order on N workers (speculation that always guesses right: a
lower bound; N = 1 is the sequential time). Deployment budgets are honoured: the scripted searches check
candidates as a real one does (Grow starts at the widest width that fits, stops at the first net over
budget; over-budget candidates are listed as such, never as trials to time).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import Any

from nas_core.cost import CostTable
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.search import MacroMicroSearch
from nas_core.settings import SearchSettings
from nas_core.space import SearchSpace


@dataclass
class PlannedTrial:
    phase: str
    genotype: Genotype
    epochs: int
    params: int

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "genotype": self.genotype.to_dict(), "name": self.genotype.key(),
                "epochs": self.epochs, "params": self.params}


class _Scripted:
    """Results that accept the trials of ``accepting`` phases and reject all others."""

    def __init__(self, accepting: tuple[str, ...]):
        self.accepting, self.phase, self.count = accepting, "", 0

    def begin_trial(self, index: int, phase: str, layer: int | None) -> None:
        self.phase = phase

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        self.count += 1  # rising scores: each accepted trial beats the last by a full point
        score = float(self.count) if self.phase in self.accepting or self.phase == "micro_base" else -1e6
        return TrialResult(accuracy=score, params=0)


def _worst_case_records(space: SearchSpace, settings: SearchSettings, costs: CostTable | None):
    """The scripted searches' records, in search order: the macro phases, then the micro phase."""
    unbounded = replace(settings, max_trials=None)
    costs = costs if costs is not None else CostTable(space)
    macro = MacroMicroSearch(space, _Scripted(("depth", "width")), unbounded, costs=costs).run().trials
    records = [t for t in macro if t.phase in ("depth", "width")]
    if not settings.macro_only:
        micro = MacroMicroSearch(space, _Scripted(("depth",)), unbounded, costs=costs).run().trials
        records += [t for t in micro if t.phase not in ("depth", "width")]
    return records


def worst_case_trials(space: SearchSpace, settings: SearchSettings,
                      costs: CostTable | None = None) -> list[PlannedTrial]:
    """The worst-case trial list (see the module docstring), in search order; max_trials is not applied.
    ``costs``: where budgeted candidates' costs come from (RUN/latency.json, as the search would read them)."""
    return [PlannedTrial(t.phase, t.genotype, t.epochs, space.count_params(t.genotype))
            for t in _worst_case_records(space, settings, costs)
            if t.result is not None]  # over-budget candidates are never trained


def over_budget_candidates(space: SearchSpace, settings: SearchSettings, costs: CostTable) -> list[dict[str, Any]]:
    """The candidates the worst-case searches find over budget: {name, phase, over_budget}."""
    found: dict[str, dict[str, Any]] = {}
    for t in _worst_case_records(space, settings, costs):
        if t.result is None:
            found.setdefault(t.genotype.key(), {"name": t.genotype.key(), "phase": t.phase,
                                                "over_budget": t.over_budget})
    return list(found.values())


def trial_seconds(trials: list[PlannedTrial], steps_per_epoch: int, step_small: float, step_large: float) -> list[float]:
    """Each trial's projected seconds: epochs × steps × a step time linear in params between the extremes."""
    low, high = min(t.params for t in trials), max(t.params for t in trials)
    out = []
    for t in trials:
        share = 0.0 if high == low else (t.params - low) / (high - low)
        out.append(t.epochs * steps_per_epoch * (step_small + share * (step_large - step_small)))
    return out


def schedule_seconds(seconds: list[float], workers: int, budget: int | None = None) -> float:
    """Makespan of the trials run in order on ``workers`` workers; with a trial budget, of the costliest ones."""
    if budget is not None and budget < len(seconds):
        keep = sorted(range(len(seconds)), key=lambda i: -seconds[i])[:budget]
        seconds = [seconds[i] for i in sorted(keep)]
    free = [0.0] * max(1, workers)
    for cost in seconds:
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free)


def smallest_and_largest(trials: list[PlannedTrial]) -> tuple[PlannedTrial, PlannedTrial]:
    return min(trials, key=lambda t: t.params), max(trials, key=lambda t: t.params)


def forecast(trials: list[PlannedTrial], *, steps_per_epoch: int, step_small: float, step_large: float,
             workers: int, budget: int | None, device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """estimate.json: the list with each trial's projected seconds, and the hours at 1 and N workers."""
    seconds = trial_seconds(trials, steps_per_epoch, step_small, step_large)
    return {
        "trials": [{**t.to_dict(), "seconds": s} for t, s in zip(trials, seconds)],
        "trial_count": len(trials), "max_trials": budget, "epochs_total": sum(t.epochs for t in trials),
        "steps_per_epoch": steps_per_epoch, "device": device,
        "step_seconds": {"smallest": step_small, "largest": step_large},
        "parallel": workers,
        "hours": {"1": schedule_seconds(seconds, 1, budget) / 3600,
                  str(workers): schedule_seconds(seconds, workers, budget) / 3600},
        **(extra or {}),
    }


def describe(estimate: dict[str, Any]) -> list[str]:
    """The forecast as printed lines: one per planned trial, then the totals."""
    lines = [f"{i:3d} {t['phase']:10s} {t['name']:40s} E={t['epochs']:<3d} params={t['params']:>12,d} "
             f"{t['seconds'] / 3600:8.2f} h" for i, t in enumerate(estimate["trials"])]
    steps = estimate["step_seconds"]
    lines.append(f"worst case: {estimate['trial_count']} trials, {estimate['epochs_total']} epochs of "
                 f"{estimate['steps_per_epoch']} steps; step {steps['smallest']:.4f} s (smallest) .. "
                 f"{steps['largest']:.4f} s (largest), {estimate.get('step_source', 'on ' + estimate['device'])}")
    budget = f" (max_trials {estimate['max_trials']}: the costliest ones)" if estimate["max_trials"] else ""
    lines.append("projected: " + ", ".join(f"{h:.2f} h at --parallel {n}" for n, h in estimate["hours"].items())
                 + budget)
    if estimate.get("budget"):
        over = estimate.get("over_budget", [])
        lines.append(f"budget: {estimate['budget']}; {len(over)} candidate(s) over it are not trained"
                     + (f" (e.g. {over[0]['name']}: {'; '.join(over[0]['over_budget'])})" if over else ""))
    return lines


def budget_figures(space: SearchSpace, settings: SearchSettings, costs: CostTable) -> dict[str, Any]:
    """estimate.json's budget record: the budget in words and the candidates found over it (none without)."""
    if not settings.budget.active:
        return {}
    return {"budget": settings.budget.describe(), "over_budget": over_budget_candidates(space, settings, costs)}


def compare(estimate: dict[str, Any], actual_seconds: float, actual_trials: int) -> dict[str, Any]:
    """result.json's estimate-vs-actual record for a search run in a folder holding estimate.json."""
    workers = str(estimate.get("parallel", 1))
    projected = 3600 * estimate["hours"].get(workers, estimate["hours"]["1"])
    return {"projected_seconds": projected, "actual_seconds": actual_seconds, "projected_trials_worst_case":
            estimate["trial_count"], "actual_trials": actual_trials, "parallel": int(workers)}


def estimate_vs_actual(run_dir, wall_seconds: float, trials: int) -> dict[str, Any]:
    """result.json: the forecast of RUN/estimate.json (when one was made) next to what the search took."""
    from pathlib import Path

    from nas_core.io import read_json_object

    path = Path(run_dir) / "estimate.json"
    if not path.is_file():
        return {}
    return {"estimate": compare(read_json_object(path), wall_seconds, trials)}


def timed_step(step, device, steps: int = 2) -> float:
    """Seconds of one call of ``step`` (a training step on ``device``): one warm-up call (allocations, cuDNN
    choices), then the mean of ``steps``, each waited for on a GPU."""
    import time

    import torch

    def synced() -> None:
        step()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    synced()
    tic = time.perf_counter()
    for _ in range(steps):
        synced()
    return (time.perf_counter() - tic) / steps


def step_seconds(model, images, labels, steps: int = 2) -> float:
    """Seconds of one SGD training step (forward, cross-entropy, backward, update) of ``model`` on a batch."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return timed_step(step, images.device, steps)


def classifier_estimate(data, space: SearchSpace, settings: SearchSettings, *, device, batch_size: int,
                        workers: int, costs: CostTable | None = None) -> dict[str, Any]:
    """estimate.json of an image-classifier search (nas-search): steps timed on a batch of the training set."""
    import math

    costs = costs if costs is not None else CostTable(space)
    trials = worst_case_trials(space, settings, costs)
    images = data.normalize(data.train_images[:batch_size].to(device))
    labels = data.train_labels[:batch_size].to(device)
    times = [step_seconds(space.build(t.genotype).to(device), images, labels) for t in smallest_and_largest(trials)]
    return forecast(trials, steps_per_epoch=math.ceil(len(data.train_labels) / batch_size), step_small=times[0],
                    step_large=times[1], workers=workers, budget=settings.max_trials, device=str(device),
                    extra={"cache_bytes": int(data.train_images.nbytes), "batch_size": batch_size,
                           "step_source": f"measured on {device} at batch {len(labels)}",
                           **budget_figures(space, settings, costs)})
