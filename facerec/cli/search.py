"""facerec-search: search an IResNet backbone for a face data set (ARCHITECTURE §3, §4, §7).

    facerec-search --size small --output runs/demo                 # built-in synthetic demo, CPU
    facerec-search --size small --data faces_webface_112x112 --subset-ids 2000 --macro-only --output RUN
    facerec-search --resume RUN

Writes RUN/settings.json, RUN/journal.jsonl (one line per finished trial), RUN/search.log,
RUN/result.json (genotype, params, fitness, fitness_on, trials, search_seconds, settings), RUN/model.pt, the
best trial's weights as a facerec checkpoint (facerec-eval / facerec-export take it), and
RUN/report.html + RUN/report.md (`nas-report RUN` writes them at any time, also mid-search). --d-min/--d-max
count IResNet blocks (R-10 = 4 blocks, R-100 = 49). The fitness is measured on pairs of identities held out
of the training pack (10 %); `--val-bins lfw,cfp_fp` ranks on those benchmark packs instead. One process
writes into RUN at a time (RUN/.facenas.lock); a second one exits 2 naming it. With a deployment budget
(--max-params / --max-mflops / --max-latency-ms, nas_core.cost) no candidate over it is trained; RUN/latency.json
keeps every candidate's measured costs, so a resume and --parallel decide from the same numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from facerec.data.run_data import add_cache_flags, cache_options
from facerec.errors import FaceRecError
from facerec.search.rankings import DEFAULT_FACE_RANKING, SEARCH_RANKINGS
from facerec.train.recipe import add_recipe_flag
from nas_core.cli._common import (
    SEARCH_SETTING_FLAGS,
    add_budget_args,
    add_parallel_args,
    add_search_setting_args,
    budget_overrides,
    search_setting_overrides,
)
from nas_core.errors import run_cli

_SEARCH_FLAGS = (*SEARCH_SETTING_FLAGS, "seed")
# Face training options of a search, and their defaults with real data / with the built-in demo.
# Batch, lr and head otherwise come from --recipe (facerec.train.recipe), resolved on the run's data.
_OPTIONS = {"batch_size": (None, 32), "lr": (None, 0.05), "head": (None, "adaface"), "workers": (2, 0),
            "holdout_ids": (None, 4), "subset_ids": (None, None), "embedding_size": (512, 128)}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facerec-search", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=["small", "medium"], default="small", help="search preset (W_max 32 / 64)")
    p.add_argument("--data", help="face pack folder (train.rec/.idx/property [+ .bin]); omitted: built-in demo set")
    p.add_argument("--output", help="run folder RUN (default runs/face-search-<size>)")
    p.add_argument("--resume", metavar="RUN", help="continue the search in RUN with its saved settings")
    p.add_argument("--subset-ids", type=int, help="search on N identities (seeded choice)")
    p.add_argument("--holdout-ids", type=int, help="identities held out of training; the fitness is 10-fold "
                                                   "accuracy on their pairs (default 10%%, none with --val-bins)")
    p.add_argument("--val-bins", help="rank on these .bin packs of --data instead, e.g. lfw,cfp_fp,agedb_30 (the "
                                      "paper's protocol: a net ranked on a benchmark scores optimistically on it)")
    p.add_argument("--macro-only", action="store_true", help="stop after Prune (as the paper did for faces)")
    p.add_argument("--ranking", choices=sorted(SEARCH_RANKINGS), default=DEFAULT_FACE_RANKING,
                   help="how trials are trained and scored: " + "; ".join(
                       f"{r.name}: {r.description}" for r in SEARCH_RANKINGS.values()) +
                   f" (default {DEFAULT_FACE_RANKING}; README 'Does the search pay?')")
    p.add_argument("--ranking-full-epochs", type=int, default=12,
                   help="truncated rankings: the length of the training whose first E_min epochs a trial is "
                        "(default 12)")
    add_recipe_flag(p)
    p.add_argument("--batch-size", type=int, help="global batch of a trial (default: the recipe's; demo 32)")
    p.add_argument("--lr", type=float, help="SGD learning rate of a trial (default: the recipe's; demo 0.05)")
    p.add_argument("--head", help="margin head: adaface, arcface, cosface (default: the recipe's; demo adaface)")
    p.add_argument("--embedding-size", type=int, help="embedding size (default 512; demo 128)")
    p.add_argument("--workers", type=int, help="data loader workers (default 2; demo 0)")
    add_search_setting_args(p, _SEARCH_FLAGS)
    add_budget_args(p)
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_cache_flags(p)
    add_parallel_args(p)
    p.add_argument("--estimate", action="store_true",
                   help="train nothing: print the worst-case trial list, time a few steps of the smallest and "
                        "largest candidate, project the hours at --parallel N; writes RUN/estimate.json")
    p.add_argument("--step-seconds", metavar="SMALL,LARGE", type=_step_pair,
                   help="with --estimate: assumed seconds of one training step at the recipe's batch of the "
                        "smallest and the largest candidate (e.g. measured on the target GPU) instead of timing here")
    return p


def _step_pair(text: str) -> tuple[float, float]:
    try:
        small, large = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SMALL,LARGE seconds, e.g. 0.05,0.4; got {text}") from None
    if not 0 < small <= large:
        raise argparse.ArgumentTypeError(f"expected 0 < SMALL <= LARGE, got {text}")
    return small, large


def _new_run(args: argparse.Namespace) -> tuple[Path, dict]:
    from facerec.model.space import IResNetSpace
    from nas_core.search import settings_for, space_spec

    demo = args.data is None
    run = Path(args.output or f"runs/face-search-{args.size}")
    if (run / "journal.jsonl").is_file() and (run / "journal.jsonl").stat().st_size > 0:
        raise FaceRecError(f"{run}: expected a new run folder (it holds a search; continue it with --resume {run})")
    overrides = search_setting_overrides(args, _SEARCH_FLAGS)
    if demo:
        from facerec.data.demo import DEMO_SEARCH

        overrides = {k: (DEMO_SEARCH.get(k) if v is None else v) for k, v in overrides.items()}
    settings = settings_for(args.size, **overrides, **budget_overrides(args))
    if args.macro_only:
        settings.macro_only = True
    if SEARCH_RANKINGS[args.ranking].static:  # every macro trial E_min epochs: no +1/+2 per candidate tried
        settings.depth_epoch_step = settings.width_epoch_step = 0
    if args.ranking_full_epochs < 1:
        raise FaceRecError(f"--ranking-full-epochs: expected a positive number of epochs, got {args.ranking_full_epochs}")
    options = {k: (getattr(args, k) if getattr(args, k) is not None else default[1 if demo else 0])
               for k, default in _OPTIONS.items()}
    options.update(size=args.size, data=None if demo else str(Path(args.data).resolve()),
                   val_bins=args.val_bins, recipe=args.recipe, fitness="bins" if args.val_bins else "holdout",
                   ranking=args.ranking, ranking_full_epochs=args.ranking_full_epochs)
    # The space spec lets a report (or a replay) of a killed run rebuild what the run searched.
    space = space_spec(IResNetSpace(embedding_size=options["embedding_size"]))
    return run, {"search": settings.to_dict(), "options": options, "space": space}


def _resumed_run(args: argparse.Namespace) -> tuple[Path, dict]:
    run = Path(args.resume)
    path = run / "settings.json"
    if not path.is_file():
        raise FaceRecError(f"{path}: expected the settings.json of a facerec-search run (file not found)")
    try:
        saved = json.loads(path.read_text())
        saved["search"], saved["options"]  # noqa: B018  (both must be there)
    except (ValueError, KeyError, TypeError) as exc:
        raise FaceRecError(f"{path}: expected the settings.json of a facerec-search run ({exc})") from None
    return run, saved


def _body(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from facerec.data.run_data import check_pack_dir
    from facerec.train.dist import init_distributed, resolve_device
    from nas_core.io import atomic_write_json
    from nas_core.runlock import run_lock
    from nas_core.runlog import log_to

    start = time.perf_counter()
    if not args.resume and args.data is not None and not args.estimate:  # an estimate reads metadata only
        check_pack_dir(args.data)
    run, saved = _resumed_run(args) if args.resume else _new_run(args)
    info = init_distributed()
    device = resolve_device(args.device, info)
    if args.estimate:
        return _estimate(args, run, saved, device)
    # One process writes into RUN (rank 0 for torchrun): a second one refuses instead of mixing journals.
    with run_lock(run, "facerec-search") if info.is_main else nullcontext():
        if info.is_main:
            atomic_write_json(run / "settings.json", saved)
        with log_to(run / "search.log" if info.is_main else None, "facerec", echo=info.is_main) as log:
            log.info("facerec-search " + " ".join(sys.argv[1:] if args.argv is None else args.argv))
            if args.resume:
                log.info(f"resuming {run} with its saved settings (journaled trials are not retrained)")
            _search(args, run, saved, info, device, log, start)
    return 0


def _search(args: argparse.Namespace, run: Path, saved: dict, info, device, log, start: float) -> None:
    from facerec.data.run_data import describe_fitness
    from facerec.search.evaluator import face_evaluator
    from nas_core.cost import budget_record
    from nas_core.estimate import estimate_vs_actual
    from nas_core.io import atomic_write_json
    from nas_core.search import MacroMicroSearch, SearchSettings
    from nas_core.speculative import parallel_figures

    settings = SearchSettings.from_dict(saved["search"], where=f"{run / 'settings.json'}: search settings")
    options = saved["options"]
    if options["data"] is None:
        log.info("no --data: searching on the built-in synthetic demo face set (facerec.data.demo, 20 identities x "
                 "12 images, 112x112) with a CPU-sized budget: " + ", ".join(
                     f"{k} {settings.to_dict()[k]}" for k in ("e_min", "d_min", "d_max", "w_min", "w_max",
                                                              "micro_epochs", "max_trials")))
    evaluator, data, recipe = face_evaluator(with_cache(saved, args), run, device, info=info, log=log,
                                             progress=not args.no_progress)
    space = evaluator.space
    log.info(f"data {data.source}: {data.info['train_images']} training images of {data.num_classes} "
             f"identities; fitness = 10-fold accuracy on {describe_fitness(data.info['fitness_on'])}; ranking "
             f"{options.get('ranking', 'paper')}; "
             f"device {device}, world size {info.world_size}; settings {settings.to_dict()}")
    costs = _budget_costs(space, settings, run, info, log)
    journaled = _journaled(evaluator, run, info, log, args, saved, costs)
    bar = tqdm(total=settings.max_trials, unit="trial", desc="search", dynamic_ncols=True,
               disable=True if args.no_progress or not info.is_main else None)  # None: only on a terminal
    with bar:
        try:
            result = MacroMicroSearch(space, journaled, settings, costs=costs,
                                      on_trial=_trial_reporter(bar, journaled, run / "trials", info, log)).run()
        finally:
            getattr(journaled, "close", lambda: None)()
    _write_model(run, result, evaluator, info, log)
    found = budget_record(settings.budget, costs, result)  # every rank: a latency is shared from rank 0
    if info.is_main:
        payload = result.to_dict()
        # search_seconds: summed train+eval time of all trials, journaled ones included (as nas-search)
        payload.update(genotype=result.genotype.to_dict(), params=result.params, fitness=result.accuracy,
                       trial_epochs=result.producing_trial.epochs, num_trials=len(result.trials),
                       search_seconds=result.seconds, wall_seconds=time.perf_counter() - start,
                       settings=settings.to_dict(), options=options, space=space.config(), data=data.info,
                       fitness_on=data.info["fitness_on"],
                       recipe=recipe.to_dict(), model="model.pt", **found,
                       **parallel_figures(journaled.journal, result.trials, journaled),
                       **estimate_vs_actual(run, time.perf_counter() - start, len(result.trials)))
        atomic_write_json(run / "result.json", payload)
        _write_report(run, log)
    log.info(f"result {result.genotype.key()}: {result.params:,} params, fitness {result.accuracy:.2f}% after "
             f"{len(result.trials)} trials ({result.epochs_total} epochs) in "
             f"{time.perf_counter() - start:.1f} s; wrote {run / 'result.json'} and {run / 'model.pt'}")


def _estimate(args: argparse.Namespace, run: Path, saved: dict, device) -> int:
    """--estimate: the worst-case trial list and projected hours (facerec.search.estimate), RUN/estimate.json."""
    from facerec.search.estimate import face_estimate
    from nas_core.estimate import describe
    from nas_core.io import atomic_write_json

    estimate = face_estimate(saved, device, args.parallel, step_seconds=args.step_seconds, run=run)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / "estimate.json", {**estimate, "settings": saved})
    for line in describe(estimate):
        print(line)
    print(f"data cache: {estimate['cache_bytes'] / 1e9:.2f} GB ({estimate['data']['pack_images']:,} images x "
          f"112x112x3 bytes); wrote {run / 'estimate.json'}")
    return 0


def _budget_costs(space, settings, run: Path, info, log):
    """The search's CostTable (RUN/latency.json with a budget); under torchrun rank 0 measures latency."""
    from facerec.train.dist import broadcast_object
    from nas_core.cost import run_costs

    if settings.budget.active:
        log.info(f"budget: {settings.budget.describe()}; costs measured once into {run / 'latency.json'}")
    return run_costs(space, settings.budget, run, writes=info.is_main,
                     share=(lambda value: broadcast_object(value, info)) if info.enabled else None)


