"""Search overhead: wall time of a whole `nas-search` on digits / summed train+eval seconds of its trials.

Everything that is not training a trial (engine, journal with fsync, logging, progress bar, data loading,
result writing) shows up as the excess over 1.0. Target: ≤ 1.10.

    python bench/search_overhead.py [--repeat 1] [extra nas-search flags]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nas_core.classify.evaluator  # noqa: F401  (imports outside the timed region, as an installed CLI has them)
import nas_core.journal  # noqa: F401
import nas_core.search  # noqa: F401
from nas_core.cli.search import main as search_main

DEFAULT = ["--dataset", "digits", "--d-min", "2", "--d-max", "6", "--w-max", "16", "--w-min", "8",
           "--e-min", "2", "--micro-epochs", "2", "--device", "cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args, extra = parser.parse_known_args()
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            tic = time.perf_counter()
            code = search_main(DEFAULT + extra + ["--output", str(run)])
            wall = time.perf_counter() - tic
            if code != 0:
                return code
            result = json.loads((run / "result.json").read_text())
        trials_seconds = result["search_seconds"]
        print(f"run {i}: {result['trials']} trials, search wall {wall:.2f} s, trials train+eval "
              f"{trials_seconds:.2f} s, overhead ratio {wall / trials_seconds:.3f} (target <= 1.10)",
              file=sys.stdout, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
