"""nas-search: search an image classifier with the macro-micro engine (ARCHITECTURE §3, §7).

    nas-search --size tiny --output runs/digits            # scikit-learn digits, runs anywhere
    nas-search --dataset cifar10 --data-root data --size tiny --output runs/c10
    nas-search --resume runs/c10                            # continue a killed search, same answer
    nas-search --replay seed_traces/cifar10_64.json --output runs/replay

RUN/settings.json (everything that defines the run), RUN/journal.jsonl (one line per finished trial),
RUN/search.log, RUN/result.json (written atomically at the end), RUN/report.html + RUN/report.md (nas-report),
and with a deployment budget (--max-params / --max-mflops / --max-latency-ms) RUN/latency.json, the costs of
every candidate checked, measured once (a resume, a replay and --parallel decide from them).
A replay journals the trials it replays too, so `nas-report RUN` works on it like on a search.
One process writes into RUN at a time (RUN/.facenas.lock); a second one exits 2 naming it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nas_core.cli._common import (
    add_budget_args,
    add_data_args,
    add_parallel_args,
    add_run_args,
    add_search_setting_args,
    add_split_args,
    budget_overrides,
    output_folder,
    search_setting_overrides,
)
from nas_core.errors import NasError, run_cli
from nas_core.io import atomic_write_json, read_json_object
from nas_core.runlock import run_lock
from nas_core.runlog import log_to, progress_bar


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-search", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser)
    add_split_args(parser)
    add_run_args(parser)
    parser.add_argument("--size", default="tiny", help="settings preset: tiny (W_max 64) or mobile (W_max 128)")
    parser.add_argument("--output", default=None, help="run folder (default runs/<dataset>-<size>-<time>)")
    add_search_setting_args(parser)
    add_budget_args(parser)
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="continue the search in RUN (reads RUN/settings.json; journaled trials are reused)")
    parser.add_argument("--replay", metavar="FILE", default=None,
                        help="drive the search with a recorded trace (authors' JSON or a RUN/journal.jsonl)")
    add_parallel_args(parser)
    parser.add_argument("--estimate", action="store_true",
                        help="train nothing: print the worst-case trial list, time a few steps of the smallest and "
                             "largest candidate, project the hours at --parallel N; writes OUTPUT/estimate.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _search(args))


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    from nas_core.search import settings_for

    overrides = search_setting_overrides(args)
    settings = settings_for(args.size, seed=args.seed, **overrides, **budget_overrides(args))
    return {"size": args.size, "dataset": args.dataset, "data_root": args.data_root,
            "val_fraction": args.val_fraction, "rank_on": args.rank_on, "batch_size": args.batch_size,
            "reference_schedule": args.reference_schedule, "device": args.device,
            "threads": args.threads, "search": settings.to_dict()}


# The run options of settings.json (written by _run_config), each of the type and range a run uses it as.
_CONFIG_STRINGS = ("dataset", "size", "data_root", "device")  # 'dataset' required; the others may be null
_CONFIG_NUMBERS = {"val_fraction": (False, 0, 0.99), "batch_size": (True, 1, 1 << 20), "threads": (True, 1, 4096)}


def _read_config(run_dir: Path) -> dict[str, Any]:
    from nas_core.search import SearchSettings
    from nas_core.values import is_number, shown

    path = run_dir / "settings.json"
    config = read_json_object(path, "the settings of a search run to resume")
    if "search" not in config or "dataset" not in config:
        raise NasError(f"{path}: expected a settings object with 'dataset' and 'search'")
    for name in _CONFIG_STRINGS:
        nullable = name != "dataset"
        if not (isinstance(config.get(name), str) or (nullable and config.get(name) is None)):
            raise NasError(f"{path}: expected '{name}' to be a string{' or null' if nullable else ''}, "
                           f"got {shown(config.get(name))}")
    for name, (integer, lo, hi) in _CONFIG_NUMBERS.items():
        if config.get(name) is not None and not is_number(config[name], integer=integer, lo=lo, hi=hi):
            raise NasError(f"{path}: expected '{name}' to be {'an integer' if integer else 'a number'} in "
                           f"[{lo:g}, {hi:g}], got {shown(config[name])}")
    if config.get("rank_on", "val") not in ("val", "test") or not isinstance(config.get("reference_schedule", False), bool):
        raise NasError(f"{path}: expected 'rank_on' val or test and 'reference_schedule' true or false")
    SearchSettings.from_dict(config["search"], where=f"{path}: search settings")
    return config


def _search(args: argparse.Namespace) -> int:
    if args.replay:
        return _replay(args)
    data = None
    if args.resume:
        run_dir = Path(args.resume)
        config = _read_config(run_dir)
        if args.device is not None:  # the one thing a resumed run may change: where it runs
            config["device"] = args.device
    else:
        config = _run_config(args)
        data = _load_data(config)  # bad data fails before a run folder is made: nothing written half-way
        if args.estimate:
            return _estimate(args, config, data)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = output_folder(args.output or f"runs/{args.dataset}-{args.size}-{stamp}", "journal.jsonl")
    from nas_core.train import cpu_threads

    with run_lock(run_dir, "nas-search"):  # one process writes into RUN: a second one refuses
        if not args.resume:
            atomic_write_json(run_dir / "settings.json", config)
        with log_to(run_dir / "search.log") as log, cpu_threads(config.get("device"), config.get("threads")):
            return _run_search(run_dir, config, log, resumed=bool(args.resume), data=data, where=args)


def _estimate(args: argparse.Namespace, config: dict[str, Any], data) -> int:
    """--estimate: the worst-case trial list and projected hours (nas_core.estimate), OUTPUT/estimate.json."""
    from nas_core.classify.evaluator import create_classifier_space
    from nas_core.cost import run_costs
    from nas_core.estimate import classifier_estimate, describe
    from nas_core.search import SearchSettings
    from nas_core.train import cpu_threads, resolve_device

    run_dir = Path(args.output or f"runs/{args.dataset}-{args.size}-estimate")
    device = resolve_device(config.get("device"))
    settings, space = SearchSettings.from_dict(config["search"]), create_classifier_space(data)
    with cpu_threads(device, config.get("threads")):  # costs measured here are the ones a search in RUN reads
        estimate = classifier_estimate(data, space, settings, device=device, batch_size=config["batch_size"],
                                       workers=args.parallel, costs=run_costs(space, settings.budget, run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "estimate.json", {**estimate, "settings": config})
    for line in describe(estimate):
        print(line)
    print(f"data cache: {estimate['cache_bytes'] / 1e6:.1f} MB of training images; wrote {run_dir / 'estimate.json'}")
    return 0


def _load_data(config: dict[str, Any]):
    from nas_core.classify.datasets import load_dataset

    return load_dataset(config["dataset"], config.get("data_root"), val_fraction=config.get("val_fraction", 0.1),
                        rank_on=config.get("rank_on", "val"))


def _run_search(run_dir: Path, config: dict[str, Any], log, resumed: bool, data=None, where=None) -> int:
    """``where``: the --parallel / --executor / --ray-address flags (None: one trial at a time, in-process)."""
    from nas_core.classify.evaluator import ClassificationEvaluator, create_classifier_space
    from nas_core.cost import budget_record, run_costs
    from nas_core.estimate import estimate_vs_actual
    from nas_core.journal import Journal
    from nas_core.search import MacroMicroSearch, SearchSettings
    from nas_core.speculative import parallel_figures
    from nas_core.train import TrainConfig

    settings = SearchSettings.from_dict(config["search"], where=str(run_dir / "settings.json"))
    tic = time.perf_counter()
    log.info("%s search in %s: dataset %s, settings %s", "resuming" if resumed else "starting", run_dir,
             config["dataset"], json.dumps(config["search"]))
    if data is None:
        data = _load_data(config)
    log.info("data: %d train / %d val / %d test images, %d classes, %d channel(s)", len(data.train_labels),
             len(data.val_labels), len(data.test_labels), data.num_classes, data.in_channels)
    space = create_classifier_space(data)
    if "space" not in config:  # lets nas_core.replay rebuild the space from a killed run's folder
        from nas_core.search import space_spec

        config["space"] = space_spec(space)
        atomic_write_json(run_dir / "settings.json", config)
    train_config = TrainConfig(epochs=1, batch_size=config.get("batch_size", 64),
                               reference_schedule=config.get("reference_schedule", False))
    evaluator = ClassificationEvaluator(data, space, device=config.get("device"),
                                        rank_on=config.get("rank_on", "val"), run_seed=settings.seed,
                                        config=train_config)
    journal = Journal(run_dir / "journal.jsonl")
    if resumed:
        log.info("journal: %d finished trial(s) will be reused", len(journal))
    costs = run_costs(space, settings.budget, run_dir)
    if settings.budget.active:
        log.info("budget: %s; costs measured once into %s", settings.budget.describe(), run_dir / "latency.json")
    journaled = _trial_evaluator(evaluator, space, settings, journal, config, where, log, costs)
    with progress_bar(total=settings.max_trials, unit="trial", desc="search") as bar:
        def on_trial(record) -> None:
            bar.update(1)
            note = " (journal)" if journaled.last_was_hit else ""
            log.info(_trial_line(record) + note)

        try:
            result = MacroMicroSearch(space, journaled, settings, on_trial=on_trial, costs=costs).run()
        finally:
            getattr(journaled, "close", lambda: None)()
    wall = time.perf_counter() - tic
    _write_result(run_dir, result, config, wall, {**parallel_figures(journal, result.trials, journaled),
                                                  **estimate_vs_actual(run_dir, wall, len(result.trials)),
                                                  **budget_record(settings.budget, costs, result)})
    log.info("found %s: %d params, %s accuracy %.2f%% after %d trials (%d epochs); wrote %s",
             result.genotype.key(), result.params, evaluator.rank_on, result.accuracy, len(result.trials),
             result.epochs_total, run_dir / "result.json")
    _write_report(run_dir, log)
    return 0


def _trial_evaluator(evaluator, space, settings, journal, config: dict[str, Any], where, log, costs):
    """Journaled trials answered from the journal, new ones trained in-process or, with --parallel N > 1,
    N at a time by speculative workers (nas_core.speculative: the same trials, results and genotype; the
    speculation checks budgets against the search's own ``costs``)."""
    from nas_core.journal import JournaledEvaluator

    workers = getattr(where, "parallel", 1)
    if workers == 1:
        return JournaledEvaluator(evaluator, journal)
    from nas_core.classify.evaluator import TrialJob, run_trial
    from nas_core.executor import parallel_executor
    from nas_core.speculative import SpeculativeEvaluator

    base = {"dataset": config["dataset"], "data_root": config.get("data_root"),
            "val_fraction": config.get("val_fraction", 0.1), "rank_on": config.get("rank_on", "val"),
            "run_seed": settings.seed, "device": config.get("device"), "batch_size": config.get("batch_size", 64),
            "reference_schedule": config.get("reference_schedule", False), "threads": config.get("threads")}
    log.info("parallel: %d %s worker(s); trials the search may ask next run ahead", workers, where.executor)
    executor = parallel_executor(where.executor, workers, evaluator.device, where.ray_address)
    return SpeculativeEvaluator(space, settings, journal, executor, workers=workers, costs=costs,
                                job=lambda g, e: (run_trial, TrialJob(genotype=g.to_dict(), epochs=e, **base)))


def _write_report(run_dir: Path, log) -> None:
    from nas_core.report import write_search_report

    log.info("wrote %s (and report.md)", write_search_report(run_dir))


def _trial_line(record) -> str:
    layer = "" if record.layer is None else f" layer {record.layer}"
    return f"trial {record.index:3d} {record.phase}{layer}: {record.genotype.key()} E={record.epochs} {record.outcome()}"


def _write_result(run_dir: Path, result, config: dict[str, Any], wall_seconds: float,
                  figures: dict[str, Any] | None = None) -> None:
    extra = result.producing_trial.result.extra
    atomic_write_json(run_dir / "result.json", {
        "genotype": result.genotype.to_dict(),
        "params": result.params,
        "fitness": result.accuracy,  # ranking score (percent, on the rank_on split) of the producing trial
        "rank_on": extra.get("rank_on", config.get("rank_on", "val")),
        "test_accuracy": extra.get("test_accuracy"),
        "macro_genotype": result.macro_genotype.to_dict(),
        "macro_epochs": result.macro_epochs,
        "trials": len(result.trials),
        "epochs_total": result.epochs_total,
        "search_seconds": result.seconds,  # summed train+eval time of all trials (journaled ones included)
        "wall_seconds": wall_seconds,  # this invocation
        "dataset": config.get("dataset"),
        "settings": config,
        "space": result.space,
        **(figures or {}),
    })


def _replay(args: argparse.Namespace) -> int:
    from nas_core.cost import CostTable, budget_record
    from nas_core.journal import Journal, JournaledEvaluator
    from nas_core.replay import load_trace
    from nas_core.search import MacroMicroSearch, space_spec, with_overrides

    run_dir = output_folder(args.output or f"runs/replay-{Path(args.replay).stem}", "result.json")
    output_folder(run_dir, "journal.jsonl")  # the replay journals its trials: never into another run's journal
    with run_lock(run_dir, "nas-search"), log_to(run_dir / "search.log") as log:
        tic = time.perf_counter()
        settings, space, evaluator, meta = load_trace(args.replay)
        # Setting flags given with --replay re-decide the recorded search (no training happens).
        settings = with_overrides(settings, **search_setting_overrides(args), **budget_overrides(args))
        # A replayed run's measured costs decide again (its latency.json); new ones are kept in this RUN.
        costs = CostTable(space, run_dir / "latency.json" if settings.budget.active else None, seed=meta.get("costs"))
        config = {"replay": str(args.replay), "dataset": meta.get("dataset") if isinstance(meta, dict) else None,
                  "search": settings.to_dict(), "space": space_spec(space)}
        atomic_write_json(run_dir / "settings.json", config)
        log.info("replaying %s (%d recorded trials)", args.replay, len(getattr(evaluator, "table", {}) or {}))
        journaled = JournaledEvaluator(evaluator, Journal(run_dir / "journal.jsonl"))
        with progress_bar(unit="trial", desc="replay") as bar:
            def on_trial(record) -> None:
                bar.update(1)
                log.info(_trial_line(record))

            result = MacroMicroSearch(space, journaled, settings, on_trial=on_trial, costs=costs).run()
        _write_result(run_dir, result, config, time.perf_counter() - tic,
                      budget_record(settings.budget, costs, result))
        log.info("replayed %s: found %s, %d params, accuracy %.2f%%; wrote %s", args.replay,
                 result.genotype.key(), result.params, result.accuracy, run_dir / "result.json")
        _write_report(run_dir, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
