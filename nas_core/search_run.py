"""One search in its run folder (ARCHITECTURE §7-§10): everything nas-search and facerec-search share.

``SearchRun`` owns the run folder (a new one is refused when it holds a search; ``--resume RUN`` continues one),
its lock (nas_core.runlock), its log (RUN/search.log, nas_core.runlog), the journal (nas_core.journal), where the
trials run (in this process, or ``--parallel N`` speculative workers: nas_core.speculative over
nas_core.executor), the costs of a budgeted search (RUN/latency.json, nas_core.cost), ``--estimate``
(nas_core.estimate), RUN/result.json and the report (nas_core.report). What it searches comes from a
``SearchTask``: the settings, the space and the evaluator of one domain (nas_core.classify.task for image
classifiers, facerec.search.task for faces, ``ReplaySearch`` below for a recorded search).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from nas_core.cost import LATENCY_FILE, CostTable, budget_record, run_costs
from nas_core.errors import NasError
from nas_core.estimate import describe, estimate_vs_actual
from nas_core.evaluator import Evaluator, TrialResult
from nas_core.executor import parallel_executor
from nas_core.genotype import Genotype
from nas_core.io import atomic_write_json
from nas_core.journal import Journal, JournaledEvaluator
from nas_core.replay import load_trace
from nas_core.report import write_search_report
from nas_core.run_folder import mark_run_folder
from nas_core.runlock import run_lock
from nas_core.runlog import log_to, progress_bar
from nas_core.search import MacroMicroSearch, SearchResult, TrialRecord, space_spec
from nas_core.settings import RunOptions, SearchSettings, search_run_flags, with_overrides
from nas_core.space import SearchSpace
from nas_core.speculative import SpeculativeEvaluator, parallel_figures

JOURNAL = "journal.jsonl"
# The trials of --parallel workers: (genotype, epochs) -> a picklable (function, item), run there as function(item).
JobFactory = Callable[[Genotype, int], tuple[Callable[[Any], TrialResult], Any]]


class SearchTask:
    """What one domain hands a SearchRun. Subclasses set ``config`` (RUN/settings.json: everything that defines the
    run) and ``settings``, and implement ``open`` (and, for ``--parallel`` and ``--estimate``, ``trial_job``,
    ``estimate`` and ``cache_text``); the rest has defaults that suit a single process."""

    command = "nas-search"  # the lock's holder and the log's first word
    logger = "nas_core"  # the logging logger the run's log file and terminal follow
    is_main = True  # under torchrun: rank 0, the one process that writes and logs
    share: Callable[[Any], Any] | None = None  # under torchrun: rank 0's value on every rank
    cost_seed: str | Path | None = None  # a latency.json whose measurements decide (a replay's)
    fresh_files: tuple[str, ...] = (JOURNAL,)  # a new run folder holds none of these
    resume_notes: Sequence[str] = ()  # flags changeable on resume that this invocation gave ("--device cpu")
    config: dict[str, Any]
    settings: SearchSettings
    space: SearchSpace

    def default_output(self, estimate: bool) -> str:
        raise NotImplementedError

    def open(self, run: Path, log) -> Evaluator:
        """Load the data, build the space (``self.space``) and return the evaluator of one trial; log what was
        loaded. May add to ``config`` what a run folder needs later (it is written again)."""
        raise NotImplementedError

    def running(self) -> AbstractContextManager:
        """Held while the search runs (e.g. the CPU threads of its trials)."""
        return nullcontext()

    def trial_job(self, workers: int, executor: str) -> JobFactory:
        raise NasError(f"--parallel: {self.command} runs its trials in this process only")

    def on_trial(self, record: TrialRecord) -> None:
        """After each trial the search decided on (every rank)."""

    def finish(self, run: Path, result: SearchResult, log) -> None:
        """After the search, on every rank, before result.json (faces: RUN/model.pt)."""

    def result_fields(self, result: SearchResult) -> dict[str, Any]:
        """result.json's fields of this domain, beside SearchRun's common ones."""
        return run_summary(result, self.config)

    def estimate(self, run: Path, workers: int) -> dict[str, Any]:
        raise NasError(f"--estimate: {self.command} cannot estimate this run")

    def cache_text(self, estimate: dict[str, Any]) -> str:
        raise NotImplementedError


def run_summary(result: SearchResult, config: dict[str, Any]) -> dict[str, Any]:
    """result.json's fields of a classification search or a replay: what the found net was ranked on, its test
    accuracy (the last epoch's, ARCHITECTURE §3), the trial count, and the run's settings and space."""
    extra = result.producing_trial.result.extra
    return {"rank_on": extra.get("rank_on", config.get("rank_on", "val")), "test_accuracy": extra.get("test_accuracy"),
            "trials": len(result.trials), "dataset": config.get("dataset"), "settings": config, "space": result.space}


def trial_line(record: TrialRecord) -> str:
    """A trial's log line: 'trial   3 width: d12-w62-... E=14 params=... acc=... -> accept'."""
    layer = "" if record.layer is None else f" layer {record.layer}"
    return f"trial {record.index:3d} {record.phase}{layer}: {record.genotype.key()} E={record.epochs} {record.outcome()}"


class SearchRun:
    """A search of ``task`` run as ``options`` say (see the module docstring); ``argv`` is logged as the command."""

    def __init__(self, task: SearchTask, options: RunOptions, argv: Sequence[str] | None = None):
        self.task, self.options = task, options
        self.argv = list(sys.argv[1:] if argv is None else argv)

    def execute(self) -> int:
        """Run the search, or only estimate it; 0 when done (user errors are NasErrors)."""
        start = time.perf_counter()
        if self.options.estimate:
            return self._estimate()
        run = Path(self.options.resume) if self.options.resume else self._new_folder()
        with self._locked(run):
            if self.task.is_main:
                mark_run_folder(run, self.task.command, search_run_flags(self.task.config))
                atomic_write_json(run / "settings.json", self.task.config)
            with log_to(run / "search.log" if self.task.is_main else None, self.task.logger,
                        echo=self.task.is_main) as log, self.task.running():
                self._search(run, log, start)
        return 0

    def _new_folder(self) -> Path:
        """The output folder of a new run, refused when it holds a search (continue that one with --resume)."""
        run = Path(self.options.output or self.task.default_output(estimate=False))
        for name in self.task.fresh_files:
            if (run / name).exists():
                raise NasError(f"{run}: expected a new output folder; it holds {name} from an earlier run "
                               "(continue it with --resume or choose another --output)")
        run.mkdir(parents=True, exist_ok=True)
        return run

    def _locked(self, run: Path) -> AbstractContextManager:
        """One process writes into RUN (under torchrun, rank 0): a second one refuses instead of mixing journals."""
        return run_lock(run, self.task.command) if self.task.is_main else nullcontext()

    def _search(self, run: Path, log, start: float) -> None:
        task, settings = self.task, self.task.settings
        log.info(f"{task.command} {' '.join(self.argv)}")
        log.info(f"{'resuming' if self.options.resume else 'starting'} search in {run} "
                 f"({'journaled trials are not retrained' if self.options.resume else 'new run'})")
        if task.resume_notes:
            log.info(f"resume: {', '.join(task.resume_notes)} (changeable on resume) apply to this invocation")
        written = json.dumps(task.config, sort_keys=True)
        evaluator = task.open(run, log)
        if task.is_main and json.dumps(task.config, sort_keys=True) != written:
            atomic_write_json(run / "settings.json", task.config)
        journal = Journal(run / JOURNAL)
        if len(journal):
            log.info(f"journal: {len(journal)} finished trial(s) will be reused")
        costs = self._costs(run, log)
        journaled = self._trial_evaluator(evaluator, journal, costs, log)
        result = self._run_search(journaled, costs, log)
        task.finish(run, result, log)
        found = budget_record(settings.budget, costs, result)  # every rank: a latency is shared from rank 0
        wall = time.perf_counter() - start
        if task.is_main:
            self._write_result(run, result, wall, {**found, **parallel_figures(journal, result.trials, journaled),
                                                   **estimate_vs_actual(run, wall, len(result.trials))})
            log.info(f"wrote {write_search_report(run)} (and report.md)")
        log.info(f"found {result.genotype.key()}: {result.params:,} params, fitness {result.accuracy:.2f}% after "
                 f"{len(result.trials)} trials ({result.epochs_total} epochs) in {wall:.1f} s; wrote "
                 f"{run / 'result.json'}")

    def _costs(self, run: Path, log) -> CostTable:
        """The search's CostTable: RUN/latency.json with a budget; under torchrun rank 0 measures latency."""
        task, budget = self.task, self.task.settings.budget
        if budget.active:
            log.info(f"budget: {budget.describe()}; costs measured once into {run / LATENCY_FILE}")
        return run_costs(task.space, budget, run, writes=task.is_main, share=task.share, seed=task.cost_seed)

    def _trial_evaluator(self, evaluator: Evaluator, journal: Journal, costs: CostTable, log):
        """Journaled trials answered from the journal, new ones trained in this process (under torchrun all ranks
        follow rank 0's journal; only rank 0 appends) or, with --parallel N > 1, N at a time by speculative
        workers (the same trials, results and genotype; the speculation checks budgets against ``costs``)."""
        task, workers = self.task, self.options.parallel
        if workers == 1:
            return JournaledEvaluator(evaluator, journal, writes=task.is_main, share=task.share)
        if task.share is not None:
            raise NasError("--parallel: expected either --parallel N or torchrun (DDP trials), not both")
        log.info(f"parallel: {workers} {self.options.executor} worker(s); trials the search may ask next run ahead")
        job = task.trial_job(workers, self.options.executor)
        executor = parallel_executor(self.options.executor, workers, evaluator.device, self.options.ray_address)
        return SpeculativeEvaluator(task.space, task.settings, journal, executor, job=job, workers=workers,
                                    costs=costs)

    def _run_search(self, journaled, costs: CostTable, log) -> SearchResult:
        task = self.task
        with progress_bar(total=task.settings.max_trials, unit="trial", desc="search",
                          disable=not (self.options.progress and task.is_main)) as bar:
            def on_trial(record: TrialRecord) -> None:
                bar.update(1)
                hit = " (journal)" if getattr(journaled, "last_was_hit", False) else ""
                log.info(trial_line(record) + hit)
                task.on_trial(record)

            try:
                return MacroMicroSearch(task.space, journaled, task.settings, on_trial=on_trial, costs=costs).run()
            finally:
                getattr(journaled, "close", lambda: None)()

    def _write_result(self, run: Path, result: SearchResult, wall: float, figures: dict[str, Any]) -> None:
        atomic_write_json(run / "result.json", {
            "genotype": result.genotype.to_dict(),
            "params": result.params,
            "fitness": result.accuracy,  # the producing trial's ranking score, percent (ARCHITECTURE §10)
            "macro_genotype": result.macro_genotype.to_dict(),
            "macro_epochs": result.macro_epochs,
            "epochs_total": result.epochs_total,
            "search_seconds": result.seconds,  # summed train+eval time of all trials (journaled ones included)
            "wall_seconds": wall,  # this invocation
            **self.task.result_fields(result),
            **figures,
        })

    def _estimate(self) -> int:
        """--estimate: the worst-case trial list and projected hours (nas_core.estimate) in RUN/estimate.json."""
        run = Path(self.options.resume or self.options.output or self.task.default_output(estimate=True))
        estimate = self.task.estimate(run, self.options.parallel)
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "estimate.json", {**estimate, "settings": self.task.config})
        for line in describe(estimate):
            print(line)
        print(f"data cache: {self.task.cache_text(estimate)}; wrote {run / 'estimate.json'}")
        return 0


class ReplaySearch(SearchTask):
    """A recorded search replayed (nas-search --replay): an authors' trace or a run folder answers every trial
    (nas_core.replay), so nothing trains; ``overrides`` (setting flags) re-decide it. The replay journals the
    trials it replays, so ``nas-report RUN`` reads it like a search; a replayed run's measured costs decide its
    budgets again (its latency.json), new ones are kept in this RUN."""

    fresh_files = ("result.json", JOURNAL)

    def __init__(self, trace: str | Path, **overrides: Any):
        settings, self.space, self.evaluator, meta = load_trace(trace)
        self.trace, self.settings = str(trace), with_overrides(settings, **overrides)
        self.cost_seed = meta.get("costs")
        self.config = {"replay": self.trace, "dataset": meta.get("dataset"), "search": self.settings.to_dict(),
                       "space": space_spec(self.space)}

    def default_output(self, estimate: bool) -> str:
        return f"runs/replay-{Path(self.trace).stem}"

    def open(self, run: Path, log) -> Evaluator:
        log.info(f"replaying {self.trace} ({len(self.evaluator.table)} recorded trials)")
        return self.evaluator
