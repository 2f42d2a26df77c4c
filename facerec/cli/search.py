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
`--resume RUN` continues with the run's own settings: a setting flag given with it must repeat the run's value (else
exit 2 naming both); --device, --no-progress, --parallel, --executor, --ray-address and the cache flags may change
and are logged. RUN/facenas-run.json says what kind of folder RUN is: another command's folder is refused.
The run itself is nas_core.search_run.SearchRun over facerec.search.task.FaceSearch.
"""

from __future__ import annotations

import argparse
import sys

from facerec.data.options import CacheOptions
from facerec.search.settings import FaceSearchOptions
from facerec.train.recipe import add_recipe_flag
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args
from nas_core.io import read_json_object
from nas_core.run_folder import check_run_folder
from nas_core.settings import (
    SEARCH_FLAGS,
    RunOptions,
    add_budget_flags,
    add_run_flags,
    add_search_flags,
    budget_overrides,
    check_resume,
    search_overrides,
    search_run_flags,
)

_SEARCH_FLAGS = (*SEARCH_FLAGS, "macro_only")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-search", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("small", "medium"), default="small",
                        help="search preset: small (W_max 32) or medium (W_max 64) (default: small)")
    add_dataclass_args(parser, FaceSearchOptions)
    add_recipe_flag(parser)
    add_dataclass_args(parser, CacheOptions)
    add_run_flags(parser, default_output="runs/face-search-<size>")
    parser.add_argument("--step-seconds", metavar="SMALL,LARGE",
                        help="with --estimate: assumed seconds of one training step at the recipe's batch of the "
                             "smallest and the largest candidate (e.g. measured on the target GPU) instead of "
                             "timing them here")
    add_search_flags(parser, _SEARCH_FLAGS, default="the --size preset's; without --data the demo's")
    add_budget_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: _search(args, argv), check=_check)


def _check(args: argparse.Namespace) -> None:
    """Every flag, before anything is made: the budgets (with --resume too), a resume against its run (a setting
    flag must repeat the run's value), and a run folder of another kind (nas_core.run_folder)."""
    budget_overrides(args)
    if args.resume:
        saved = read_json_object(f"{args.resume}/settings.json", "the settings.json of a facerec-search run")
        check_run_folder(args.resume, "facerec-search", search_run_flags(saved), holds_results=True)
        args.applied = check_resume(args, saved, args.resume)
    else:  # the default folder as facerec.search.task.FaceSearch.default_output names it
        check_run_folder(args.output or f"runs/face-search-{args.size}", "facerec-search", {}, holds_results=False)


def _search(args: argparse.Namespace, argv: list[str] | None) -> int:
    # The one deliberate lazy import: the modules that run the job (torch), once the flags are parsed.
    from facerec.search.task import FaceSearch
    from nas_core.search_run import SearchRun

    options = dataclass_from_args(RunOptions, args)
    run = {"device": options.device, "cache": dataclass_from_args(CacheOptions, args), "progress": options.progress,
           "step_seconds": args.step_seconds}
    if options.resume:
        task = FaceSearch.resume(options.resume, **run)
        task.resume_notes = args.applied
    else:
        overrides = {**search_overrides(args, _SEARCH_FLAGS), **budget_overrides(args)}
        task = FaceSearch.new(dataclass_from_args(FaceSearchOptions, args), size=args.size, recipe=args.recipe,
                              overrides=overrides, estimate=options.estimate, **run)
    return SearchRun(task, options, argv).execute()


if __name__ == "__main__":
    sys.exit(main())
