"""facerec-study: does a face search's short trial rank genotypes as a full training would? (ARCHITECTURE §3)

    facerec-study ranking --data PACK --output OUT --subset-ids 450 --holdout-ids 150 --e-min 1 --d-min 4 \\
        --w-max 16 --w-res 4 --depths 4,5,6 --widths 16,12,8,4 --reference-epochs 12 --reference-seeds 2

Candidates: a depth × width grid of macro candidates (--depths/--widths), or the search's own macro candidates
in the order it meets them (--depth-steps/--width-steps: Grow from D_min at W_max, then Prune of the deepest).
Every candidate is trained fully (--reference-epochs, for --reference-seeds run seeds; the reference is the mean
last-epoch accuracy) and cheaply: with the epochs the search's dynamic schedule gives it, and with each of
--static-epochs. The rankings read from those trials (facerec.search.rankings: the paper's, static, the first epochs of
the full training, pair AUC, training loss, NASWOT at initialisation) are compared with the reference by
Spearman ρ and Kendall τ with 95 % bootstrap intervals, and by cost in epochs relative to full training
(nas_core.rank_fidelity). Fitness is 10-fold accuracy on pairs of identities held out of training.

Every trial is journaled (OUT/journal.jsonl for run seed 0, OUT/journal-seed<S>.jsonl for the others), so a rerun
with the same arguments trains nothing new; --max-trainings N stops after N new trainings (the study in parts).
Writes OUT/ranking.json (complete: false until every trial is in) and OUT/ranking.png (ρ against cost).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facerec.errors import FaceRecError
from nas_core.cli._common import add_search_setting_args, positive, search_setting_overrides
from nas_core.errors import run_cli

_SETTINGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec-study", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True)
    rank = sub.add_parser("ranking", help="ρ and τ of cheap rankings (dynamic, static, ...) against full training")
    rank.add_argument("--data", required=True, help="face pack folder (train.rec/.idx/property)")
    rank.add_argument("--output", required=True, help="study folder (journals, log, ranking.json, ranking.png)")
    rank.add_argument("--size", choices=["small", "medium"], default="small", help="search preset (W_max 32 / 64)")
    add_search_setting_args(rank, _SETTINGS)
    rank.add_argument("--depths", type=_int_list, help="grid of candidates: these depths (blocks) ...")
    rank.add_argument("--widths", type=_int_list, help="... times these widths (each W_max − k·W_res)")
    rank.add_argument("--depth-steps", type=positive, default=3, help="without --depths: Grow candidates")
    rank.add_argument("--width-steps", type=positive, default=3, help="without --depths: Prune candidates")
    rank.add_argument("--static-epochs", type=_int_list, help="epochs of the static trials (default: E_min, 2, 4)")
    rank.add_argument("--reference-epochs", type=positive,
                      help="epochs of the full training (default: twice the longest dynamic trial)")
    rank.add_argument("--reference-seeds", type=positive, default=1, help="full trainings per candidate (run seeds "
                                                                          "0..N-1), averaged")
    rank.add_argument("--truncated", type=_int_list, default=[2, 3],
                      help="rank by the first K epochs of the full training (seed 0) for each K")
    rank.add_argument("--bootstrap", type=positive, default=2000, help="resamples of the 95%% intervals")
    rank.add_argument("--max-trainings", type=positive, help="stop after N new trainings (run the study in parts)")
    rank.add_argument("--subset-ids", type=int, help="train on N identities (seeded choice), as the search can")
    rank.add_argument("--holdout-ids", type=int, help="identities held out for the fitness pairs (default 10%%)")
    add_training_args(rank)
    return parser


def add_training_args(parser: argparse.ArgumentParser) -> None:
    from facerec.train.recipe import add_recipe_args

    add_recipe_args(parser)
    parser.add_argument("--embedding-size", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers (default 0)")
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the identity split and of the first run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.argv = argv
    return run_cli(lambda: _ranking(args))


def _plan(args: argparse.Namespace):
    """(settings, [(genotype, dynamic epochs)], static epochs, reference epochs), checked before OUT is made."""
    from nas_core.baselines import schedule_candidates
    from nas_core.rank_fidelity import dynamic_epochs, grid_candidates
    from nas_core.search import settings_for

    overrides = search_setting_overrides(args, _SETTINGS)
    if args.depths or args.widths:
        if not (args.depths and args.widths):
            raise FaceRecError("--depths/--widths: expected both (the grid is depths × widths)")
        overrides["d_min"] = overrides["d_min"] or min(args.depths)
        overrides["w_max"] = overrides["w_max"] or max(args.widths)
        settings = settings_for(args.size, **overrides)
        candidates = [(g, dynamic_epochs(settings, g)) for g in grid_candidates(args.depths, args.widths)]
    else:
        settings = settings_for(args.size, **overrides)
        candidates = schedule_candidates(settings, args.depth_steps, args.width_steps)
    if len({g.key() for g, _ in candidates}) < 3:
        raise FaceRecError(f"--depth-steps/--width-steps: expected at least 3 distinct candidates to rank, got "
                           f"{len(candidates)} (W_max {settings.w_max}, W_min {settings.w_min}, W_res {settings.w_res})")
    static = args.static_epochs or sorted({settings.e_min, 2, 4})
    reference = args.reference_epochs or 2 * max(e for _, e in candidates)
    if max(args.truncated) > reference:
        raise FaceRecError(f"--truncated: expected K ≤ --reference-epochs {reference}, got {max(args.truncated)}")
    return settings, candidates, static, reference


def _ranking(args: argparse.Namespace) -> int:
    from facerec.data.run_data import check_pack_dir, describe_fitness, prepare_data
    from facerec.search.rankings import StudyTrials, study_report
    from facerec.train.dist import resolve_device
    from facerec.train.recipe import recipe_from_args
    from nas_core.io import atomic_write_bytes, atomic_write_json
    from nas_core.rank_fidelity import fidelity_png
    from nas_core.runlog import log_to

    check_pack_dir(args.data)
    settings, candidates, static, reference = _plan(args)  # bad settings fail before OUT is made
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    with log_to(out / "study.log", "facerec") as log:
        log.info("facerec-study " + " ".join(sys.argv[1:] if args.argv is None else args.argv))
        data = prepare_data(args.data, out, subset_ids=args.subset_ids, holdout_ids=args.holdout_ids,
                            fitness="holdout", seed=args.seed)  # never the .bin packs beside the pack
        recipe = recipe_from_args(args, data.info, log)
        config = recipe.train_config(epochs=1, seed=args.seed, workers=args.workers)
        log.info(f"ranking study on {data.source}: {data.info['train_images']} training images of "
                 f"{data.num_classes} identities; fitness on {describe_fitness(data.info['fitness_on'])}; "
                 f"{len(candidates)} candidates, static {static} epochs, full training {reference} epochs x "
                 f"{args.reference_seeds} seed(s); device {device}")
        trials = StudyTrials(out, data, config, args.embedding_size, device, seed=args.seed,
                             progress=not args.no_progress, budget=args.max_trainings, log=log)
        outcome = trials.run(candidates, static, reference, args.reference_seeds)
        report = study_report(outcome, candidates, static, reference, args.truncated, resamples=args.bootstrap)
        report.update(data=data.info, settings=settings.to_dict(), recipe=recipe.to_dict(), seed=args.seed,
                      reference_seeds=args.reference_seeds, new_trainings=trials.trained)
        atomic_write_json(out / "ranking.json", report)
        if report["complete"]:
            atomic_write_bytes(out / "ranking.png", fidelity_png(
                report["rankings"], f"{len(candidates)} face candidates, full training {reference} epochs × "
                                    f"{args.reference_seeds} seeds"))
        for line in _summary(report):
            log.info(line)
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
