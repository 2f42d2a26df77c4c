"""facerec-study ranking, the job: the face side of a ranking study (nas_core.rank_fidelity.RankingStudy,
ARCHITECTURE §3). The candidates come from the flags (a depth × width grid, or the search's own macro candidates);
every training runs in this process on a FaceEvaluator of its run seed, scored by 10-fold accuracy on pairs of
identities held out of the pack (never a .bin pack beside it); the rankings and OUT/ranking.json come from
facerec.search.rankings, OUT/ranking.png from nas_core.rank_fidelity.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from facerec.data.run_data import check_identities, check_pack_dir, describe_fitness, prepare_data
from facerec.errors import FaceRecError
from facerec.model.space import IResNetSpace
from facerec.search.evaluator import FaceEvaluator
from facerec.search.rankings import naswot_scores, study_report
from facerec.search.settings import FaceStudyOptions
from facerec.train.dist import resolve_device
from facerec.train.recipe import resolve_recipe
from nas_core.baselines import schedule_candidates
from nas_core.io import atomic_write_bytes, atomic_write_json
from nas_core.rank_fidelity import (
    RankingStudy,
    StudyPlan,
    Trainer,
    dynamic_epochs,
    fidelity_png,
    grid_candidates,
)
from nas_core.run_folder import check_run_folder, mark_run_folder
from nas_core.runlog import log_to
from nas_core.settings import SearchSettings, settings_for

STUDY_KIND = "facerec-study ranking"


def study_plan(options: FaceStudyOptions, size: str, overrides: dict[str, Any]) -> tuple[SearchSettings, StudyPlan]:
    """The settings and what the study trains, checked before OUT is made."""
    if options.depths or options.widths:
        if not (options.depths and options.widths):
            raise FaceRecError("--depths/--widths: expected both (the grid is depths × widths)")
        settings = settings_for(size, **{"d_min": min(options.depths), "w_max": max(options.widths), **overrides})
        candidates = [(g, dynamic_epochs(settings, g)) for g in grid_candidates(options.depths, options.widths)]
    else:
        settings = settings_for(size, **overrides)
        candidates = schedule_candidates(settings, options.depth_steps, options.width_steps)
    if len({g.key() for g, _ in candidates}) < 3:
        flags = "--depths/--widths" if options.depths else "--depth-steps/--width-steps"
        raise FaceRecError(f"{flags}: expected at least 3 distinct candidates to rank, got {len(candidates)} "
                           f"(W_max {settings.w_max}, W_min {settings.w_min}, W_res {settings.w_res})")
    static = list(options.static_epochs or sorted({settings.e_min, 2, 4}))
    reference = options.reference_epochs or 2 * max(e for _, e in candidates)
    if not options.truncated or max(options.truncated) > reference:
        raise FaceRecError(f"--truncated: expected K ≤ --reference-epochs {reference}, got {options.truncated}")
    return settings, StudyPlan(candidates, static, reference, seeds=options.reference_seeds, seed=options.seed)


def study_flags(options: FaceStudyOptions, data: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """The flags that define a study's trainings (OUT/facenas-run.json, nas_core.run_folder): its data and identities,
    run seed, net and recipe. The others (the candidates, epochs, seeds, --max-trainings, --bootstrap, --device,
    --workers, progress) may change between reruns: the journals key each training by what it trained."""
    return {"--data": str(Path(data).resolve()), "--subset-ids": options.subset_ids,
            "--holdout-ids": options.holdout_ids, "--seed": options.seed, "--embedding-size": options.embedding_size,
            "--recipe": recipe["choice"], "--batch-size": recipe["batch_size"], "--lr": recipe["lr"],
            "--head": recipe["head"]}


def check_study(options: FaceStudyOptions, *, data: str, out: str, size: str, overrides: dict[str, Any],
                recipe: dict[str, Any]) -> tuple[SearchSettings, StudyPlan]:
    """Everything the study checks before OUT is made or written: the pack and its identities, the plan, and OUT
    (a folder of another kind, or a study of other data or trainings, is refused: nas_core.run_folder)."""
    check_pack_dir(data)
    check_identities(data, subset_ids=options.subset_ids, holdout_ids=options.holdout_ids, fitness="holdout")
    planned = study_plan(options, size, overrides)
    results = Path(out).is_dir() and any(p.stat().st_size for p in Path(out).glob("journal*.jsonl"))
    check_run_folder(out, STUDY_KIND, study_flags(options, data, recipe), holds_results=results)
    return planned


def ranking_study(options: FaceStudyOptions, *, data: str, out: str, size: str, overrides: dict[str, Any],
                  recipe: dict[str, Any], device: str = "auto", progress: bool = True, command: str = "") -> int:
    """Run (or continue) the study in ``out``; ``recipe``: resolve_recipe's choice and overrides."""
    settings, plan = check_study(options, data=data, out=out, size=size, overrides=overrides, recipe=recipe)
    out, device = Path(out), resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    mark_run_folder(out, STUDY_KIND, study_flags(options, data, recipe))
    with log_to(out / "study.log", "facerec") as log:
        log.info(f"facerec-study {command}")
        prepared = prepare_data(data, out, subset_ids=options.subset_ids, holdout_ids=options.holdout_ids,
                                fitness="holdout", seed=options.seed)  # never the .bin packs beside the pack
        chosen = resolve_recipe(recipe["choice"], prepared.info, batch_size=recipe["batch_size"], lr=recipe["lr"],
                                head=recipe["head"], log=log)
        config = chosen.train_config(epochs=1, seed=options.seed, workers=options.workers)
        log.info(f"ranking study on {prepared.source}: {prepared.info['train_images']} training images of "
                 f"{prepared.num_classes} identities; fitness on {describe_fitness(prepared.info['fitness_on'])}; "
                 f"{len(plan.candidates)} candidates, static {plan.static} epochs, full training {plan.reference} "
                 f"epochs x {plan.seeds} seed(s); device {device}")
        space = IResNetSpace(embedding_size=options.embedding_size)
        study = RankingStudy(out, plan)
        study.run(_trainer(space, prepared, config, device, progress), limit=options.max_trainings)
        naswot = naswot_scores(space, prepared.val_sets[0], plan.candidates, options.seed)
        report = study_report(study, naswot, list(options.truncated), resamples=options.bootstrap)
        report.update(data=prepared.info, settings=settings.to_dict(), recipe=chosen.to_dict(), seed=options.seed,
                      reference_seeds=plan.seeds, new_trainings=study.trained)
        atomic_write_json(out / "ranking.json", report)
        if report["complete"]:
            atomic_write_bytes(out / "ranking.png", fidelity_png(
                report["rankings"], f"{len(plan.candidates)} face candidates, full training {plan.reference} epochs "
                                    f"× {plan.seeds} seeds"))
        for line in _summary(report):
            log.info(line)
    return 0


