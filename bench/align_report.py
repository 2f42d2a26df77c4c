"""Detection and alignment of everyday photos: how many photos of ``raw_faces`` give a face, why the others do
not, and how fast ``facerec-data align`` goes with 1 and 2 worker processes (the ratio measured in one run).

    python bench/align_report.py                       # all of raw_faces (journaled: a rerun continues)
    python bench/align_report.py --speed-photos 2000   # the 1 vs 2 worker timing on an evenly spaced sample
    python bench/align_report.py --table               # print the README table from the JSON

The full run aligns into ``--aligned`` (default runs/raw_faces_aligned, the folder README's "From photos"
section packs), so this bench also prepares the training data. Writes bench/results/align_report.json.
Targets (issue "From everyday photos"): >= 97 % of photos with a face found; >= 1.7x photos/s at 2 workers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerec.photos.align_folder import AlignSettings, find_photos, run_align  # noqa: E402
from nas_core.io import atomic_write_json  # noqa: E402
from tools.shared_data import repo_relative, shared_data  # noqa: E402

RESULT = ROOT / "bench" / "results" / "align_report.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=None, help="photo folder (default: shared raw_faces)")
    p.add_argument("--aligned", type=Path, default=ROOT / "runs" / "raw_faces_aligned",
                   help="where the full run writes the aligned faces (default runs/raw_faces_aligned)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the full run (default 2)")
    p.add_argument("--speed-photos", type=int, default=2000,
                   help="photos in the 1 vs 2 worker timing (0: skip it; default 2000)")
    p.add_argument("--skip-full", action="store_true", help="only the timing; keep the full run's figures")
    p.add_argument("--table", action="store_true", help="print the README table from the JSON and stop")
    return p


def _full(photos: Path, aligned: Path, workers: int) -> dict:
    summary = run_align(photos, aligned, AlignSettings(), workers=workers)
    shown = repo_relative(aligned)
    return {"command": f"facerec-data align SHARED/raw_faces {shown} --workers {workers}",
            "photos": summary["photos"], "aligned_photos": summary["aligned_photos"], "faces": summary["faces"],
            "detection_rate": summary["detection_rate"], "skipped": summary["skipped"],
            "sets": {name: {k: v for k, v in s.items()} for name, s in summary["sets"].items()},
            "misses": summary["misses"], "misses_listed_in": f"{shown}/align.json"}


def _speed(photos: Path, count: int) -> dict:
    """Photos/s of a fresh alignment of the same evenly spaced sample with 1, then 2 workers (wall time,
    process start-up included), each into its own temporary folder."""
    names = find_photos(photos)
    step = max(1, len(names) // count)
    sample = names[::step][:count]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="align_speed_") as tmp:
        src = Path(tmp) / "photos"
        for name in sample:
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photos / name, target)
        for workers in (1, 2):
            tic = time.perf_counter()
            run_align(src, Path(tmp) / f"out{workers}", AlignSettings(), workers=workers, progress=False)
            seconds = time.perf_counter() - tic
            rows[str(workers)] = {"seconds": round(seconds, 2), "photos_per_second": round(len(sample) / seconds, 2)}
    ratio = rows["2"]["photos_per_second"] / rows["1"]["photos_per_second"]
    return {"photos": len(sample), "workers": rows, "ratio_2_over_1": round(ratio, 3)}


def table(result: dict) -> str:
    full, speed = result.get("full"), result.get("speed")
    lines = []
    if full:
        lines += ["| set | photos | face found | rate | no face | too small | low score | off the photo | "
                  "unreadable, empty, truncated or failed |", "|---|---|---|---|---|---|---|---|---|"]
        for name, s in [*full["sets"].items(), ("all", {**full, "aligned": full["aligned_photos"]})]:
            k = s["skipped"]
            bad = sum(k.get(r, 0) for r in ("unreadable", "empty file", "truncated JPEG", "the detector failed on it"))
            lines.append(f"| {name} | {s['photos']:,} | {s['aligned']:,} | {100 * s['detection_rate']:.2f} % | "
                         f"{k['no face found']} | {k['faces smaller than --min-face']} | "
                         f"{k['faces scored below --min-score']} | {k.get('face points far outside the photo', 0)} "
                         f"| {bad} |")
    if speed:
        one, two = speed["workers"]["1"], speed["workers"]["2"]
        lines += ["", f"Speed on {speed['photos']:,} photos (wall time, start-up included): 1 worker "
                      f"{one['photos_per_second']:.1f} photos/s, 2 workers {two['photos_per_second']:.1f} photos/s: "
                      f"**{speed['ratio_2_over_1']:.2f}x** ({result.get('machine', '')})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.table:
        print(table(json.loads(RESULT.read_text())))
        return 0
    photos = shared_data("raw_faces", args.photos, "--photos")
    result = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    import os

    result["machine"] = f"{os.cpu_count()} CPU cores"
    if not args.skip_full:
        result["full"] = _full(photos, args.aligned, args.workers)
        atomic_write_json(RESULT, result)
    if args.speed_photos > 0:
        result["speed"] = _speed(photos, args.speed_photos)
        atomic_write_json(RESULT, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
