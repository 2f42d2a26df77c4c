"""Start-up cost: `import facerec` and `--help` of every console script, as ratios to `python -c "import torch"`
measured in the same run. Targets: `import facerec` ≤ 1.3, every `--help` ≤ 0.3.

    python bench/startup.py [--rounds 7] [--repo PATH] [--output bench/results/startup.json]

Every command runs in a fresh interpreter (``sys.executable``, the repository first on ``PYTHONPATH``); a
`--help` runs the script's entry point from pyproject.toml [project.scripts] as the installed wrapper does.
Each round runs every command once, in turn, the order reversed every other round, so a busy spell of a
shared machine falls on all of them alike; a command's time is its median over the rounds. ``--repo`` times
another checkout of the project (e.g. an older commit unpacked with ``git archive``) with its own scripts.
Exit 1 when a target is missed, 2 when a command fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from nas_core.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
BASELINE = "import torch"
TARGETS = {"import facerec": 1.3, "--help": 0.3}


def commands(repo: Path) -> dict[str, str]:
    """{name: Python source run with ``python -c``}: the baseline, ``import facerec`` and each script's --help."""
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    found = {BASELINE: "import torch", "import facerec": "import facerec"}
    for name, target in scripts.items():
        module, function = target.split(":")
        found[f"{name} --help"] = (f"import sys; from {module} import {function}; sys.argv[0] = {name!r}; "
                                   f"sys.exit({function}(['--help']))")
    return found


def time_once(source: str, repo: Path) -> float:
    """Wall seconds of ``python -c source`` in a fresh interpreter; SystemExit(2) names a failing command."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", source], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"error: python -c {source!r} exited {done.returncode}: {done.stderr.strip()[-400:]}", file=sys.stderr)
        raise SystemExit(2)
    return seconds


def measure(found: dict[str, str], rounds: int, repo: Path) -> dict[str, list[float]]:
    """Seconds of every command in every round, the order reversed every other round."""
    times: dict[str, list[float]] = {name: [] for name in found}
    names = list(found)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            times[name].append(time_once(found[name], repo))
    return times


def target_of(name: str) -> float | None:
    if name == BASELINE:
        return None
    return TARGETS["--help"] if name.endswith("--help") else TARGETS[name]


def summary(times: dict[str, list[float]]) -> dict:
    """Medians, ratios to the baseline's median, targets and whether each is met."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = {}
    for name, median in medians.items():
        ratio = median / medians[BASELINE]
        target = target_of(name)
        rows[name] = {"median_s": round(median, 4), "ratio": round(ratio, 3), "target": target,
                      "met": None if target is None else ratio <= target, "runs_s": [round(t, 4) for t in times[name]]}
    return rows


def table(rows: dict) -> str:
    lines = ["| command | median s | ratio to `import torch` | target |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        target = "" if row["target"] is None else f"≤ {row['target']}" + ("" if row["met"] else " (missed)")
        lines.append(f"| `{name}` | {row['median_s']:.2f} | {row['ratio']:.2f} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of every command (median; default 7)")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to time (default: this one)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "startup.json",
                        help="JSON result (default bench/results/startup.json)")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    rows = summary(measure(commands(repo), args.rounds, repo))
    print(table(rows))
    met = all(row["met"] is not False for row in rows.values())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, {"format": 1, "repo": "." if repo == REPO else repo.name, "python": sys.version.split()[0],
                                    "rounds": args.rounds, "baseline": BASELINE, "targets": TARGETS,
                                    "commands": rows, "met": met})
    print(f"wrote {args.output}; targets {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
