"""The report of a search run: header, five figures and the trial table, from the run folder alone."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from nas_core.genotype import Genotype
from nas_core.report import figures
from nas_core.report.document import Document, Facts, Figure, Note, Table, write_document
from nas_core.report.run import SearchRun, Trial, describe_config, journal_summary, read_search_run, trained


def genotype_name(space: str | None, genotype: Genotype) -> str:
    """The paper's name of ``genotype`` (the space class's optional ``paper_name``, e.g. R-58-256 for
    faces) followed by its key, or the key alone (FCN genotypes: d6-w12-ssscss-533353)."""
    namer = _paper_namer(space)
    return f"{namer(genotype)} ({genotype.key()})" if namer is not None else genotype.key()


@functools.cache
def _paper_namer(space: str | None):
    """The registered space class's ``paper_name``; spaces of other packages are found through the
    registry's entry points, never by importing a module a run folder names."""
    from nas_core.space import SPACES, load_space_plugin

    if space is None:
        return None
    if space not in SPACES:
        load_space_plugin(space)
    return getattr(SPACES.get(space), "paper_name", None) if space in SPACES else None


def space_spec_of(run: SearchRun) -> dict[str, Any] | None:
    """The run's space as {"name", ...}: settings.json 'space' (spec) or result.json 'space'."""
    for source in (run.config, run.result or {}):
        spec = source.get("space")
        if isinstance(spec, str):
            return {"name": spec}
        if isinstance(spec, dict) and "name" in spec:
            return spec
    return None


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d} ({seconds:,} s)"


def _dataset(run: SearchRun) -> str:
    options = run.config.get("options") or {}
    for value in (run.config.get("dataset"), (run.result or {}).get("dataset"), options.get("data")):
        if value:
            return str(value)
    if "options" in run.config:
        return "built-in synthetic demo face set"
    return "?"


def _answer(run: SearchRun, space: str | None) -> tuple[str, str, str, str | None]:
    """(name of the result genotype, params, fitness, its key) of a finished run or the best so far."""
    best = run.best()
    if run.result is not None and isinstance(run.result.get("genotype"), dict):
        genotype = Genotype.from_dict(run.result["genotype"], where=f"{run.folder / 'result.json'}")
        fitness = run.result.get("fitness", run.result.get("val_accuracy"))
        params = run.result.get("params")
    elif best is not None:
        genotype, fitness, params = best.genotype, best.fitness, best.params
    else:
        return "none yet", "?", "?", None
    name = genotype_name(space, genotype)
    fitness_text = f"{fitness:.2f}%" if isinstance(fitness, int | float) else "?"
    params_text = f"{params:,}" if isinstance(params, int) else "?"
    return name, params_text, fitness_text, genotype.key()


_RANK_ON = {"val": "the held-out validation split of the training set (rank_on val)",
            "test": "the test set (rank_on test, the paper's protocol: the test accuracy is then optimistic)"}


def fitness_on(run: SearchRun) -> str:
    """What the run's fitness is measured on: result.json's "fitness_on" phrase, else the settings' choice."""
    on = (run.result or {}).get("fitness_on")
    if isinstance(on, dict) and on.get("text"):
        return str(on["text"])
    rank_on = "test" if run.config.get("val_fraction") == 0 else run.config.get("rank_on")  # no split: test
    if rank_on in _RANK_ON:
        return _RANK_ON[rank_on]
    return str((run.config.get("options") or {}).get("fitness") or "?")


def _header(run: SearchRun, space: dict[str, Any] | None) -> Facts:
    space_name = space.get("name") if space else None
    name, params, fitness, _ = _answer(run, space_name)
    summary = journal_summary(run)
    status = (
        "finished (result.json)"
        if run.finished
        else "partial: no result.json yet (the search is still running, or it was stopped)"
    )
    settings = run.settings.to_dict() if run.settings is not None else {}
    preset = run.config.get("size") or (run.config.get("options") or {}).get("size") or \
        ("none: a replay takes the settings of its trace" if run.config.get("replay") else "?")
    items = [
        ("status", status),
        ("run folder", str(run.folder)),
        ("dataset", _dataset(run)),
        (
            "space",
            f"{space_name} {space.get('task', {k: v for k, v in space.items() if k != 'name'})}"
            if space
            else "?",
        ),
        ("preset", str(preset)),
        ("search settings", ", ".join(f"{k} {v}" for k, v in settings.items()) or "?"),
        ("other settings", describe_config(run.config)),
        ("result genotype" if run.finished else "best genotype so far", name),
        ("params", params),
        ("fitness", fitness),
        ("fitness measured on", fitness_on(run)),
        (
            "trials",
            f"{summary['trials']} on the search path; {summary['lines']} journal line(s)"
            + (f"; {summary['speculative']} speculative" if summary["speculative"] else "")
            + (f"; {summary['over_budget']} over budget (not trained)" if summary["over_budget"] else ""),
        ),
        ("epochs trained", str(sum(t.epochs for t in trained(run.lines)))),
        ("time (sum of trials)", hms(summary["seconds"])),
        (
            "time per phase",
            "; ".join(f"{figures.phase_name(p)} {hms(s)}" for p, s in summary["seconds_per_phase"].items())
            or "?",
        ),
    ]
    if run.settings is not None and run.settings.budget.active:
        cost = (run.result or {}).get("cost")
        items.insert(items.index(("fitness", fitness)) + 1,
                     ("budget", run.settings.budget.describe(cost if isinstance(cost, dict) else None)))
    if run.result is not None and run.result.get("wall_seconds") is not None:
        items.append(("wall time of the last invocation", hms(run.result["wall_seconds"])))
    if run.config.get("replay"):
        items.append(("replay of", str(run.config["replay"])))
    return Facts("Run", items)


