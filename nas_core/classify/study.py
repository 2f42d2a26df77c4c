"""nas-study, the jobs: the random-sampling baseline (RI of a finished search's genotype, nas_core.baselines) and the
rank-correlation study (static against dynamic epochs, on the ranking-study driver nas_core.rank_fidelity.RankingStudy
that facerec-study runs on too) for image classifiers. Every trial is a picklable TrialJob
(nas_core.classify.evaluator) run through nas_core.executor (in this process, N local processes or Ray tasks) and
journaled in OUT as it finishes, so a killed study continues where it stopped when re-run with the same arguments.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas_core.baselines import (
    ranking_study,
    sample_genotypes,
    samples_for_budget,
    schedule_candidates,
    summarize_random,
)
from nas_core.classify.evaluator import TrialJob, run_trial
from nas_core.classify.settings import ClassificationOptions, RandomStudyOptions, RankingStudyOptions
from nas_core.errors import NasError
from nas_core.executor import create_executor, parallel_executor
from nas_core.genotype import Genotype
from nas_core.io import atomic_write_json, read_json_object
from nas_core.journal import Journal
from nas_core.rank_fidelity import RankingStudy, StudyPlan, Trainer
from nas_core.run_folder import mark_run_folder
from nas_core.runlog import log_to, progress_bar
from nas_core.settings import ParallelOptions, SearchSettings, settings_for
from nas_core.train import cpu_threads, resolve_device


def trainer(data: dict[str, Any], where: ParallelOptions, log, *, device: str, progress: bool, desc: str) -> Trainer:
    """Trains (run seed, genotype, epochs) trainings as TrialJobs on ``data`` (TrialJob's data and training
    fields) where ``where`` says: one after the other in this process (--parallel 1), N local processes, or Ray."""
    def train(todo, on_result) -> None:
        jobs = [TrialJob(genotype=g.to_dict(), epochs=e, run_seed=seed, device=device, **data) for seed, g, e in todo]
        with progress_bar(total=len(jobs), unit="trial", desc=desc, disable=not progress) as bar:
            def done(i: int, result) -> None:
                on_result(i, result)
                bar.update(1)
                test = result.extra.get("test_accuracy")
                log.info(f"{desc}: {todo[i][1].key()} E={todo[i][2]} params={result.params:,} "
                         f"acc={result.accuracy:.2f} test={'-' if test is None else f'{test:.2f}'}")

            executor = _executor(where, device, done)
            try:
                executor.map(run_trial, jobs)
            finally:
                getattr(executor, "close", lambda: None)()

    return train


def _executor(where: ParallelOptions, device: str, on_result):
    if where.executor == "process" and where.parallel == 1:
        return create_executor("inprocess", on_result=on_result)
    executor = parallel_executor(where.executor, where.parallel, resolve_device(device), where.ray_address)
    executor.on_result = on_result  # called by its map as each trial finishes
    return executor


def rank_study(out: str | Path, options: ClassificationOptions, study: RankingStudyOptions, *, size: str,
               overrides: dict[str, Any], where: ParallelOptions, device: str = "auto", progress: bool = True,
               folder: tuple[str, dict] | None = None) -> int:
    """nas-study ranking: Spearman ρ of static and of dynamic epochs against a longer-trained reference
    (OUT/ranking.json; nas_core.baselines.ranking_study). ``folder``: OUT's kind and defining flags
    (nas_core.run_folder), recorded in OUT."""
    settings = settings_for(size, **overrides)
    static = study.static_epochs or settings.e_min
    reference = study.reference_epochs or 4 * settings.e_min
    candidates = schedule_candidates(settings, study.depth_steps, study.width_steps)
    out = Path(out)
    with log_to(out / "study.log") as log, cpu_threads(device, options.threads):
        if folder is not None:
            mark_run_folder(out, *folder)
        log.info(f"ranking study on {options.dataset}: {len(candidates)} candidates, static {static} epochs, "
                 f"reference {reference} epochs")
        trials = RankingStudy(out, StudyPlan(candidates, [static], reference, seed=settings.seed))
        trials.run(trainer(asdict(options), where, log, device=device, progress=progress, desc="ranking"))
        report = ranking_study(trials.results, candidates, static, reference)
        report.update({"dataset": options.dataset, "settings": settings.to_dict()})
        atomic_write_json(out / "ranking.json", report)
        log.info(f"Spearman rho vs {reference}-epoch reference: static ({static} epochs) "
                 f"{report['spearman_static']:.3f}, dynamic (search schedule) {report['spearman_dynamic']:.3f}; "
                 f"wrote {out / 'ranking.json'}")
    return 0


def random_study(out: str | Path, run: str | Path, options: RandomStudyOptions, data: dict[str, Any], *, seed: int,
                 where: ParallelOptions, device: str = "auto", progress: bool = True,
                 folder: tuple[str, dict] | None = None) -> int:
    """nas-study random: the found genotype and random ones of the search's space, trained alike; RI of the found
    one (OUT/random.json). ``data``: the ClassificationOptions given (None: the run's)."""
    finished = _read_run(Path(run))  # fail before OUT is made
    config = finished["settings"]
    settings = SearchSettings.from_dict(config["search"])
    found = Genotype.from_dict(finished["genotype"], where=str(Path(run) / "result.json"))
    epochs = options.epochs or int(finished.get("macro_epochs") or settings.e_min)
    count = options.samples or samples_for_budget(options.budget, trials=int(finished.get("trials", 1)),
                                                  epochs_total=int(finished.get("epochs_total", epochs)),
                                                  epochs_per_sample=epochs)
    data = {**data, "dataset": data["dataset"] or config["dataset"],
            "data_root": data["data_root"] or config.get("data_root"),
            "val_fraction": config.get("val_fraction", 0.1), "rank_on": config.get("rank_on", "val")}
    out = Path(out)
    with log_to(out / "study.log") as log, cpu_threads(device, data["threads"]):
        if folder is not None:
            mark_run_folder(out, *folder)
        log.info(f"random baseline: found {found.key()} vs {count} random networks, {epochs} epochs each "
                 f"({'explicit' if options.samples else options.budget} budget), dataset {data['dataset']}")
        randoms = sample_genotypes(settings, count, seed=seed)
        pairs = [(found, epochs)] + [(g, epochs) for g in randoms]
        results = _journaled(Journal(out / "journal.jsonl"), pairs, seed, log,
                             trainer(data, where, log, device=device, progress=progress, desc="random"))
        report = _random_report(run, data["dataset"], options, count, seed, pairs, results)
        atomic_write_json(out / "random.json", report)
        head = report.get("test", report["val"])
        log.info(f"found {head['found_accuracy']:.2f}% vs random mean {head['random_mean']:.2f}% (std "
                 f"{head['random_std']:.2f}, best {head['random_best']:.2f}, n={head['random_count']}): RI = "
                 f"{head['ri']:+.2f}%; wrote {out / 'random.json'}")
    return 0


def _journaled(journal: Journal, pairs: list[tuple[Genotype, int]], seed: int, log, train: Trainer) -> list:
    """The result of each (genotype, epochs): from the journal, or trained and journaled as it finishes."""
    results: list = [journal.lookup(g, e) for g, e in pairs]
    todo = [i for i, r in enumerate(results) if r is None]
    if len(todo) < len(pairs):
        log.info(f"random: {len(pairs) - len(todo)} of {len(pairs)} trials found in the journal")

    def keep(k: int, result) -> None:
        results[todo[k]] = result
        journal.append(*pairs[todo[k]], result, study="random")

    if todo:
        train([(seed, *pairs[i]) for i in todo], keep)
    return results


def _random_report(run, dataset: str, options: RandomStudyOptions, count: int, seed: int, pairs, results) -> dict:
    found_result, random_results = results[0], results[1:]
    report: dict[str, Any] = {
        "run": str(run), "dataset": dataset, "epochs": pairs[0][1], "budget": options.budget, "samples": count,
        "seed": seed, "found": {"genotype": pairs[0][0].to_dict(), **_row(found_result)},
        "random": [{"genotype": g.to_dict(), **_row(r)} for (g, _), r in zip(pairs[1:], random_results)],
        # Ranking-split score (best epoch), and the headline: last-epoch test accuracy (ARCHITECTURE §3).
        "val": summarize_random(found_result.accuracy, [r.accuracy for r in random_results]),
    }
    if found_result.extra.get("test_accuracy") is not None:
        report["test"] = summarize_random(found_result.extra["test_accuracy"],
                                          [r.extra["test_accuracy"] for r in random_results])
    return report


def _row(result) -> dict[str, Any]:
    return {"params": result.params, "score": result.accuracy, "test_accuracy": result.extra.get("test_accuracy"),
            "seconds": result.seconds}


def _read_run(run: Path) -> dict[str, Any]:
    path = run / "result.json"
    data = read_json_object(path, "the result of a finished nas-search run")
    if not isinstance(data.get("settings"), dict) or "search" not in data["settings"]:
        raise NasError(f"{path}: expected a nas-search result with 'settings' (written by nas-search)")
    return data
