"""nas-study: random-sampling baseline with RI against a finished search, and the rank-correlation study.

    nas-study random --run runs/mnist --output out/mnist-random           # same trial count as the search
    nas-study random --run runs/mnist --output out/r --budget epochs       # same total epochs
    nas-study ranking --dataset mnist --data-root DIR --output out/rank --size tiny --w-max 16 --e-min 2

Every trial is journaled in OUT/journal.jsonl, so a killed study continues where it stopped when re-run with
the same arguments. Independent trials go through nas_core.executor (``--executor ray`` for a cluster).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas_core.cli._common import (
    add_data_args,
    add_run_args,
    add_search_setting_args,
    add_split_args,
    positive,
    search_setting_overrides,
)
from nas_core.errors import NasError, run_cli
from nas_core.genotype import Genotype
from nas_core.io import atomic_write_json, read_json_object
from nas_core.runlog import log_to, progress_bar

_SETTING_FLAGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res")  # what shapes the candidate list


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-study", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True)

    rnd = sub.add_parser("random", help="random architectures at the search's budget; RI of the found one")
    rnd.add_argument("--run", required=True, help="finished nas-search folder (RUN/result.json)")
    rnd.add_argument("--dataset", default=None, help="default: the run's dataset")
    rnd.add_argument("--data-root", default=None, help="default: the run's data root")
    rnd.add_argument("--epochs", type=positive, default=None,
                     help="epochs of every trained network (default: the epochs the search ranked the macro "
                          "result at, RUN/result.json macro_epochs)")
    rnd.add_argument("--budget", choices=("trials", "epochs"), default="trials",
                     help="trials: as many random networks as the search trained; epochs: as many as fit "
                          "in the search's total epochs")
    rnd.add_argument("--samples", type=positive, default=None, help="override the number of random networks")
    _add_common(rnd)

    rank = sub.add_parser("ranking", help="Spearman rho of static vs dynamic epochs against longer training")
    add_data_args(rank)
    add_split_args(rank)
    rank.add_argument("--size", default="tiny")
    add_search_setting_args(rank, _SETTING_FLAGS)
    rank.add_argument("--depth-steps", type=positive, default=4, help="Grow candidates (D_min, D_min+1, ...)")
    rank.add_argument("--width-steps", type=positive, default=3, help="Prune candidates after the deepest")
    rank.add_argument("--static-epochs", type=positive, default=None, help="default: E_min")
    rank.add_argument("--reference-epochs", type=positive, default=None, help="default: 4 x E_min")
    _add_common(rank)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="study folder (journal, log, JSON result)")
    parser.add_argument("--executor", choices=("inprocess", "ray"), default="inprocess")
    parser.add_argument("--ray-address", default=None, help="join a running Ray cluster (e.g. auto)")
    add_run_args(parser)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _study(args))


def _study(args: argparse.Namespace) -> int:
    from nas_core.train import cpu_threads

    out = Path(args.output)
    run = _read_run(Path(args.run)) if args.study == "random" else None  # fail before OUT is made
    with log_to(out / "study.log") as log, cpu_threads(args.device, args.threads):
        return _random_study(args, run, out, log) if run is not None else _ranking_study(args, out, log)


class _JobRunner:
    """Runs TrialJobs through the executor, skipping and recording them in OUT/journal.jsonl."""

    def __init__(self, args: argparse.Namespace, out: Path, log, base: dict[str, Any]):
        from nas_core.journal import Journal

        self.args, self.log, self.base = args, log, base
        self.journal = Journal(out / "journal.jsonl")

    def run(self, pairs: list[tuple[Genotype, int]], desc: str) -> list:
        from nas_core.classify.evaluator import TrialJob, run_trial
        from nas_core.executor import create_executor

        results: list = [self.journal.lookup(g, e) for g, e in pairs]
        todo = [i for i, r in enumerate(results) if r is None]
        if len(todo) < len(pairs):
            self.log.info("%s: %d of %d trials found in the journal", desc, len(pairs) - len(todo), len(pairs))
        jobs = [TrialJob(genotype=pairs[i][0].to_dict(), epochs=pairs[i][1], **self.base) for i in todo]
        with progress_bar(total=len(jobs), unit="trial", desc=desc) as bar:
            def on_result(k: int, result) -> None:
                genotype, epochs = pairs[todo[k]]
                self.journal.append(genotype, epochs, result, study=desc)
                bar.update(1)
                self.log.info("%s: %s E=%d params=%s acc=%.2f test=%s", desc, genotype.key(), epochs,
                              f"{result.params:,}", result.accuracy, _fmt(result.extra.get("test_accuracy")))

            kwargs = {"address": self.args.ray_address} if self.args.executor == "ray" else {}
            executor = create_executor(self.args.executor, on_result=on_result, **kwargs)
            for k, result in zip(todo, executor.map(run_trial, jobs)):
                results[k] = result
        return results


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _read_run(run: Path) -> dict[str, Any]:
    path = run / "result.json"
    data = read_json_object(path, "the result of a finished nas-search run")
    if not isinstance(data.get("settings"), dict) or "search" not in data["settings"]:
        raise NasError(f"{path}: expected a nas-search result with 'settings' (written by nas-search)")
    return data


def _random_study(args: argparse.Namespace, run: dict[str, Any], out: Path, log) -> int:
    from nas_core.baselines import sample_genotypes, samples_for_budget, summarize_random
    from nas_core.search import SearchSettings

    config = run["settings"]
    settings = SearchSettings.from_dict(config["search"])
    found = Genotype.from_dict(run["genotype"], where=str(Path(args.run) / "result.json"))
    epochs = args.epochs or int(run.get("macro_epochs") or settings.e_min)
    count = args.samples or samples_for_budget(args.budget, trials=int(run.get("trials", 1)),
                                               epochs_total=int(run.get("epochs_total", epochs)),
                                               epochs_per_sample=epochs)
    base = {"dataset": args.dataset or config["dataset"], "data_root": args.data_root or config.get("data_root"),
            "val_fraction": config.get("val_fraction", 0.1), "rank_on": config.get("rank_on", "val"),
            "run_seed": args.seed, "device": args.device, "batch_size": args.batch_size,
            "reference_schedule": args.reference_schedule, "threads": args.threads}
    log.info("random baseline: found %s vs %d random networks, %d epochs each (%s budget), dataset %s",
             found.key(), count, epochs, "explicit" if args.samples else args.budget, base["dataset"])
    randoms = sample_genotypes(settings, count, seed=args.seed)
    runner = _JobRunner(args, out, log, base)
    results = runner.run([(found, epochs)] + [(g, epochs) for g in randoms], "random")
    found_result, random_results = results[0], results[1:]
    report: dict[str, Any] = {
        "run": str(args.run), "dataset": base["dataset"], "epochs": epochs, "budget": args.budget,
        "samples": count, "seed": args.seed,
        "found": {"genotype": found.to_dict(), **_row(found_result)},
        "random": [{"genotype": g.to_dict(), **_row(r)} for g, r in zip(randoms, random_results)],
        # Ranking-split score (best epoch), and the headline: last-epoch test accuracy (ARCHITECTURE §3).
        "val": summarize_random(found_result.accuracy, [r.accuracy for r in random_results]),
    }
    if found_result.extra.get("test_accuracy") is not None:
        report["test"] = summarize_random(found_result.extra["test_accuracy"],
                                          [r.extra["test_accuracy"] for r in random_results])
    atomic_write_json(out / "random.json", report)
    head = report.get("test", report["val"])
    log.info("found %.2f%% vs random mean %.2f%% (std %.2f, best %.2f, n=%d): RI = %+.2f%%; wrote %s",
             head["found_accuracy"], head["random_mean"], head["random_std"], head["random_best"],
             head["random_count"], head["ri"], out / "random.json")
    return 0


def _row(result) -> dict[str, Any]:
    return {"params": result.params, "score": result.accuracy, "test_accuracy": result.extra.get("test_accuracy"),
            "seconds": result.seconds}


def _ranking_study(args: argparse.Namespace, out: Path, log) -> int:
    from nas_core.baselines import ranking_study, schedule_candidates
    from nas_core.search import settings_for

    settings = settings_for(args.size, **search_setting_overrides(args, _SETTING_FLAGS))
    static_epochs = args.static_epochs or settings.e_min
    reference_epochs = args.reference_epochs or 4 * settings.e_min
    candidates = schedule_candidates(settings, args.depth_steps, args.width_steps)
    base = {"dataset": args.dataset, "data_root": args.data_root, "val_fraction": args.val_fraction,
            "rank_on": args.rank_on, "run_seed": args.seed, "device": args.device,
            "batch_size": args.batch_size, "reference_schedule": args.reference_schedule, "threads": args.threads}
    log.info("ranking study on %s: %d candidates, static %d epochs, reference %d epochs", args.dataset,
             len(candidates), static_epochs, reference_epochs)
    runner = _JobRunner(args, out, log, base)
    report = ranking_study(lambda pairs: runner.run(pairs, "ranking"), candidates, static_epochs, reference_epochs)
    report.update({"dataset": args.dataset, "settings": settings.to_dict()})
    atomic_write_json(out / "ranking.json", report)
    log.info("Spearman rho vs %d-epoch reference: static (%d epochs) %.3f, dynamic (search schedule) %.3f; "
             "wrote %s", reference_epochs, static_epochs, report["spearman_static"], report["spearman_dynamic"],
             out / "ranking.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