def _journaled(evaluator, run: Path, info, log, args, saved: dict, costs=None):
    """The evaluator behind RUN/journal.jsonl: journaled trials are answered from it, new ones appended
    (with --parallel N > 1 trained N at a time by speculative workers, nas_core.speculative)."""
    from facerec.train.dist import broadcast_object
    from nas_core.journal import Journal, JournaledEvaluator

    journal = Journal(run / "journal.jsonl")
    if len(journal):
        log.info(f"journal: {len(journal)} finished trial(s) will be reused")
    if args.parallel > 1:
        if info.enabled:
            raise FaceRecError("--parallel: expected either --parallel N or torchrun (DDP trials), not both")
        return _speculative(evaluator, journal, run, log, args, saved, costs)
    # Under torchrun all ranks follow rank 0's journal; only rank 0 appends.
    return JournaledEvaluator(evaluator, journal, writes=info.is_main,
                              share=(lambda known: broadcast_object(known, info)) if info.enabled else None)


def with_cache(saved: dict, args: argparse.Namespace) -> dict:
    """RUN/settings.json content plus this invocation's decoded-cache choice, as the evaluator and its
    ``--parallel`` workers read it (facerec.search.evaluator.face_evaluator), so every trial sees the same data path."""
    return {**saved, "cache": cache_options(args)}


