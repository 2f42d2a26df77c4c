"""The project's shared data folder, where the tools/ and bench/ scripts find real data (lfw_train, orl_faces,
seed_traces, ...): the folder $FACENAS_SHARED_DATA names, else shared/data in the repository's parent folder
(docs/ARCHITECTURE.md §2, tools/). A folder a script needs and does not find is one `error:` line and exit code 2.

    python tools/shared_data.py orl_faces [FOLDER] [--flag ORL_DIR]   # for shell scripts: prints the folder
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ENV = "FACENAS_SHARED_DATA"
REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """$FACENAS_SHARED_DATA when set, else shared/data in the repository's parent folder."""
    return Path(os.environ.get(ENV) or REPO.parent / "shared" / "data")


def repo_relative(path: str | Path) -> str:
    """How a committed result names a path: relative to the repository, else the folder's name alone (no
    absolute path of this machine)."""
    try:
        return str(Path(path).resolve().relative_to(REPO.resolve()))
    except ValueError:
        return Path(path).name


def shared_data(name: str, given: str | Path | None = None, flag: str | None = None) -> Path:
    """The folder ``given`` on the command line (by ``flag``), else ``name`` in the shared data folder. A folder
    that is not there ends the script: one line on stderr naming it and what was expected, exit code 2."""
    if given:
        folder, expected = Path(given), f"the {name} folder given by {flag}" if flag else f"the {name} folder"
    else:
        folder = shared_data_root() / name
        expected = (f"{name} in the shared data folder (${ENV}, else {REPO.parent / 'shared' / 'data'})"
                    + (f" or a folder given by {flag}" if flag else ""))
    if not folder.is_dir():
        print(f"error: {folder}: no such folder; expected {expected}", file=sys.stderr)
        raise SystemExit(2)
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print a folder of the shared data (exit 2 with one line if absent).")
    p.add_argument("name", help="folder name in the shared data folder, e.g. orl_faces")
    p.add_argument("given", nargs="?", help="a folder given by the user instead (empty: use the shared one)")
    p.add_argument("--flag", help="how the user gives that folder, named in the error line")
    args = p.parse_args(argv)
    print(shared_data(args.name, args.given, args.flag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
