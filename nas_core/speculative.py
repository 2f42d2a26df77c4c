"""Speculative parallel trials (ARCHITECTURE §8): ``--parallel N`` keeps N workers busy on a sequential search.

MacroMicroSearch asks for one trial at a time and decides from its result alone. While the asked trial
trains, the other workers train the trials the search may ask next: Grow's next depths, Prune's next
widths, the micro candidates of the next layer under either outcome of the current one. Which trials those
are is found by running the search itself on what-if results (every finished trial's real result, and a
clear accept or a clear reject for each trial still training), so the speculation follows the search's own
rules and nothing is restated here. The search only ever sees real results, and a trial's result depends
only on (run seed, genotype, epochs) (ARCHITECTURE §3), so the decisions, the trial table and the genotype
are those of a sequential run. Every finished trial is journaled at once (``speculative: true`` when the
search had not asked for it yet), so a killed run resumes without retraining any of them. With deployment
budgets the what-if searches check candidates against the run's own CostTable (RUN/latency.json), so a
candidate's costs are measured once and the speculation skips what the search will find over budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from nas_core import faults
from nas_core.cost import CostTable
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.journal import Journal, record_result
from nas_core.search import MacroMicroSearch
from nas_core.settings import SearchSettings
from nas_core.space import SearchSpace

# What-if scores (percent): above every accept threshold / below every reject threshold of Algorithm 1.
_CLEAR_ACCEPT, _CLEAR_REJECT = 1e6, -1e6
Key = tuple[str, int]


class _Asked(Exception):
    def __init__(self, genotype: Genotype, epochs: int):
        super().__init__(genotype.key(), epochs)
        self.genotype, self.epochs = genotype, epochs


class _WhatIf:
    """Evaluator of a what-if search: known and assumed results; the first other trial stops the search."""

    def __init__(self, answers: dict[Key, TrialResult]):
        self.answers = answers

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        found = self.answers.get((genotype.key(), int(epochs)))
        if found is None:
            raise _Asked(genotype, int(epochs))
        return found


class ParamCounts:
    """A space whose ``count_params`` is remembered: what-if replays ask the micro phase's width matching for
    the same counts again and again."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self._counts: dict[str, int] = {}

    def count_params(self, genotype: Genotype) -> int:
        key = genotype.key()
        if key not in self._counts:
            self._counts[key] = self.space.count_params(genotype)
        return self._counts[key]

    def __getattr__(self, name: str) -> Any:  # name, build, config, ...: the space's own
        return getattr(self.space, name)


def next_trials(space: SearchSpace, settings: SearchSettings, known: dict[Key, TrialResult],
                running: set[Key], limit: int, max_probes: int = 64,
                costs: CostTable | None = None) -> list[tuple[Genotype, int]]:
    """Up to ``limit`` trials, neither known nor running, that the search may ask next, nearest first.

    Breadth first over the outcomes of the trials whose result is not known yet (a reject first: the
    likelier outcome of a micro trial); each probe replays the search on known + assumed results.
    """
    found: list[tuple[Genotype, int]] = []
    seen = set(running)
    queue: deque[dict[Key, TrialResult]] = deque([{}])
    probes = 0
    while queue and len(found) < limit and probes < max_probes:
        assumed = queue.popleft()
        probes += 1
        try:
            MacroMicroSearch(space, _WhatIf({**known, **assumed}), settings, costs=costs).run()
            continue  # on this branch the search ends here
        except _Asked as asked:
            key = (asked.genotype.key(), asked.epochs)
            if key not in seen:
                seen.add(key)
                found.append((asked.genotype, asked.epochs))
        for score in (_CLEAR_REJECT, _CLEAR_ACCEPT):
            queue.append({**assumed, key: TrialResult(accuracy=score, params=0)})
    return found


