"""MacroMicroSearch: Algorithm 1 of "Efficient Global Neural Architecture Search" (ARCHITECTURE §3).

Macro: Grow the depth of an all-sep3 net at W_max, then Prune its width. Micro: retrain the macro
result briefly as baseline b, then per layer try a plain conv (Replace) and then kernel 5 (Update),
lowering the width so parameters stay at the phase's reference. The search does no I/O: it asks
the evaluator for trials and reports each one through ``on_trial``.

Deployment budgets (``max_params``, ``max_mflops``, ``max_latency_ms``; nas_core.cost): a candidate over
any of them is never trained. It is recorded with the decision "over_budget" (and journaled through the
evaluator's optional ``over_budget`` hook) and treated as rejected: Grow starts at the widest width (W_max,
W_max − W_res, ...) whose D_min net fits and stops at the first deeper net that does not; in Prune it is a
strike; in the micro phase the change is rejected. An over-budget candidate advances the epoch counter like
any candidate tried, and does not count towards max_trials (it trains nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nas_core.cost import CostTable
from nas_core.errors import NasError
from nas_core.evaluator import Evaluator, TrialResult
from nas_core.genotype import Genotype
from nas_core.ranking import EpochSchedule, at_least, greater
from nas_core.settings import SearchSettings, Verdict
from nas_core.space import SearchSpace, match_width


@dataclass
class TrialRecord:
    index: int
    phase: str  # "depth" | "width" | "micro_base" | "ops" | "kernels"
    layer: int | None
    genotype: Genotype
    epochs: int
    result: TrialResult | None  # None: over budget, not trained
    decision: str  # "baseline" | "accept" | "neutral" | "strike" | "reject" | "over_budget"
    over_budget: list[str] = field(default_factory=list)  # the budgets it breaks ("params 2,104,330 > 2,000,000")
    cost: dict[str, Any] | None = None  # its params / MFLOPs / latency when a budget was checked

    def to_dict(self) -> dict[str, Any]:
        data = {"index": self.index, "phase": self.phase, "layer": self.layer,
                "genotype": self.genotype.to_dict(), "epochs": self.epochs,
                "result": None if self.result is None else self.result.to_dict(), "decision": self.decision}
        if self.result is None:
            data.update(over_budget=list(self.over_budget), cost=self.cost)
        return data

    def outcome(self) -> str:
        """The end of a log line: params, fitness and decision, or why it was not trained."""
        if self.result is None:
            params = (self.cost or {}).get("params", 0)
            return f"params={params:,} not trained ({'; '.join(self.over_budget)}) -> over_budget"
        return f"params={self.result.params:,} acc={self.result.accuracy:.2f} -> {self.decision}"


@dataclass
class SearchResult:
    genotype: Genotype  # what the search returns: W_f with the micro ops/kernels
    macro_genotype: Genotype  # after Grow + Prune (W_m)
    params: int
    accuracy: float  # score of the trial that produced `genotype` (percent)
    trials: list[TrialRecord]
    epochs_total: int
    seconds: float  # sum of the trials' seconds (a resumed run counts its journaled trials too)
    macro_epochs: int = 0  # epochs of the accepted macro trial (the reference's "final epochs")
    settings: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)

    @property
    def producing_trial(self) -> TrialRecord:
        """The trial whose score ``accuracy`` is: the last accepted (or baseline) trial of ``genotype``.
        Its (genotype, epochs) name the weights an evaluator kept for the result."""
        for decisions in (("baseline", "accept"), None):
            for record in reversed(self.trials):
                if record.genotype == self.genotype and (decisions is None or record.decision in decisions):
                    return record
        raise NasError(f"search: the returned genotype {self.genotype.key()} is not among its trials")

    def to_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_dict(), "macro_genotype": self.macro_genotype.to_dict(),
                "params": self.params, "accuracy": self.accuracy, "epochs_total": self.epochs_total,
                "seconds": self.seconds, "macro_epochs": self.macro_epochs, "settings": self.settings,
                "space": self.space, "trials": [t.to_dict() for t in self.trials]}


def space_spec(space: SearchSpace) -> dict[str, Any]:
    """What rebuilds ``space``: its registry name, the module that registers it and its task arguments."""
    task = getattr(space, "task", None)
    if task is None and callable(getattr(space, "config", None)):  # facerec spaces: config() = name + kwargs
        task = {k: v for k, v in space.config().items() if k != "name"}
    return {"name": space.name, "module": type(space).__module__, "task": dict(task or {})}


class _BudgetSpent(Exception):
    """max_trials reached: unwind to run() and return the best so far."""


class MacroMicroSearch:
    """``costs``: where a budgeted search gets each candidate's costs (a CostTable over RUN/latency.json, so
    every replay of the run decides from the same measurements); default: measured in memory."""

    def __init__(self, space: SearchSpace, evaluator: Evaluator, settings: SearchSettings,
                 on_trial: Callable[[TrialRecord], None] | None = None, costs: CostTable | None = None):
        self.space = space
        self.evaluator = evaluator
        self.settings = settings
        self.on_trial = on_trial
        self.costs = costs if costs is not None else CostTable(space)

    def describe(self) -> dict[str, Any]:
        """Settings and space of this search: what a run folder needs to be replayed or resumed."""
        return {"settings": self.settings.to_dict(), "space": space_spec(self.space)}

    def run(self) -> SearchResult:
        s = self.settings
        self._trials: list[TrialRecord] = []
        self._schedule = EpochSchedule(s.e_min, s.depth_epoch_step, s.width_epoch_step, s.micro_epochs)
        self._macro: tuple[Genotype, float, int] | None = None  # genotype, score, epochs
        self._micro: tuple[Genotype, float] | None = None
        self._trained = 0
        try:
            depth_best = self._grow()
            self._prune(depth_best)
            if not s.macro_only:
                self._micro_search()
        except _BudgetSpent:
            pass
        return self._result()

    # -- trials ---------------------------------------------------------------------------------

    def _evaluate(self, phase: str, layer: int | None, genotype: Genotype, epochs: int) -> TrialResult | None:
        """The trial's result; None when the candidate is over budget (recorded here, not trained)."""
        verdict = self._check(genotype)
        if not verdict.fits:  # recorded even when max_trials is spent: it trains nothing
            note = getattr(self.evaluator, "over_budget", None)
            if note is not None:  # optional hook: lets a journal record the untrained candidate
                note(genotype, epochs, verdict, index=len(self._trials), phase=phase, layer=layer)
            self._record(phase, layer, genotype, epochs, None, "over_budget", verdict)
            return None
        limit = self.settings.max_trials
        if limit is not None and self._trained >= limit:
            raise _BudgetSpent
        begin = getattr(self.evaluator, "begin_trial", None)
        if begin is not None:  # optional hook: lets a journal record the phase of each trial
            begin(index=len(self._trials), phase=phase, layer=layer)
        self._trained += 1
        return self.evaluator.evaluate(genotype, epochs)

    def _check(self, genotype: Genotype) -> Verdict:
        budget = self.settings.budget
        return budget.check(self.costs, genotype) if budget.active else Verdict({})

    def _record(self, phase: str, layer: int | None, genotype: Genotype, epochs: int,
                result: TrialResult | None, decision: str, verdict: Verdict | None = None) -> None:
        record = TrialRecord(len(self._trials), phase, layer, genotype, epochs, result, decision)
        if verdict is not None:
            record.over_budget, record.cost = list(verdict.broken), dict(verdict.cost)
        self._trials.append(record)
        if self.on_trial is not None:
            self.on_trial(record)

    # -- macro: Grow then Prune -------------------------------------------------------------------

    def _start_width(self) -> int:
        """W_max, or with a budget the widest of W_max, W_max − W_res, ... ≥ W_min whose D_min net fits it."""
        s = self.settings
        width = s.w_max
        while not (verdict := self._check(Genotype.uniform(s.d_min, width))).fits:
            if width - s.w_res < s.w_min:
                raise NasError(f"budget: expected a net of depth D_min {s.d_min} between W_min {s.w_min} and W_max "
                               f"{s.w_max} within it; the narrowest, {Genotype.uniform(s.d_min, width).key()}, is "
                               f"over budget: {'; '.join(verdict.broken)}")
            width -= s.w_res
        return width

    def _grow(self) -> Genotype:
        s = self.settings
        width = self._start_width()
        genotype = Genotype.uniform(s.d_min, width)
        epochs = self._schedule.baseline()
        result = self._evaluate("depth", None, genotype, epochs)
        self._macro = (genotype, result.accuracy, epochs)
        self._record("depth", None, genotype, epochs, result, "baseline")
        strikes, depth = 0, s.d_min
        # The reference loops while depth != D_max, so D_max itself is the last depth tried.
        while depth < s.d_max:
            depth += 1  # one past the last *tried* depth, not the best one
            epochs = self._schedule.next_depth()
            candidate = Genotype.uniform(depth, width)
            result = self._evaluate("depth", None, candidate, epochs)
            if result is None:
                break  # over budget: a deeper net of this width costs more still
            best = self._macro[1]
            if at_least(result.accuracy, best, s.depth_accept):
                decision, strikes = "accept", 0
                self._macro = (candidate, result.accuracy, epochs)
            elif at_least(result.accuracy, best, -s.depth_tolerance):
                decision = "neutral"  # no change to best or strikes
            else:
                decision, strikes = "strike", strikes + 1
            self._record("depth", None, candidate, epochs, result, decision)
            if strikes >= s.max_strikes:
                break
        return self._macro[0]

    def _prune(self, depth_best: Genotype) -> None:
        s = self.settings
        strikes, width = 0, depth_best.width
        # Stop at W_min: never try a width below it (the reference could step past it when
        # W_max - W_min is not a multiple of W_res).
        while width - s.w_res >= s.w_min:
            width -= s.w_res
            epochs = self._schedule.next_width()
            candidate = depth_best.with_width(width)
            result = self._evaluate("width", None, candidate, epochs)
            if result is None:  # over budget (a narrower net can measure slower): rejected, a strike
                strikes += 1
            elif at_least(result.accuracy, self._macro[1]):  # ties accept: same accuracy, fewer params
                strikes = 0
                self._macro = (candidate, result.accuracy, epochs)
                self._record("width", None, candidate, epochs, result, "accept")
            else:
                strikes += 1
                self._record("width", None, candidate, epochs, result, "strike")
            if strikes >= s.max_strikes:
                break

    # -- micro: Replace op then Update kernel ---------------------------------------------------

    def _micro_search(self) -> None:
        s = self.settings
        macro = self._macro[0]
        epochs = self._schedule.micro()
        result = self._evaluate("micro_base", None, macro, epochs)
        self._micro = (macro, result.accuracy)
        self._record("micro_base", None, macro, epochs, result, "baseline")
        # Replace: reference = the macro result (W_m and its params).
        reference = macro
        for i in range(macro.depth):
            if self._micro[0].ops[i] != "conv":
                self._try_micro("ops", i, self._micro[0].with_layer(i, op="conv"), reference, epochs)
        # Update: reference = the op-phase result; b carries over from the op phase.
        reference = self._micro[0]
        for i in range(macro.depth):
            for kernel in s.micro_kernels:
                if self._micro[0].kernels[i] != kernel:
                    self._try_micro("kernels", i, self._micro[0].with_layer(i, kernel=kernel), reference, epochs)

    def _try_micro(self, phase: str, layer: int, changed: Genotype, reference: Genotype, epochs: int) -> None:
        # Width is lowered by 1 from the phase's reference width (not from the current width)
        # until params <= reference params + slack.
        reference_params = self.space.count_params(reference)
        candidate = match_width(self.space, changed.with_width(reference.width), reference_params,
                                self.settings.param_slack)
        result = self._evaluate(phase, layer, candidate, epochs)
        if result is None:
            return  # over budget: the change is rejected
        if greater(result.accuracy, self._micro[1]):  # strictly better than b
            decision = "accept"
            self._micro = (candidate, result.accuracy)
        else:
            decision = "reject"
        self._record(phase, layer, candidate, epochs, result, decision)

    # -- result -----------------------------------------------------------------------------------

    def _result(self) -> SearchResult:
        if self._macro is None:
            raise NasError("search: expected at least one trial (max_trials must be >= 1)")
        macro, macro_acc, macro_epochs = self._macro
        genotype, accuracy = self._micro if self._micro is not None else (macro, macro_acc)
        return SearchResult(
            genotype=genotype, macro_genotype=macro, params=self.space.count_params(genotype),
            accuracy=accuracy, trials=list(self._trials),
            epochs_total=sum(t.epochs for t in self._trials if t.result is not None),
            seconds=sum(t.result.seconds for t in self._trials if t.result is not None), macro_epochs=macro_epochs,
            **self.describe(),
        )
