"""facerec-report: the HTML report (+ markdown twin) of a facerec-train output folder, or of a search run
folder with IResNet genotypes named R-<layers>-<8C>.

    facerec-report OUT                         # a facerec-train output: OUT/report.html + OUT/report.md
    facerec-report RUN --output /tmp/run.html  # a search run, written elsewhere
"""

from __future__ import annotations

import argparse

from nas_core.command import CommandParser, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", metavar="OUT|RUN",
                        help="facerec-train output (metrics.json) or search run (journal.jsonl)")
    parser.add_argument("--output", metavar="FILE.html", default=None,
                        help="report file (default FOLDER/report.html); its markdown twin and PNGs go next to it")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _report, hold_native_output=True)


def _report(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (matplotlib, TensorBoard's reader), made inside run_cli so that
    # what it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.report import write_folder_report

    path = write_folder_report(args.folder, args.output)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