def _joined(values: list[Any]) -> Any:
    if not values:
        return ""
    return values[0] if len(values) == 1 else ", ".join(str(v) for v in values)


def _rows(run: SearchRun, space: str | None) -> list[list[Any]]:
    """One row per journal line; a line the search asked for twice lists both steps (e.g. "0, 5")."""
    steps: dict[int, list[Trial]] = {}
    for step in run.path:
        steps.setdefault(step.line, []).append(step)
    rows = []
    for t in run.lines:
        on_path = steps.get(t.line, [])
        phases = [figures.phase_name(s.phase) for s in on_path] or [figures.phase_name(t.phase)]
        decision = f"over budget: {'; '.join(t.over_budget)}" if t.over_budget else \
            _joined([s.decision for s in on_path])
        rows.append([
            t.line, _joined([s.index for s in on_path]), _joined(phases), "" if t.layer is None else t.layer,
            genotype_name(space, t.genotype), t.epochs, "" if t.over_budget else round(t.fitness, 2), t.params,
            "" if t.over_budget else round(t.seconds, 1), decision, "yes" if any(s.accepted for s in on_path) else "no",
            "yes" if t.speculative else "",
        ])
    return rows


TABLE_COLUMNS = ["line", "trial", "phase", "layer", "genotype", "epochs", "fitness (%)", "params", "seconds",
                 "decision", "accepted", "speculative"]


# (figure name, title, caption) in report order
_FIGURES = [
    ("search_path", "Search path", "Fitness of every trial in search order, coloured by phase; black-edged "
     "points were accepted (or baselines) and are joined; the star is the search's answer. Micro trials "
     "train for the few micro epochs, so their fitness sits on a lower scale than the macro trials'."),
    ("fitness_params", "Fitness vs parameters", "Every journaled trial; the step line is the Pareto front "
     "(fewest parameters for the fitness). Trials trained for different epochs are not strictly comparable."),
    ("macro", "Macro trajectory", "Depth and width of every trial (Grow raises the depth, Prune lowers the "
     "width; micro trials lower the width to keep the parameter count)."),
    ("micro", "Micro decisions per layer", "Op (plain conv instead of sep) and kernel 5 tried per layer: "
     "accepted, rejected or not tried; the text is the layer's op and kernel in the trial."),
    ("epochs", "Epoch curves", "Left: fitness after each epoch of each trial. Right: epochs per trial "
     "(dynamic learning: every depth or width candidate tried trains longer than the one before)."),
]


def _figures(run: SearchRun, result_key: str | None) -> list[Figure]:
    drawn = {"search_path": lambda: figures.search_path(run),
             "fitness_params": lambda: figures.fitness_vs_params(run, result_key),
             "macro": lambda: figures.macro_trajectory(run), "micro": lambda: figures.micro_map(run),
             "epochs": lambda: figures.epoch_curves(run)}
    return [Figure(name, title, drawn[name](), caption) for name, title, caption in _FIGURES]


def build_search_document(run: SearchRun) -> Document:
    space = space_spec_of(run)
    space_name = space.get("name") if space else None
    _, _, _, result_key = _answer(run, space_name)
    title = f"Search report: {run.folder.name}" + ("" if run.finished else " (partial)")
    document = Document(title, [_header(run, space)])
    if not run.finished:
        document.blocks.append(Note("This run has no result.json: it is still running or it was stopped. "
                                    "The report shows the trials journaled so far.", warning=True))
    document.blocks += [Note(note, warning=True) for note in run.notes]
    if run.lines:
        document.blocks += _figures(run, result_key)
    else:
        document.blocks.append(Note("The journal holds no finished trial yet.", warning=True))
    rows = _rows(run, space_name)
    document.blocks.append(Table("Trials (one row per journal line)", TABLE_COLUMNS, rows, table_id="trials"))
    return document


def write_search_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write RUN/report.html (or ``output``) and its markdown twin; returns the HTML path."""
    run = read_search_run(run_dir)
    return write_document(build_search_document(run), output or Path(run_dir) / "report.html")
