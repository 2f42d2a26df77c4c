"""nas-report: an HTML report with plots of a search run, live or finished (face or classification).

    nas-report runs/c10                               # writes runs/c10/report.html + report.md (+ PNGs)
    nas-report runs/c10 --output /tmp/c10.html        # elsewhere: /tmp/c10.html, /tmp/c10.md, /tmp/c10-*.png

Reads only the run folder (journal.jsonl, settings.json, result.json when the search has ended), so it
works while the search runs, after it was killed, and on a `nas-search --replay` of the authors' traces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas_core.command import CommandParser, run_command
from nas_core.errors import NasError
from nas_core.io import output_file


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="nas-report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "run", metavar="RUN", help="search run folder (journal.jsonl + settings.json [+ result.json])"
    )
    parser.add_argument(
        "--output",
        metavar="FILE.html",
        default=None,
        help="report file (default RUN/report.html); its markdown twin and PNGs go next to it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _report, hold_native_output=True)


def _report(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (matplotlib, the run readers), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from nas_core.report import write_search_report

    run = Path(args.run)
    output = Path(args.output) if args.output else run / "report.html"
    if output.suffix.lower() not in (".html", ".htm"):
        raise NasError(f"{output}: expected an .html file name for the report")
    if args.output:
        output_file(output)  # a folder or a file in the way fails before the run is read
    if run.is_dir() and not (run / "journal.jsonl").exists() and (run / "metrics.json").is_file():
        raise NasError(
            f"{run / 'journal.jsonl'}: expected a search run; {run} looks like a training output "
            "(facerec-train writes its report.html itself)"
        )
    path = write_search_report(run, output)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
