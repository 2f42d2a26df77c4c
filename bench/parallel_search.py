"""Speculative parallel search: wall time of `nas-search --parallel N` against `--parallel 1`, same run.

Both runs search digits with the same settings and seed, one CPU thread per trial (one per worker), each
in a fresh process as a user would start it (worker start-up and data loading are counted). Prints both
wall times, their ratio (target >= 1.5 for N = 2 on two cores), the trials run ahead that the search never
needed (count and seconds) and those dropped unfinished at the end, and checks that both runs found the
same genotype with the same trial table.

    python bench/parallel_search.py [--parallel 2] [--repeat 1] [extra nas-search flags]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Trials of a few seconds each on one thread (digits, widths 8..16, 3..8 layers, 3+ epochs): long enough that
# starting the workers is a small part of the run, as it is for real trials.
DEFAULT = ["--dataset", "digits", "--d-min", "3", "--d-max", "8", "--w-max", "16", "--w-min", "8",
           "--e-min", "3", "--micro-epochs", "2", "--device", "cpu", "--threads", "1"]


def _search(flags: list[str], run: Path) -> tuple[float, dict, list[str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas_core.cli.search", *flags, "--output", str(run)], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - tic
    result = json.loads((run / "result.json").read_text())
    table = [line[line.index("trial "):] for line in (run / "search.log").read_text().splitlines() if " -> " in line]
    return wall, result, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args, extra = parser.parse_known_args()
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            one, base, base_table = _search(DEFAULT + extra, Path(tmp) / "sequential")
            many, result, table = _search(DEFAULT + extra + ["--parallel", str(args.parallel)], Path(tmp) / "parallel")
        same = result["genotype"] == base["genotype"] and table == base_table
        print(f"run {i}: {base['trials']} trials; --parallel 1 {one:.1f} s, --parallel {args.parallel} {many:.1f} s: "
              f"speed-up {one / many:.2f}x (target >= 1.5); run ahead and never needed: "
              f"{result['speculative_trials']} trial(s), {result['speculative_seconds']:.1f} s of training "
              f"({result['speculative_seconds'] / max(result['search_seconds'], 1e-9):.0%} of the needed trials' "
              f"{result['search_seconds']:.1f} s); dropped unfinished: {result['speculative_dropped']}; "
              f"same genotype and trial table: {'yes' if same else 'NO'}", flush=True)
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
