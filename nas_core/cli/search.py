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
`--resume RUN` continues with the run's own settings: a setting flag given with it must repeat the run's value (else
exit 2 naming both); --device, --no-progress, --parallel, --executor and --ray-address may change and are logged.
The run itself is nas_core.search_run.SearchRun over nas_core.classify.task.ClassificationSearch.
"""

from __future__ import annotations

import argparse
import dataclasses

from nas_core.classify.settings import ClassificationOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args
from nas_core.io import read_json_object
from nas_core.run_folder import check_run_folder
from nas_core.settings import (
    RunOptions,
    add_budget_flags,
    add_run_flags,
    add_search_flags,
    budget_overrides,
    check_resume,
    search_overrides,
    search_run_flags,
)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="nas-search", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, ClassificationOptions)
    parser.add_argument("--size", choices=("tiny", "mobile"), default="tiny",
                        help="settings preset: tiny (W_max 64) or mobile (W_max 128) (default: tiny)")
    add_run_flags(parser, default_output="runs/<dataset>-<size>-<time>")
    parser.add_argument("--replay", metavar="FILE", default=None,
                        help="drive the search with a recorded trace (authors' JSON, a run folder or its journal.jsonl); "
                             "setting flags given with it re-decide the recorded search, nothing trains")
    add_search_flags(parser)
    add_budget_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: _search(args, argv), check=_check)


def _check(args: argparse.Namespace) -> None:
    """Every flag, before anything is made: the budgets (with --resume too), a resume against its run (a setting
    flag must repeat the run's value), and a run folder of another kind (nas_core.run_folder)."""
    budget_overrides(args)
    if args.resume and not args.replay:
        saved = read_json_object(f"{args.resume}/settings.json", "the settings.json of a nas-search run")
        check_run_folder(args.resume, "nas-search", search_run_flags(saved), holds_results=True)
        args.applied = check_resume(args, saved, args.resume)
    elif args.output or args.resume:
        check_run_folder(args.output or args.resume, "nas-search", {}, holds_results=False)


def _search(args: argparse.Namespace, argv: list[str] | None) -> int:
    # The one deliberate lazy import: the modules that run the job (torch), once the flags are parsed.
    from nas_core.classify.task import ClassificationSearch
    from nas_core.search_run import ReplaySearch, SearchRun
    from nas_core.settings import settings_for

    options = dataclass_from_args(RunOptions, args)
    overrides = {**search_overrides(args), **budget_overrides(args)}
    if args.replay:  # a replay trains nothing: one trial at a time, in this process
        task = ReplaySearch(args.replay, **overrides)
        options = dataclasses.replace(options, parallel=1, estimate=False)
    elif options.resume:
        task = ClassificationSearch.resume(options.resume, device=options.device)
        task.resume_notes = args.applied
    else:
        task = ClassificationSearch.new(dataclass_from_args(ClassificationOptions, args),
                                        settings_for(args.size, **overrides), size=args.size, device=options.device)
    return SearchRun(task, options, argv).execute()


if __name__ == "__main__":
    raise SystemExit(main())