def _speculative(evaluator, journal, run: Path, log, args, saved: dict, costs=None):
    import torch

    from facerec.search.evaluator import FaceTrialJob, run_face_trial
    from nas_core.executor import parallel_executor
    from nas_core.search import SearchSettings
    from nas_core.speculative import SpeculativeEvaluator

    workers, text = args.parallel, json.dumps(with_cache(saved, args), sort_keys=True)
    device = evaluator.device
    # One GPU per worker, or an equal share of this process's CPU threads each.
    threads = max(1, torch.get_num_threads() // workers) if device.type == "cpu" else torch.get_num_threads()
    log.info(f"parallel: {workers} {args.executor} worker(s) ({threads} CPU thread(s) each on CPU); trials the "
             "search may ask next run ahead")
    executor = parallel_executor(args.executor, workers, device, args.ray_address)
    worker_device = "cuda" if device.type == "cuda" and args.executor == "ray" else str(device)

    def job(genotype, epochs):
        return run_face_trial, FaceTrialJob(text, str(run), worker_device, threads, genotype.to_dict(), epochs)

    return SpeculativeEvaluator(evaluator.space, SearchSettings.from_dict(saved["search"]), journal, executor,
                                job=job, workers=workers, costs=costs)


def _trial_reporter(bar, journaled, trials_dir: Path, info, log):
    """on_trial: a log line per trial; the weights of a trial that can no longer be the answer are dropped."""
    from facerec.search.evaluator import trial_weights_path

    def on_trial(record) -> None:
        bar.update(1)
        layer = "" if record.layer is None else f" layer {record.layer}"
        hit = " (journal)" if getattr(journaled, "last_was_hit", False) else ""
        log.info(f"trial {record.index:3d} {record.phase}{layer}: {record.genotype.key()} E={record.epochs} "
                 f"{record.outcome()}{hit}")
        if info.is_main and record.decision not in ("baseline", "accept"):
            trial_weights_path(trials_dir, record.genotype, record.epochs).unlink(missing_ok=True)

    return on_trial


def _write_model(run: Path, result, evaluator, info, log) -> None:
    """RUN/model.pt: the weights of the trial that produced the result (retrained if a crash lost them)."""
    from facerec.search.evaluator import trial_weights_path
    from facerec.train.dist import barrier, broadcast_object
    from nas_core.io import atomic_write

    genotype, epochs = result.producing_trial.genotype, result.producing_trial.epochs
    weights = trial_weights_path(run / "trials", genotype, epochs)
    missing = broadcast_object(not weights.is_file(), info)  # rank 0 writes the file: its view decides
    if missing:  # e.g. journaled before a crash that lost the file: retrain (same seed)
        log.info(f"retraining {genotype.key()} x{epochs} for RUN/model.pt (its trial weights are missing)")
        evaluator.evaluate(genotype, epochs)
    barrier(info)
    if info.is_main:
        with open(weights, "rb") as source:
            atomic_write(run / "model.pt", lambda f: shutil.copyfileobj(source, f))
        shutil.rmtree(run / "trials", ignore_errors=True)


def _write_report(run: Path, log) -> None:
    from facerec import report as _names  # noqa: F401  (names IResNet genotypes R-<layers>-<8C> in the report)
    from nas_core.report import write_search_report

    log.info(f"wrote {write_search_report(run)} (and report.md)")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.argv = argv
    return run_cli(lambda: _body(args))


if __name__ == "__main__":
    sys.exit(main())
