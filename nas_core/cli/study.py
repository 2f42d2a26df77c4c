"""nas-study: random-sampling baseline with RI against a finished search, and the rank-correlation study.

    nas-study random --run runs/mnist --output out/mnist-random           # same trial count as the search
    nas-study random --run runs/mnist --output out/r --budget epochs       # same total epochs
    nas-study ranking --dataset mnist --data-root DIR --output out/rank --size tiny --w-max 16 --e-min 2

Every trial is journaled in OUT/journal.jsonl, so a killed study continues where it stopped when re-run with
the same arguments. Independent trials go through nas_core.executor (``--parallel N``: local processes, or
``--executor ray`` for a cluster). The jobs are nas_core.classify.study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas_core.classify.settings import ClassificationOptions, RandomStudyOptions, RankingStudyOptions
from nas_core.command import CommandParser, output_folder, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args
from nas_core.run_folder import check_run_folder
from nas_core.settings import (
    CANDIDATE_FLAGS,
    ParallelOptions,
    RunOptions,
    SearchSettings,
    add_search_flags,
    search_overrides,
)

_RANDOM_DATA = ("dataset", "data_root", "batch_size", "reference_schedule", "threads")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="nas-study", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True)

    rnd = sub.add_parser("random", help="random architectures at the search's budget; RI of the found one")
    rnd.add_argument("--run", required=True, metavar="RUN", help="finished nas-search folder (RUN/result.json)")
    add_dataclass_args(rnd, ClassificationOptions, include=_RANDOM_DATA,
                       defaults={"dataset": None}, help_suffix={"dataset": " (default: the run's)",
                                                                "data_root": " (default: the run's)"})
    add_dataclass_args(rnd, RandomStudyOptions)
    _add_common(rnd)

    rank = sub.add_parser("ranking", help="Spearman rho of static vs dynamic epochs against longer training")
    add_dataclass_args(rank, ClassificationOptions)
    rank.add_argument("--size", choices=("tiny", "mobile"), default="tiny",
                      help="settings preset the candidates come from (default: tiny)")
    add_search_flags(rank, CANDIDATE_FLAGS)
    add_dataclass_args(rank, RankingStudyOptions)
    _add_common(rank)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=output_folder,
                        help="study folder (journal, log, JSON result); rerun in it to continue the same study")
    add_dataclass_args(parser, SearchSettings, include=("seed",))
    add_dataclass_args(parser, ParallelOptions)
    add_dataclass_args(parser, RunOptions, include=("device", "progress"))


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _study, check=_check)


# The flags that define a study's trainings (OUT/facenas-run.json): another value in a folder holding trainings is
# another study. The others (candidates, epochs, samples, threads, where trials run) may change between reruns.
_DEFINING = {"random": ("run", "dataset", "data_root", "batch_size", "reference_schedule", "seed"),
             "ranking": ("dataset", "data_root", "val_fraction", "rank_on", "batch_size", "reference_schedule",
                         "seed")}


def _folder(args: argparse.Namespace) -> tuple[str, dict]:
    """OUT's kind and the flags that define its trainings, as nas_core.run_folder records them."""
    flags = {}
    for name in _DEFINING[args.study]:
        value = getattr(args, name)
        flags["--" + name.replace("_", "-")] = str(Path(value).resolve()) if name in ("run", "data_root") and value \
            else value
    return f"nas-study {args.study}", flags


def _check(args: argparse.Namespace) -> None:
    """OUT before anything is written: a folder of another kind, or a study of other data, is refused."""
    out = Path(args.output)
    results = out.is_dir() and any(p.stat().st_size for p in out.glob("journal*.jsonl"))
    check_run_folder(out, *_folder(args), holds_results=results)


def _study(args: argparse.Namespace) -> int:
    # The one deliberate lazy import: the module that runs the jobs (torch), once the flags are parsed.
    from nas_core.classify.study import random_study, rank_study

    where = dataclass_from_args(ParallelOptions, args)
    if args.study == "random":
        data = {name: getattr(args, name) for name in _RANDOM_DATA}
        return random_study(args.output, args.run, dataclass_from_args(RandomStudyOptions, args), data,
                            seed=args.seed, where=where, device=args.device, progress=args.progress,
                            folder=_folder(args))
    options = dataclass_from_args(ClassificationOptions, args)
    return rank_study(args.output, options, dataclass_from_args(RankingStudyOptions, args), size=args.size,
                      overrides={**search_overrides(args, CANDIDATE_FLAGS), "seed": args.seed}, where=where,
                      device=args.device, progress=args.progress, folder=_folder(args))


if __name__ == "__main__":
    raise SystemExit(main())
