"""The fuzz sweep as a table: seeded mutations of every input kind, each run through the command that reads
it (tools/fuzzing; the slow part of tests/test_fuzz.py runs the same sweep).

    python bench/fuzz_report.py                          # 140 cases per kind, seed 1 (3,360 cases, 24 kinds)
    python bench/fuzz_report.py --cases-per-kind 20 --seed 3 --kinds rec,journal --keep

Per kind: cases, exit 0 (a correct, complete result), exit 2 (one `error:` line naming the mutated file),
failures (a traceback, a hang, another exit code, a wrong or half-written output), of which known (listed in
tools/fuzzing/known.py: in code this work may not change). Each failure is printed with its mutation.
Exits 1 on any failure (with --allow-known: on any failure not known).

    python bench/fuzz_report.py --flags                  # the flag fuzzer: every option of every command
    python bench/fuzz_report.py --flags --commands facerec-train,nas-search --sample 5 --seed 2
    python bench/fuzz_report.py --flags --from-json bench/results/flag_fuzz.json   # print the saved table

--flags gives every option of every console script each hostile value its declaration calls for and resumes
each resumable command with each flag changed (tools/fuzzing/flag_sweep.py); it prints the count of cases, kinds
of value and failures, each failure (command, flag, value, what happened), and with --json writes the document
(bench/results/flag_fuzz.json is the full run's).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.fuzzing import sweep as fuzz  # noqa: E402
from tools.fuzzing.known import known_issue  # noqa: E402
from tools.shared_data import shared_data  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases-per-kind", type=int, default=140)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    parser.add_argument(
        "--seed-traces",
        help="the authors' traces, read by the trace kind (default: seed_traces in the shared data folder, "
        "tools/shared_data.py; --kinds without trace runs without them)",
    )
    parser.add_argument(
        "--workdir", default=None, help="where subjects and cases go (default: a new temp folder)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the folders of failing cases (and the workdir)"
    )
    parser.add_argument("--allow-known", action="store_true", help="exit 0 when every failure is a known one")
    flags = parser.add_argument_group("the flag fuzzer")
    flags.add_argument("--flags", action="store_true", help="run the flag fuzzer instead of the file fuzzer")
    flags.add_argument("--commands", default=None, help="comma-separated commands, e.g. 'facerec-data pack' "
                       "(default: all)")
    flags.add_argument("--sample", type=int, default=None, metavar="K",
                       help="K cases per command (resumes apart), drawn with --seed (default: every case)")
    flags.add_argument("--json", default=None, metavar="FILE", help="write the result document here")
    flags.add_argument("--from-json", default=None, metavar="FILE", help="print the table of a saved document")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.flags or args.from_json:
        return _flags(args, argv)
    kinds = args.kinds.split(",") if args.kinds else None
    needs_traces = kinds is None or "trace" in kinds
    traces = shared_data("seed_traces", args.seed_traces, "--seed-traces") if needs_traces else None

    import torch

    torch.set_num_threads(1)  # the children inherit it: tiny cases gain nothing from more threads
    started = time.perf_counter()
    workspace = fuzz.prepare(args.workdir, traces)

    def progress(verdict) -> None:
        if verdict.outcome == "failure":
            known = known_issue(verdict)
            label = f"known ({known.where})" if known else "FAILURE"
            print(
                f"{label}: {verdict.kind}#{verdict.index} {verdict.mutation}\n    -> {verdict.reason}",
                file=sys.stderr,
                flush=True,
            )

    try:
        verdicts = fuzz.sweep(
            workspace,
            args.cases_per_kind,
            seed=args.seed,
            kinds=kinds,
            keep_failures=args.keep,
            on_case=progress,
        )
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workspace.root, ignore_errors=True)
    rows = fuzz.table(verdicts)
    command = "python bench/fuzz_report.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command.strip()}\n")
    print(fuzz.format_table(rows))
    failures = [v for v in verdicts if v.outcome == "failure"]
    unknown = [v for v in failures if known_issue(v) is None]
    print(
        f"\n{len(verdicts)} cases in {time.perf_counter() - started:.0f} s; {len(failures)} failures "
        f"({len(failures) - len(unknown)} known)"
    )
    if args.keep and failures:
        print(f"failing cases kept under {workspace.root / 'cases'}")
    return 1 if (unknown if args.allow_known else failures) else 0


def _flags(args: argparse.Namespace, argv: list[str] | None) -> int:
    import json
    from datetime import date

    from tools.fuzzing import flag_cases, flag_results, flag_sweep

    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        print(f"{doc['command']} ({doc['date']}, {doc['seconds']} s)\n")
        print(flag_results.table(doc))
        return 0
    started = time.perf_counter()
    workspace = flag_sweep.prepare(args.workdir)
    commands = args.commands.split(",") if args.commands else None
    cases = flag_cases.cases(commands)
    if args.sample is not None:
        cases = flag_cases.sample(cases, args.sample, args.seed)
    verdicts = []
    try:
        for index, case in enumerate(cases):
            verdicts.append(flag_sweep.run_case(workspace, case, index, keep=args.keep))
            if verdicts[-1].outcome == "failure":
                print(flag_results.failure_lines({"failures": [flag_results.failure_entry(verdicts[-1])]})[0],
                      file=sys.stderr, flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workspace.root, ignore_errors=True)
    command = "python bench/fuzz_report.py " + " ".join(sys.argv[1:] if argv is None else argv)
    doc = flag_results.document(verdicts, command=command.strip(), date=date.today().isoformat(),
                                seconds=time.perf_counter() - started)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{doc['command']}\n")
    print(flag_results.table(doc))
    return 1 if doc["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