def _trainer(space, data, config, device, progress: bool) -> Trainer:
    """Each training in this process, on the FaceEvaluator of its run seed (built once per seed)."""
    evaluators: dict[int, FaceEvaluator] = {}

    def train(todo, on_result) -> None:
        for i, (seed, genotype, epochs) in enumerate(todo):
            if seed not in evaluators:
                evaluators[seed] = FaceEvaluator(space, data.train_set, data.val_sets, replace(config, seed=seed),
                                                 run_seed=seed, device=device, progress=progress)
            on_result(i, evaluators[seed].evaluate(genotype, epochs))

    return train


def _summary(report: dict) -> list[str]:
    if not report["complete"]:
        return [f"study incomplete: {report['trials_done']}/{report['trials_total']} trainings done; rerun the same "
                "command to continue (journaled trials are not retrained)"]
    lines = [f"reference spread {report['reference_spread']:.2f} points; seed-to-seed ρ "
             f"{report.get('seed_agreement', {}).get('spearman', float('nan')):.3f}"]
    for row in report["rankings"]:
        lines.append(f"  {row['name']:22s} ρ {row['spearman']:+.3f} [{row['spearman_ci'][0]:+.2f}, "
                     f"{row['spearman_ci'][1]:+.2f}]  τ {row['kendall']:+.3f} [{row['kendall_ci'][0]:+.2f}, "
                     f"{row['kendall_ci'][1]:+.2f}]  cost {100 * row['cost']:.0f}%")
    return lines