class SpeculativeEvaluator:
    """Evaluator for MacroMicroSearch over N workers, journaling every finished trial (see the module docstring).

    ``job(genotype, epochs)`` returns ``(fn, item)``: a picklable trial, run as ``fn(item)`` by ``executor``
    (nas_core.executor: process or Ray) and returning the TrialResult in-process evaluation would.
    ``costs``: the CostTable the search itself checks budgets with.
    """

    def __init__(self, space: SearchSpace, settings: SearchSettings, journal: Journal, executor: Any,
                 job: Callable[[Genotype, int], tuple[Callable[[Any], TrialResult], Any]], workers: int,
                 costs: CostTable | None = None):
        self.space, self.settings, self.journal = ParamCounts(space), settings, journal
        self.costs = costs if costs is not None else CostTable(space)
        self.executor, self.job, self.workers = executor, job, workers
        self.known: dict[Key, TrialResult] = {}
        for record in journal.records():  # the first record of a trial answers it, as Journal.lookup does
            genotype = Genotype.from_dict(record["genotype"])
            self.known.setdefault((genotype.key(), int(record["epochs"])), record_result(record))
        self.resumed = set(self.known)
        self.running: dict[Key, tuple[Any, Genotype, int]] = {}
        self.dropped = 0  # trials still training when the search ended
        self.hits = 0  # trials answered from the journal of an earlier invocation
        self.last_was_hit = False
        self._context: dict[str, Any] = {}
        self._asked: Key | None = None

    def begin_trial(self, **context: Any) -> None:
        """Phase information of the next trial (index, phase, layer), stored with its record."""
        self._context = dict(context)

    def over_budget(self, genotype: Genotype, epochs: int, verdict, **context: Any) -> None:
        """Journal a candidate the search will not train (once: a resumed search meets it again)."""
        self.last_was_hit = self.journal.is_over_budget(genotype, epochs)
        if not self.last_was_hit:
            self.journal.append_over_budget(genotype, epochs, verdict.cost, verdict.broken, **context)

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        key = (genotype.key(), int(epochs))
        self.last_was_hit = key in self.resumed
        self.hits += self.last_was_hit
        self._asked = key
        if key not in self.known and key not in self.running:
            self._submit(genotype, int(epochs))
        self._top_up()
        while key not in self.known:
            handles = {handle: k for k, (handle, _, _) in self.running.items()}
            for handle in self.executor.wait(list(handles)):
                self._finish(handles[handle])
            self._top_up()
        self._asked, self._context = None, {}
        return self.known[key]

    def close(self) -> None:
        """Drop the trials still training (the search has ended and needs none of them)."""
        self.dropped += len(self.running)
        self.running.clear()
        self.executor.close()

    def _submit(self, genotype: Genotype, epochs: int) -> None:
        fn, item = self.job(genotype, epochs)
        self.running[(genotype.key(), epochs)] = (self.executor.submit(fn, item), genotype, epochs)

    def _top_up(self) -> None:
        free = self.workers - len(self.running)
        if free > 0:
            for genotype, epochs in next_trials(self.space, self.settings, self.known, set(self.running), free,
                                                max_probes=8 * self.workers + 8, costs=self.costs):
                self._submit(genotype, epochs)

    def _finish(self, key: Key) -> None:
        handle, genotype, epochs = self.running.pop(key)
        result = self.executor.result(handle)
        self.known[key] = result
        extra = self._context if key == self._asked else {"speculative": True}
        self.journal.append(genotype, epochs, result, **extra)
        faults.trial()


def parallel_figures(journal: Journal, trials: list, journaled) -> dict[str, Any]:
    """result.json of a finished search: the journaled trials it never asked for (run ahead by ``--parallel``),
    those dropped unfinished at its end, and the number of workers (``journaled``: the search's evaluator)."""
    used = {(t.genotype.key(), t.epochs) for t in trials}
    unused: dict[Key, float] = {}
    for record in journal.records():
        key = (Genotype.from_dict(record["genotype"]).key(), int(record["epochs"]))
        if key not in used:
            unused.setdefault(key, float(record.get("seconds", 0.0)))
    return {"speculative_trials": len(unused), "speculative_seconds": sum(unused.values()),
            "speculative_dropped": getattr(journaled, "dropped", 0), "parallel": getattr(journaled, "workers", 1)}
