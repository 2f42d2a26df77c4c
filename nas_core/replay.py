"""Replay a finished search without training: the authors' traces or our own run folders.

A LookupEvaluator answers every trial from a table of finished trials. Replaying with other
settings (thresholds, strikes, macro_only, max_trials) re-decides the search; a candidate the
table lacks raises NasError naming it, since it would need training. A run folder's budget decisions are
taken from the costs its search measured (RUN/latency.json), never measured again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_core import values
from nas_core.errors import NasError
from nas_core.evaluator import TrialResult
from nas_core.genotype import Genotype
from nas_core.io import read_json_object
from nas_core.journal import Journal, record_result
from nas_core.search import MacroMicroSearch, SearchResult
from nas_core.settings import SearchSettings, with_overrides
from nas_core.space import SearchSpace, create_space


class LookupEvaluator:
    """Evaluator over a table {(genotype.key(), epochs): TrialResult}; records what was asked."""

    def __init__(self, table: dict[tuple[str, int], TrialResult], source: str | None = None):
        self.table = table
        self.source = source  # the trace or journal the table was read from, named in errors
        self.requests: list[tuple[Genotype, int]] = []

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        self.requests.append((genotype, epochs))
        try:
            return self.table[(genotype.key(), int(epochs))]
        except KeyError:
            where = f"{self.source}: " if self.source else ""
            raise NasError(f"{where}{genotype.key()} at {epochs} epochs: not in the trace; it would need "
                           "training") from None


def load_trace(path: str | Path) -> tuple[SearchSettings, SearchSpace, LookupEvaluator, dict[str, Any]]:
    """(settings, space, evaluator, info) from an authors' trace JSON, a RUN dir or its journal.jsonl.

    info holds "kind" ("trace" | "run"), "source" and, for traces, "expected_requests"
    [(genotype, epochs), ...] and "expected_result" (the logged result, ops as "sep"/"conv"); for runs
    "costs": the run's latency.json when it has one (nas_core.cost.CostTable's ``seed``).
    """
    path = Path(path)
    if path.is_dir() or path.name.endswith(".jsonl"):
        return _load_run(path)
    if not path.is_file():
        raise NasError(f"{path}: expected a search trace (.json), a run folder or its journal.jsonl; not found")
    data = read_json_object(path)
    if "candidates" not in data:
        raise NasError(f"{path}: expected a search trace with 'candidates', 'settings' and 'result'")
    return _load_authors_trace(path, data)


def replay(path: str | Path, *, space: SearchSpace | None = None, **setting_overrides: Any) -> SearchResult:
    """Run the search over a finished trace; overrides (None ignored) re-decide it without training."""
    from nas_core.cost import CostTable

    settings, loaded_space, evaluator, info = load_trace(path)
    settings = with_overrides(settings, **setting_overrides)
    space = space or loaded_space
    return MacroMicroSearch(space, evaluator, settings, costs=CostTable(space, seed=info.get("costs"))).run()


def _load_authors_trace(path: Path, data: dict[str, Any]):
    from nas_core.classify.network import ClassifierSpace

    try:
        logged, fixed = data["settings"], data["hard_coded"]
        if logged["dp_break_tolerance"] != logged["ch_break_tolerance"]:
            raise NasError(f"{path}: expected equal depth and width break tolerances (one max_strikes)")
        settings = SearchSettings.from_dict({
            "e_min": logged["E_min"], "d_min": logged["D_min"], "d_max": logged["D_max"], "w_min": logged["W_min"],
            "w_max": logged["W_max"], "w_res": logged["W_res"], "depth_accept": logged["dp_add_tolerance"],
            "depth_tolerance": fixed["depth_drop_tolerance"],
            # the reference breaks when a strike arrives with the counter already at the tolerance
            "max_strikes": _number(logged["dp_break_tolerance"], "dp_break_tolerance", integer=True, minimum=0,
                                   maximum=10_000) + 1,
            "micro_epochs": fixed["micro_epochs"], "micro_kernels": fixed["micro_kernels"],
            "param_slack": fixed["micro_param_slack"], "seed": logged.get("seed", 0),
            "depth_epoch_step": logged.get("add_epochs", 1), "width_epoch_step": logged.get("add_epochs_w", 2),
        }, f"{path}: settings")
        space = ClassifierSpace(
            in_channels=_number(data["in_channels"], "in_channels", integer=True, minimum=1, maximum=64),
            num_classes=_number(data["num_classes"], "num_classes", integer=True, minimum=1, maximum=1_000_000))
        table: dict[tuple[str, int], TrialResult] = {}
        expected = []
        if not isinstance(data["candidates"], list):
            raise ValueError("'candidates' is not a list")
        for number, cand in enumerate(data["candidates"]):
            genotype = Genotype.from_dict(cand, where=f"{path}: candidate {number}")
            epochs = _number(cand["epochs"], f"candidate {number} epochs", integer=True, minimum=1, maximum=10_000)
            table[(genotype.key(), epochs)] = TrialResult(
                accuracy=_number(cand["test_acc"], f"candidate {number} test_acc", minimum=0, maximum=100),
                params=_number(cand["params"], f"candidate {number} params", integer=True, minimum=0),
                seconds=_number(cand.get("train_seconds", 0.0), f"candidate {number} train_seconds", minimum=0),
                epoch_accuracies=[_number(a, f"candidate {number} epoch_test_acc", minimum=0, maximum=100)
                                  for a in cand.get("epoch_test_acc", [])],
                extra={"train_acc": cand.get("train_acc"), "phase": cand.get("phase")},
            )
            expected.append((genotype, epochs))
        result = data["result"]
        final = Genotype.from_dict({**result, "width": result["final_width"]}, where=f"{path}: result")
        expected_result = {"genotype": final,
                           "macro_width": _number(result["macro_width"], "macro_width", integer=True, minimum=1),
                           "params": _number(result["params"], "result params", integer=True, minimum=0)}
    except KeyError as exc:
        raise NasError(f"{path}: expected key {exc} in the search trace") from None
    except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type or range somewhere
        raise NasError(f"{path}: expected a search trace in the authors' format ({exc})") from None
    info = {"kind": "trace", "source": str(path), "dataset": data.get("dataset"),
            "expected_requests": expected, "expected_result": expected_result}
    return settings, space, LookupEvaluator(table, source=str(path)), info


def _number(value: Any, what: str, *, integer: bool = False, minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """A finite JSON number in range (an integer when asked: 3 or 3.0, never true or "3"); ValueError otherwise."""
    return values.number(value, what, integer=integer, lo=minimum, hi=values.HUGE if maximum is None else maximum)


def _load_run(path: Path):
    run_dir = path if path.is_dir() else path.parent
    journal_path = path if path.name.endswith(".jsonl") else run_dir / "journal.jsonl"
    if not journal_path.is_file():
        raise NasError(f"{journal_path}: expected the journal of a search run; file not found")
    # settings.json is written when a run starts, result.json when it ends; either may describe it.
    settings = space = None
    for name in ("settings.json", "result.json"):
        where = run_dir / name
        if where.is_file():
            data = read_json_object(where)
            found = _settings_in(data)
            if settings is None and found is not None:
                settings = SearchSettings.from_dict(found, where=f"{where}: settings")
            if space is None and data.get("space") is not None:
                space = _space_from_spec(data["space"], where)
    if settings is None:
        raise NasError(f"{run_dir}: expected settings.json or result.json holding the search settings")
    if space is None:
        raise NasError(f"{run_dir}: expected settings.json or result.json holding 'space' "
                       "(name, module, task) to rebuild the search space")
    journal = Journal(journal_path)
    table = {}
    for record in journal.records():
        genotype = Genotype.from_dict(record["genotype"], where=str(journal_path))
        table[(genotype.key(), int(record["epochs"]))] = record_result(record)
    info = {"kind": "run", "source": str(run_dir), "trials": len(table),
            "costs": str(run_dir / "latency.json") if (run_dir / "latency.json").is_file() else None}
    return settings, space, LookupEvaluator(table, source=str(journal_path)), info


def _settings_in(data: dict[str, Any]) -> dict[str, Any] | None:
    """The SearchSettings dict of a run file: {"settings": {...}}, {"search": {...}} or nested."""
    for outer in (data.get("settings"), data):
        if isinstance(outer, dict):
            if "d_min" in outer and "w_max" in outer:
                return outer
            if isinstance(outer.get("search"), dict):
                return outer["search"]
    return None


def _space_from_spec(spec: Any, where: Path) -> SearchSpace:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise NasError(f"{where}: expected 'space': {{'name': ..., 'task': {{...}}}} describing the search space")
    # Spaces are found through the registry and its entry points (nas_core.space.create_space); the
    # "module" a run folder names is informative only: nothing is imported because a file says so.
    task = spec.get("task") or {}
    if not isinstance(spec["name"], str) or not isinstance(task, dict):
        raise NasError(f"{where}: expected 'space': {{'name': ..., 'task': {{...}}}} describing the search space")
    try:
        return create_space(spec["name"], **task)
    except NasError as exc:
        raise NasError(f"{where}: space: {exc}") from None
    except (TypeError, ValueError) as exc:  # settings the space does not take
        raise NasError(f"{where}: expected 'space' settings the {spec['name']} space takes ({exc})") from None
