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

Every trial is journaled (OUT/journal.jsonl for run seed --seed, OUT/journal-seed<S>.jsonl for the others), so a
rerun with the same arguments trains nothing new; --max-trainings N stops after N new trainings (the study in
parts). Writes OUT/ranking.json (complete: false until every trial is in) and OUT/ranking.png (ρ against cost).
OUT/facenas-run.json fingerprints what defines the trainings (--data, --subset-ids, --holdout-ids, --seed,
--embedding-size, the recipe flags): a rerun in OUT with other values, once trainings are journaled, is refused
naming both; the candidates, epochs, seeds, --max-trainings, --bootstrap, --workers and --device may change.
The job is facerec.search.study, over nas_core.rank_fidelity.RankingStudy (the driver nas-study ranking runs on).
"""

from __future__ import annotations

import argparse
import sys

from facerec.search.settings import FaceStudyOptions
from facerec.train.recipe import add_recipe_args
from nas_core.command import CommandParser, input_folder, output_folder, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args
from nas_core.settings import CANDIDATE_FLAGS, RunOptions, add_search_flags, search_overrides


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-study", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True)
    rank = sub.add_parser("ranking", help="ρ and τ of cheap rankings (dynamic, static, ...) against full training")
    rank.add_argument("--data", required=True, type=input_folder, help="face pack folder (train.rec/.idx/property)")
    rank.add_argument("--output", required=True, type=output_folder,
                      help="study folder (journals, log, ranking.json, ranking.png); rerun in it to continue: the "
                           "data, identities, --seed, --embedding-size and recipe flags must be its own")
    rank.add_argument("--size", choices=("small", "medium"), default="small",
                      help="search preset: small (W_max 32) or medium (W_max 64) (default: small)")
    add_search_flags(rank, CANDIDATE_FLAGS)
    add_dataclass_args(rank, FaceStudyOptions)
    add_recipe_args(rank)
    add_dataclass_args(rank, RunOptions, include=("device", "progress"))
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: _study(args, argv), check=_check)


def _job(args: argparse.Namespace) -> dict:
    recipe = {"choice": args.recipe, "batch_size": args.batch_size, "lr": args.lr, "head": args.head}
    return {"data": args.data, "out": args.output, "size": args.size,
            "overrides": search_overrides(args, CANDIDATE_FLAGS), "recipe": recipe}


def _check(args: argparse.Namespace) -> None:
    # The one deliberate lazy import: the module that runs the job (torch), once the flags are parsed.
    from facerec.search.study import check_study

    check_study(dataclass_from_args(FaceStudyOptions, args), **_job(args))


def _study(args: argparse.Namespace, argv: list[str] | None) -> int:
    from facerec.search.study import ranking_study

    return ranking_study(dataclass_from_args(FaceStudyOptions, args), **_job(args), device=args.device,
                         progress=args.progress, command=" ".join(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
