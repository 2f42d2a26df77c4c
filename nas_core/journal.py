"""RUN/journal.jsonl: one JSON object per finished trial, appended with flush + fsync.

A search killed mid-write leaves at most a torn last line; reading ignores it and the next append
cuts it off first. Resuming = wrapping the evaluator in JournaledEvaluator: journaled trials
return their stored result, so the (deterministic) search walks the same path to the same answer.

A candidate over a deployment budget (nas_core.cost) is journaled too, untrained: ``"accuracy": null``,
``"over_budget": [the budgets it breaks]`` and its ``"cost"``. Such a line answers no trial (``records()``
and ``lookup`` hold trained trials only; ``over_budget_records()`` the others): a resumed search decides
again from the stored costs (RUN/latency.json) and reaches the same verdict.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas_core import faults
from nas_core.errors import NasError
from nas_core.evaluator import Evaluator, TrialResult
from nas_core.genotype import Genotype
from nas_core.values import HUGE, SEED_MAX, is_number, shown

_RESULT_FIELDS = ("accuracy", "params", "seconds", "seed", "epoch_accuracies", "extra")


def _jsonable(value: Any) -> Any:
    # numpy / torch scalars that a trainer may leave in TrialResult.extra
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: list[dict[str, Any]] = []
        self._over_budget: list[dict[str, Any]] = []
        self._over_budget_keys: set[tuple[str, int]] = set()
        self._lines: list[dict[str, Any]] = []  # every record, trained or not, in file order
        self._index: dict[tuple[str, int], dict[str, Any]] = {}
        self._good_bytes: int | None = None  # set when a torn last line must be cut before appending
        self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise NasError(f"{self.path}: expected the journal of a search run, one JSON trial record per line "
                           f"({exc.strerror})") from None
        lines = data.split(b"\n")
        offset = 0
        for number, line in enumerate(lines, start=1):
            is_last = number == len(lines)
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    if is_last:  # torn by a crash mid-append: the trial simply did not finish
                        self._good_bytes = offset
                        break
                    raise NasError(f"{self.path}:{number}: expected one JSON trial record per line ({exc})") from None
                # A complete JSON line is never torn: a bad record is an error wherever it stands.
                if not isinstance(record, dict):
                    raise NasError(f"{self.path}:{number}: expected one JSON trial record per line (not an object)")
                self._add(record, number)
            offset += len(line) + 1
        if self._good_bytes is None and data and not data.endswith(b"\n"):
            self._good_bytes = len(data)  # complete record but no newline: add one before appending

    def _add(self, record: dict[str, Any], number: int | None = None) -> None:
        where = f"{self.path}:{number}" if number else str(self.path)
        if "genotype" not in record or "epochs" not in record or "accuracy" not in record:
            raise NasError(f"{where}: expected a trial record with genotype, epochs and accuracy")
        genotype = Genotype.from_dict(record["genotype"], where=where)
        if record.get("over_budget") is not None:
            _check_over_budget(record, where)
            self._over_budget.append(record)
            self._over_budget_keys.add((genotype.key(), record["epochs"]))
        else:
            _check_result_fields(record, where)
            self._records.append(record)
            self._index[(genotype.key(), record["epochs"])] = record
        self._lines.append(record)

    def records(self) -> list[dict[str, Any]]:
        """The trained trials (the lines that answer a trial), in file order."""
        return list(self._records)

    def over_budget_records(self) -> list[dict[str, Any]]:
        """The candidates journaled as over budget (never trained), in file order."""
        return list(self._over_budget)

    def all_records(self) -> list[dict[str, Any]]:
        """Every line, trained or over budget, in file order."""
        return list(self._lines)

    def is_over_budget(self, genotype: Genotype, epochs: int) -> bool:
        return (genotype.key(), int(epochs)) in self._over_budget_keys

    def __len__(self) -> int:
        return len(self._records)

    def lookup(self, genotype: Genotype, epochs: int) -> TrialResult | None:
        record = self._index.get((genotype.key(), int(epochs)))
        return None if record is None else record_result(record)

    def append(self, genotype: Genotype, epochs: int, result: TrialResult, **extra: Any) -> None:
        self._write({"genotype": genotype.to_dict(), "epochs": int(epochs), **result.to_dict(),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})

    def append_over_budget(self, genotype: Genotype, epochs: int, cost: dict[str, Any], broken: list[str],
                           **extra: Any) -> None:
        """Journal a candidate the search did not train because it breaks the ``broken`` budgets."""
        self._write({"genotype": genotype.to_dict(), "epochs": int(epochs), "accuracy": None,
                     "params": int(cost.get("params", 0)), "over_budget": list(broken), "cost": dict(cost),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=_jsonable) + "\n"
        with open(self.path, "ab") as handle:
            if self._good_bytes is not None:
                handle.truncate(self._good_bytes)
                if self._good_bytes and not self._ends_with_newline():
                    handle.write(b"\n")
                self._good_bytes = None
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())
        self._add(json.loads(line))

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


# Each field a TrialResult is rebuilt from: (integer?, lo, hi, what it is). Accuracies are percentages.
_RESULT_RANGES = {"epochs": (True, 1, 10_000, "a positive integer"), "accuracy": (False, 0, 100, "a percentage"),
                  "params": (True, 0, HUGE, "a count"), "seconds": (False, 0, HUGE, "a duration"),
                  "seed": (True, 0, SEED_MAX, "a non-negative integer")}


def _check_result_fields(record: dict[str, Any], where: str) -> None:
    """The fields a TrialResult is rebuilt from, each of the type and range the search computes with."""
    for name, (integer, lo, hi, what) in _RESULT_RANGES.items():
        if name in record and not is_number(record[name], integer=integer, lo=lo, hi=hi):
            raise NasError(f"{where}: expected '{name}' to be {what} in [{lo:g}, {hi:g}], got {shown(record[name])}")
    accuracies = record.get("epoch_accuracies", [])
    if not isinstance(accuracies, list) or not all(is_number(a, lo=0, hi=100) for a in accuracies):
        raise NasError(f"{where}: expected 'epoch_accuracies' to be a list of percentages in [0, 100], "
                       f"got {shown(accuracies)}")
    if not isinstance(record.get("extra", {}), dict):
        raise NasError(f"{where}: expected 'extra' to be an object, got {shown(record['extra'])}")


def _check_over_budget(record: dict[str, Any], where: str) -> None:
    broken, epochs = record["over_budget"], record["epochs"]
    if not (isinstance(broken, list) and broken and all(isinstance(b, str) for b in broken)):
        raise NasError(f"{where}: expected 'over_budget' to be a list of the budgets a candidate breaks")
    if record["accuracy"] is not None or not is_number(epochs, integer=True, lo=1, hi=10_000):
        raise NasError(f"{where}: expected an over-budget candidate with 'accuracy': null and positive 'epochs'")
    cost = record.get("cost", {})  # reports format these numbers: a 400-digit one would overflow there
    if not isinstance(cost, dict) or not all(value is None or is_number(value, lo=0, hi=HUGE)
                                             for value in cost.values()):
        raise NasError(f"{where}: expected 'cost' to be an object of numbers in [0, {HUGE:g}], got {shown(cost)}")


def record_result(record: dict[str, Any]) -> TrialResult:
    """The TrialResult stored in one journal record."""
    values = {k: record[k] for k in _RESULT_FIELDS if k in record}
    values.setdefault("params", 0)
    return TrialResult(**values)


class JournaledEvaluator:
    """Evaluator that answers journaled trials from the journal and journals every new one.

    Under DDP every rank runs the search: ``share`` (e.g. a broadcast from rank 0) makes all ranks agree
    on whether a trial is journaled, so they train the same trials together, and only the rank with
    ``writes`` appends to the journal.
    """

    def __init__(self, evaluator: Evaluator, journal: Journal, *,
                 share: Callable[[TrialResult | None], TrialResult | None] | None = None, writes: bool = True):
        self.evaluator = evaluator
        self.journal = journal
        self.share = share
        self.writes = writes
        self.hits = 0  # trials answered from the journal (resumed), for the CLI's summary
        self.last_was_hit = False
        self._context: dict[str, Any] = {}

    def begin_trial(self, **context: Any) -> None:
        """Phase information of the next trial (index, phase, layer), stored with its record."""
        self._context = dict(context)
        inner = getattr(self.evaluator, "begin_trial", None)
        if inner is not None:
            inner(**context)

    def over_budget(self, genotype: Genotype, epochs: int, verdict, **context: Any) -> None:
        """Journal a candidate the search will not train (once: a resumed search meets it again)."""
        self.last_was_hit = self.journal.is_over_budget(genotype, epochs)
        if self.writes and not self.last_was_hit:
            self.journal.append_over_budget(genotype, epochs, verdict.cost, verdict.broken, **context)

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        stored = self.journal.lookup(genotype, epochs)
        if self.share is not None:
            stored = self.share(stored)
        self.last_was_hit = stored is not None
        if stored is not None:
            self.hits += 1
            return stored
        result = self.evaluator.evaluate(genotype, epochs)
        if self.writes:
            self.journal.append(genotype, epochs, result, **self._context)
            faults.trial()
        self._context = {}
        return result
