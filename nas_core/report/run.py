"""Read a search run folder (journal + settings + result) into the trials a report shows.

Phase and decision of each trial come from replaying the journal through MacroMicroSearch with a
look-up evaluator, so they follow the search's own rules for any journal: a finished run, a killed
one (the replay stops at the first candidate the journal lacks), one still running, or a journaled
replay of the authors' traces. The replay needs no search space: the micro phase lowers the width
until the parameter count fits, and the journal holds the count of every candidate that was trained;
a width that was never trained is answered as "too big", which is why the search skipped it. A budgeted
run's verdicts come from the costs its search measured (RUN/latency.json), so the candidates it found over
budget (journaled untrained) take their place on the path again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.io import read_json_object
from nas_core.journal import Journal, record_result
from nas_core.replay import LookupEvaluator
from nas_core.search import MacroMicroSearch, TrialRecord
from nas_core.settings import SearchSettings
from nas_core.values import HUGE, is_number, shown

ACCEPTED = ("baseline", "accept")


@dataclass
class Trial:
    """One journal line, placed on the search path when the replay reached it."""

    line: int  # 1-based line of journal.jsonl
    genotype: Genotype
    epochs: int
    fitness: float
    params: int
    seconds: float
    epoch_accuracies: list[float]
    phase: str | None = None
    layer: int | None = None
    decision: str | None = None  # baseline | accept | neutral | strike | reject; None: not on the path
    index: int | None = None  # position on the search path
    speculative: bool = False  # run ahead of the search by a parallel executor
    over_budget: list[str] = field(default_factory=list)  # budgets broken: never trained, no fitness
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.decision in ACCEPTED


@dataclass
class SearchRun:
    folder: Path
    lines: list[Trial]  # one per journal line, in journal order
    path: list[Trial]  # the search path in order (a trial answered twice from one line appears twice)
    settings: SearchSettings | None
    config: dict[str, Any]  # settings.json (empty when missing)
    result: dict[str, Any] | None  # result.json, None while the search runs or after it was killed
    notes: list[str]

    @property
    def finished(self) -> bool:
        return self.result is not None

    def best(self) -> Trial | None:
        """The trial whose genotype the search holds as its answer so far."""
        return next((t for t in reversed(self.path) if t.accepted), None)


def trained(trials: list[Trial]) -> list[Trial]:
    """The trials that were trained (have a fitness): all but the candidates over a deployment budget."""
    return [t for t in trials if not t.over_budget]


class _JournalParams:
    """A stand-in search space for the replay: parameter counts as the journal recorded them."""

    name = "journal"

    def __init__(self, params: dict[str, int]):
        self.params = params

    def count_params(self, genotype: Genotype) -> int:
        return self.params.get(genotype.key(), 2**62)

    def build(self, genotype: Genotype):
        raise NasError(f"{genotype.key()}: a report replays the journal; it builds no network")


def _optional_json(path: Path, what: str) -> dict[str, Any] | None:
    """A run file that may be absent (a search still running has no result.json); one that is there must read."""
    if not path.exists():
        return None
    return read_json_object(path, what)


# The values of settings.json / result.json a report shows, each of the type (and range) it is shown as.
_SHOWN = {"options": dict, "size": str, "dataset": str, "replay": str}
_SHOWN_NUMBERS = {"fitness": (0, 100), "val_accuracy": (0, 100), "params": (0, HUGE), "wall_seconds": (0, HUGE)}


def _check_shown(data: dict[str, Any], path: Path) -> None:
    for name, kind in _SHOWN.items():
        if data.get(name) is not None and not isinstance(data[name], kind):
            raise NasError(f"{path}: expected '{name}' to be {'an object' if kind is dict else 'a string'}, "
                           f"got {shown(data[name])}")
    for name, (lo, hi) in _SHOWN_NUMBERS.items():
        if data.get(name) is not None and not is_number(data[name], lo=lo, hi=hi):
            raise NasError(f"{path}: expected '{name}' to be a number in [{lo:g}, {hi:g}], got {shown(data[name])}")


def _settings_of(
    config: dict[str, Any], result: dict[str, Any] | None, folder: Path
) -> SearchSettings | None:
    candidates = [(config.get("search"), folder / "settings.json")]
    if result is not None:
        saved = result.get("settings")
        candidates += [(saved.get("search") if isinstance(saved, dict) else None, folder / "result.json"),
                       (saved, folder / "result.json")]
    for candidate, path in candidates:
        if isinstance(candidate, dict) and "d_min" in candidate and "w_max" in candidate:
            return SearchSettings.from_dict(candidate, where=f"{path}: search settings")
    return None


def _journal_lines(journal_path: Path, notes: list[str]) -> list[Trial]:
    journal = Journal(journal_path)
    raw = journal_path.read_bytes()
    written = sum(1 for line in raw.split(b"\n") if line.strip())
    if written > len(journal.all_records()):
        notes.append(
            f"the last line of {journal_path.name} is torn (a trial was being written when the search "
            "stopped); it is left out"
        )
    lines = []
    for number, record in enumerate(journal.all_records(), start=1):
        over = list(record.get("over_budget") or [])
        result = record_result({**record, "accuracy": 0.0} if over else record)
        lines.append(
            Trial(
                line=number,
                genotype=Genotype.from_dict(record["genotype"]),
                epochs=int(record["epochs"]),
                fitness=float("nan") if over else float(result.accuracy),
                params=int(result.params),
                seconds=float(result.seconds),
                epoch_accuracies=[float(a) for a in result.epoch_accuracies],
                phase=record.get("phase"),
                layer=record.get("layer"),
                speculative=bool(record.get("speculative", False)),
                over_budget=over,
                record=record,
            )
        )
    return lines


def _replay_path(lines: list[Trial], settings: SearchSettings, folder: Path) -> tuple[list[TrialRecord], str | None]:
    """The search path the journal answers, and why the replay stopped early (None: it ran to the end)."""
    from nas_core.cost import LATENCY_FILE, CostTable

    table = {}
    for trial in trained(lines):  # the first line of a (genotype, epochs) answers it, as the journal's look-up does
        table.setdefault((trial.genotype.key(), trial.epochs), record_result(trial.record))
    params = {trial.genotype.key(): trial.params for trial in lines}
    path: list[TrialRecord] = []
    space = _JournalParams(params)
    # Budget verdicts from the stored costs only: a report measures nothing.
    costs = CostTable(space, folder / LATENCY_FILE, measure=False)
    search = MacroMicroSearch(space, LookupEvaluator(table), settings, on_trial=path.append, costs=costs)
    try:
        search.run()
    except NasError as exc:
        return path, str(exc)
    return path, None


def _place(lines: list[Trial], records: list[TrialRecord]) -> list[Trial]:
    """Mark each journal line with its place on the search path; the path as a list of trials."""
    first = {}
    for trial in lines:
        first.setdefault((trial.genotype.key(), trial.epochs), trial)
    path = []
    for record in records:
        trial = first.get((record.genotype.key(), record.epochs))
        if trial is None:  # over budget, killed before its line was journaled
            continue
        if trial.index is None:
            trial.index, trial.phase, trial.layer, trial.decision = (
                record.index,
                record.phase,
                record.layer,
                record.decision,
            )
            path.append(trial)
        else:  # asked again (e.g. the micro baseline at the epochs of a macro trial): one line, two steps
            path.append(
                Trial(
                    **{
                        **trial.__dict__,
                        "index": record.index,
                        "phase": record.phase,
                        "layer": record.layer,
                        "decision": record.decision,
                    }
                )
            )
    return path


def read_search_run(folder: str | Path) -> SearchRun:
    """The trials of a run folder; NasError when the folder holds no readable journal."""
    folder = Path(folder)
    journal_path = folder / "journal.jsonl"
    if not folder.is_dir():
        found = "it is a file" if folder.exists() else "folder not found"
        raise NasError(f"{folder}: expected a search run folder (holding journal.jsonl); {found}")
    if not journal_path.is_file():
        raise NasError(f"{journal_path}: expected the journal of a search run; file not found")
    notes: list[str] = []
    config = _optional_json(folder / "settings.json", "the settings of a search run") or {}
    result = _optional_json(folder / "result.json", "the result of a search run")
    _check_shown(config, folder / "settings.json")
    if result is not None:
        _check_shown(result, folder / "result.json")
    settings = _settings_of(config, result, folder)
    lines = _journal_lines(journal_path, notes)
    path: list[Trial] = []
    if settings is None:
        notes.append(
            "no search settings in settings.json or result.json: trials are shown in journal order "
            "without accept/reject decisions"
        )
        path = list(lines)
        for number, trial in enumerate(path):
            trial.index = number
    elif lines:
        records, stopped = _replay_path(lines, settings, folder)
        path = _place(lines, records)
        if stopped is not None and result is not None:
            notes.append(f"the journal does not replay to the end of the search ({stopped})")
    off_path = [t for t in lines if t.index is None]
    if off_path:
        speculative = sum(t.speculative for t in off_path)
        notes.append(
            f"{len(off_path)} journal line(s) are not on the search path"
            + (f" ({speculative} speculative)" if speculative else "")
        )
    return SearchRun(folder, lines, path, settings, config, result, notes)


def journal_summary(run: SearchRun) -> dict[str, Any]:
    """Counts for a header: trials on the path, journal lines, speculative lines, seconds per phase."""
    per_phase: dict[str, float] = {}
    for trial in run.lines:
        key = trial.phase or "unknown"
        per_phase[key] = per_phase.get(key, 0.0) + trial.seconds
    return {
        "trials": len(trained(run.path)),
        "over_budget": len(run.path) - len(trained(run.path)),
        "lines": len(run.lines),
        "speculative": sum(t.speculative for t in run.lines),
        "seconds": sum(t.seconds for t in run.lines),
        "seconds_per_phase": per_phase,
    }


def describe_config(config: dict[str, Any]) -> str:
    """settings.json minus the search settings, as compact JSON (the run's other options)."""
    rest = {k: v for k, v in config.items() if k not in ("search", "space")}
    return json.dumps(rest.get("options", rest), sort_keys=True, default=str)
