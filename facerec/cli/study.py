"""facerec-study: does a face search's short trial rank genotypes as a full training would? (ARCHITECTURE §3)

    facerec-study ranking --data PACK --output OUT --subset-ids 400 --e-min 2 --w-max 8 --reference-epochs 12

Candidates are the search's macro candidates in the order it meets them (Grow from D_min at W_max, then
Prune of the deepest; nas_core.baselines.schedule_candidates), each trained three ways with the face
trainer and the search's fitness (10-fold accuracy on pairs of held-out identities, best epoch): with the
dynamic epochs the search gives it (E_min, +1 per depth tried, +2 per width tried), with static E_min
epochs, and with a full training of --reference-epochs. Prints the Spearman ρ of the dynamic and of the
static ranking against the full one. Every trial is journaled in OUT/journal.jsonl, so a killed study
continues where it stopped when re-run with the same arguments; OUT/ranking.json holds the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facerec.errors import FaceRecError
from nas_core.cli._common import add_search_setting_args, positive, search_setting_overrides
from nas_core.errors import run_cli

_SETTINGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec-study", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True)
    rank = sub.add_parser("ranking", help="Spearman ρ of short (dynamic / static) trials against full training")
    rank.add_argument("--data", required=True, help="face pack folder (train.rec/.idx/property)")
    rank.add_argument("--output", required=True, help="study folder (journal, log, ranking.json)")
    rank.add_argument("--size", choices=["small", "medium"], default="small", help="search preset (W_max 32 / 64)")
    add_search_setting_args(rank, _SETTINGS)
    rank.add_argument("--depth-steps", type=positive, default=3, help="Grow candidates (D_min, D_min+1, ...)")
    rank.add_argument("--width-steps", type=positive, default=3, help="Prune candidates of the deepest one")
    rank.add_argument("--static-epochs", type=positive, help="epochs of every static trial (default E_min)")
    rank.add_argument("--reference-epochs", type=positive,
                      help="epochs of the full training (default: twice the longest dynamic trial)")
    rank.add_argument("--subset-ids", type=int, help="train on N identities (seeded choice), as the search can")
    rank.add_argument("--holdout-ids", type=int, help="identities held out for the fitness pairs (default 10%%)")
    add_training_args(rank)
    return parser


def add_training_args(parser: argparse.ArgumentParser) -> None:
    from facerec.recipe import add_recipe_args

    add_recipe_args(parser)
    parser.add_argument("--embedding-size", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers (default 0)")
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=0, help="run seed (trial seeds and the identity split)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.argv = argv
    return run_cli(lambda: _ranking(args))


def _candidates(args: argparse.Namespace):
    from nas_core.baselines import schedule_candidates
    from nas_core.search import settings_for

    settings = settings_for(args.size, **search_setting_overrides(args, _SETTINGS))
    candidates = schedule_candidates(settings, args.depth_steps, args.width_steps)
    if len({g.key() for g, _ in candidates}) < 3:
        raise FaceRecError(f"--depth-steps/--width-steps: expected at least 3 distinct candidates to rank, got "
                           f"{len(candidates)} (W_max {settings.w_max}, W_min {settings.w_min}, W_res {settings.w_res})")
    static = args.static_epochs or settings.e_min
    reference = args.reference_epochs or 2 * max(e for _, e in candidates)
    return settings, candidates, static, reference


def _ranking(args: argparse.Namespace) -> int:
    from facerec.dist import resolve_device
    from facerec.recipe import recipe_from_args
    from facerec.run_data import check_pack_dir, describe_fitness, prepare_data
    from facerec.search import FaceEvaluator
    from facerec.space import IResNetSpace
    from nas_core.baselines import ranking_study
    from nas_core.io import atomic_write_json
    from nas_core.journal import Journal
    from nas_core.runlog import log_to

    check_pack_dir(args.data)
    settings, candidates, static, reference = _candidates(args)  # bad settings fail before OUT is made
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    with log_to(out / "study.log", "facerec") as log:
        log.info("facerec-study " + " ".join(sys.argv[1:] if args.argv is None else args.argv))
        data = prepare_data(args.data, out, subset_ids=args.subset_ids, holdout_ids=args.holdout_ids,
                            fitness="holdout", seed=args.seed)  # never the .bin packs beside the pack
        recipe = recipe_from_args(args, data.info, log)
        config = recipe.train_config(epochs=1, seed=args.seed, workers=args.workers)
        space = IResNetSpace(embedding_size=args.embedding_size)
        log.info(f"ranking study on {data.source}: {data.info['train_images']} training images of "
                 f"{data.num_classes} identities; fitness on {describe_fitness(data.info['fitness_on'])}; "
                 f"{len(candidates)} candidates, static {static} epochs, full training {reference} epochs; "
                 f"device {device}")
        evaluator = FaceEvaluator(space, data.train_set, data.val_sets, config, run_seed=args.seed, device=device,
                                  progress=not args.no_progress)
        journal = Journal(out / "journal.jsonl")

        def run(pairs):
            results = []
            for genotype, epochs in pairs:
                result = journal.lookup(genotype, epochs)
                if result is None:
                    result = evaluator.evaluate(genotype, epochs)
                    journal.append(genotype, epochs, result, study="ranking")
                results.append(result)
            return results

        report = ranking_study(run, candidates, static, reference)
        report.update(data=data.info, settings=settings.to_dict(), recipe=recipe.to_dict(), seed=args.seed)
        atomic_write_json(out / "ranking.json", report)
        for row in report["candidates"]:
            log.info(f"  {_key(row['genotype'])}: dynamic {row['dynamic']:.2f}% ({row['dynamic_epochs']} epochs), "
                     f"static {row['static']:.2f}%, full {row['reference']:.2f}%")
        log.info(f"Spearman rho vs the {reference}-epoch training: dynamic (search schedule) "
                 f"{report['spearman_dynamic']:.3f}, static ({static} epochs) {report['spearman_static']:.3f}; "
                 f"wrote {out / 'ranking.json'}")
    return 0


def _key(genotype: dict) -> str:
    from nas_core.genotype import Genotype

    return Genotype.from_dict(genotype).key()


if __name__ == "__main__":
    sys.exit(main())
