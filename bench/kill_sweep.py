"""Kill anywhere, resume to the same result: each long command is killed at exact points (nas_core.faults:
after a journaled trial, after a training step, between a checkpoint's temporary file and its rename; and
for facerec-train stopped by SIGTERM / Ctrl-C), resumed, and compared with an uninterrupted run.

    python bench/kill_sweep.py                                   # all commands (~30-40 min on 2 busy CPUs)
    python bench/kill_sweep.py --commands facerec-train --workdir /tmp/sweep --keep

Prints, per command, the kill points, how many runs died there, and how many resumed runs reproduced the
uninterrupted one: searches the same journal (trials, fitness, seeds; not timings) and result, facerec-train
the same model.pt and final last.pt weights bit for bit. facerec-train also counts resumes with a changed
--epochs / --batch-size / --data refused with exit 2 naming the flag. Every run is a subprocess on one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILLED = 137  # nas_core.faults.KILLED_STATUS
NAS_SEARCH_FLAGS = ["--d-min", "2", "--d-max", "3", "--w-max", "6", "--w-min", "4", "--e-min", "1",
                    "--micro-epochs", "1", "--device", "cpu"]
FACE_SEARCH_FLAGS = ["--size", "small", "--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "6",
                     "--micro-epochs", "1", "--max-trials", "5", "--embedding-size", "32", "--device", "cpu",
                     "--no-progress"]
FACE_TRAIN_STEPS = 18  # 48 images of the tiny pack, batch 8, 3 epochs
FACE_TRAIN_FLAGS = ["--batch-size", "8", "--lr", "0.05", "--holdout-ids", "2", "--epochs", "3",
                    "--checkpoint-every", "4", "--device", "cpu", "--no-progress"]


@dataclass
class Point:
    name: str
    env: dict[str, str]
    status: int = KILLED  # exit status of the interrupted run: 137 killed, 143 SIGTERM, 130 Ctrl-C


@dataclass
class Tally:
    command: str
    points: int = 0
    interrupted: int = 0
    identical: int = 0
    refused: int = 0  # resumes with a changed setting refused (facerec-train)
    refusals: int = 0
    failures: list[str] = field(default_factory=list)


def run(module: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    fault_free = {k: v for k, v in os.environ.items() if not k.startswith("FACENAS_")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, env={**fault_free, "OMP_NUM_THREADS": "1", **(env or {})})


def spread(total: int, count: int) -> list[int]:
    """``count`` distinct steps spread over 1..total (both ends included)."""
    return sorted({max(1, min(total, round(1 + k * (total - 1) / (count - 1)))) for k in range(count)})


def untimed(value):
    """``value`` without what differs between two runs of the same thing: times and durations."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("seconds", "time") and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def journal(run_dir: Path) -> list[dict]:
    return [untimed(json.loads(line)) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


def result(run_dir: Path) -> dict:
    return untimed(json.loads((run_dir / "result.json").read_text()))


def state_dicts(path: Path, keys: tuple[str, ...]) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {key: ckpt[key] for key in keys}


def same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# --- the commands ----------------------------------------------------------------------------------------------

class NasSearch:
    name, module = "nas-search", "nas_core.cli.search"

    def new(self, folder: Path) -> list[str]:
        return [*NAS_SEARCH_FLAGS, "--output", str(folder)]

    def resume(self, folder: Path) -> list[str]:
        return ["--resume", str(folder)]

    def outcome(self, folder: Path):
        return journal(folder), result(folder)

    def points(self, straight: Path) -> list[Point]:
        from nas_core.classify.datasets import load_dataset

        records = journal(straight)
        train = len(load_dataset("digits", None, val_fraction=0.1).train_labels)
        batches = math.ceil(train / 64) - (1 if train % 64 == 1 and train > 64 else 0)  # nas_core.train._batches
        steps = sum(r["epochs"] for r in records) * batches
        return _trial_points(len(records)) + _step_points(steps, 5) + [
            Point("write settings.json (2nd, with the space)", {"FACENAS_FAIL_IN_WRITE": "settings.json:2"}),
            Point("write result.json", {"FACENAS_FAIL_IN_WRITE": "result.json:1"})]


class FaceSearch:
    name, module = "facerec-search", "facerec.cli.search"

    def new(self, folder: Path) -> list[str]:
        return [*FACE_SEARCH_FLAGS, "--output", str(folder)]

    def resume(self, folder: Path) -> list[str]:
        return ["--resume", str(folder), "--no-progress"]

    def outcome(self, folder: Path):
        return journal(folder), result(folder), state_dicts(folder / "model.pt", ("model",))

    def points(self, straight: Path) -> list[Point]:
        records, found = journal(straight), result(straight)
        steps_per_epoch = found["data"]["train_images"] // found["options"]["batch_size"]
        steps = sum(r["epochs"] for r in records) * steps_per_epoch
        from nas_core.genotype import Genotype

        first = f"{Genotype.from_dict(records[0]['genotype']).key()}-e{records[0]['epochs']}.pt"
        return _trial_points(len(records)) + _step_points(steps, 5) + [
            Point(f"write trials/{first}", {"FACENAS_FAIL_IN_WRITE": f"{first}:1"}),
            Point("write model.pt", {"FACENAS_FAIL_IN_WRITE": "model.pt:1"}),
            Point("write result.json", {"FACENAS_FAIL_IN_WRITE": "result.json:1"})]


class FaceTrain:
    module = "facerec.cli.train"

    def __init__(self, workdir: Path, workers: int):
        self.name = f"facerec-train --workers {workers}"
        self.workers = workers
        self.pack, self.genotype = _face_train_inputs(workdir)

    def new(self, folder: Path, pack: Path | None = None) -> list[str]:
        return ["--genotype", str(self.genotype), "--data", str(pack or self.pack), "--output", str(folder),
                "--workers", str(self.workers), *FACE_TRAIN_FLAGS]

    def resume(self, folder: Path) -> list[str]:
        return [*self.new(folder), "--resume", str(folder)]

    def outcome(self, folder: Path):
        metrics = json.loads((folder / "metrics.json").read_text())
        return (state_dicts(folder / "model.pt", ("model",)), state_dicts(folder / "last.pt", ("model", "head", "optimizer")),
                [(e["step"], e["loss"], e["score"]) for e in metrics["epochs"]])

    def points(self, straight: Path) -> list[Point]:
        # last.pt after steps 4, 6 (epoch end), 8, 12 (epoch end), 16, 18 (end); 6 steps an epoch.
        steps = [Point(f"step {s}", {"FACENAS_FAIL_AFTER_STEPS": str(s)}) for s in (3, 4, 6, 10, 12, 17)]
        if self.workers:
            return steps + [Point("write last.pt (3rd: step 8)", {"FACENAS_FAIL_IN_WRITE": "last.pt:3"})]
        writes = [Point(f"write {name}", {"FACENAS_FAIL_IN_WRITE": name})
                  for name in ("last.pt:1", "last.pt:2", "last.pt:3", "model.pt:1", "metrics.json:2")]
        stops = [Point("SIGTERM after step 9", {"FACENAS_SIGNAL_AFTER_STEPS": "9"}, status=143),
                 Point("Ctrl-C after step 14", {"FACENAS_SIGNAL_AFTER_STEPS": "14:INT"}, status=130)]
        return steps + writes + stops

    def refusals(self, straight: Path, workdir: Path) -> list[tuple[str, list[str]]]:
        other = workdir / "other_pack"
        if not other.exists():
            shutil.copytree(self.pack, other)
        args = self.resume(straight)
        return [("--epochs", _replace(args, "--epochs", "4")), ("--batch-size", _replace(args, "--batch-size", "16")),
                ("--data", _replace(args, "--data", str(other)))]


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _face_train_inputs(workdir: Path) -> tuple[Path, Path]:
    from facerec.data.demo import demo_pack
    from nas_core.genotype import Genotype

    pack = demo_pack(workdir / "pack", num_identities=8, images_per_identity=8)
    genotype = workdir / "genotype.json"
    genotype.write_text(json.dumps({"genotype": Genotype.uniform(4, 4).to_dict(), "space": {"embedding_size": 64}}))
    return pack, genotype


def _trial_points(trials: int) -> list[Point]:
    return [Point(f"trial {n}", {"FACENAS_FAIL_AFTER_TRIALS": str(n)}) for n in range(1, trials + 1)]


def _step_points(steps: int, count: int) -> list[Point]:
    return [Point(f"step {s}", {"FACENAS_FAIL_AFTER_STEPS": str(s)}) for s in spread(steps, count)]


# --- the sweep ----------------------------------------------------------------------------------------------------

def sweep(command, workdir: Path, log=print) -> Tally:
    """Run ``command`` uninterrupted, then killed at each of its points and resumed; compare the outcomes."""
    workdir.mkdir(parents=True, exist_ok=True)
    tally = Tally(command.name)
    straight = workdir / "straight"
    proc = run(command.module, command.new(straight))
    if proc.returncode != 0:
        raise RuntimeError(f"{command.name}: the uninterrupted run failed:\n{proc.stderr[-3000:]}")
    expected = command.outcome(straight)
    for i, point in enumerate(command.points(straight)):
        tic = time.perf_counter()
        failure = _kill_and_resume(command, point, workdir / f"kill{i:02d}", expected)
        tally.points += 1
        tally.interrupted += failure is None or not failure.startswith("interrupted:")
        tally.identical += failure is None
        if failure is not None:
            tally.failures.append(f"{point.name}: {failure}")
        log(f"  {command.name}: {point.name}: {failure or 'identical'} ({time.perf_counter() - tic:.0f} s)")
    for flag, args in getattr(command, "refusals", lambda *_: [])(straight, workdir):
        tally.refusals += 1
        proc = run(command.module, args)
        lines = proc.stderr.strip().splitlines()
        if proc.returncode == 2 and len(lines) == 1 and f"expected {flag} " in lines[0]:
            tally.refused += 1
        else:
            tally.failures.append(f"resume with a changed {flag}: exit {proc.returncode}: {proc.stderr[-300:]}")
    return tally


def _kill_and_resume(command, point: Point, folder: Path, expected) -> str | None:
    """None when the run died at ``point`` and its resume reproduced ``expected``; else what went wrong."""
    proc = run(command.module, command.new(folder), point.env)
    if proc.returncode != point.status:
        return f"interrupted: exit {proc.returncode}, expected {point.status} ({proc.stderr[-300:]})"
    proc = run(command.module, command.resume(folder))
    if proc.returncode != 0:
        return f"the resume exited {proc.returncode} ({proc.stderr[-300:]})"
    if not same(command.outcome(folder), expected):
        return "the resumed run differs from the uninterrupted one"
    return None


def commands(names: list[str], workdir: Path) -> list:
    table = {"nas-search": lambda: [NasSearch()], "facerec-search": lambda: [FaceSearch()],
             "facerec-train": lambda: [FaceTrain(workdir, 0), FaceTrain(workdir, 2)]}
    return [c for name in names for c in table[name]()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commands", default="nas-search,facerec-search,facerec-train",
                   help="comma-separated: nas-search, facerec-search, facerec-train")
    p.add_argument("--workdir", help="where the runs go (default: a temporary folder, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the run folders")
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kill_sweep."))
    tallies = []
    try:
        for command in commands(args.commands.split(","), workdir):
            print(f"{command.name}: sweeping", flush=True)
            tallies.append(sweep(command, workdir / command.name.replace(" ", "_").replace("--", ""),
                                 log=lambda line: print(line, flush=True)))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{'command':28s} {'kill points':>11s} {'interrupted':>11s} {'identical resumes':>17s} {'changed settings refused':>24s}")
    for t in tallies:
        refused = f"{t.refused}/{t.refusals}" if t.refusals else "-"
        print(f"{t.command:28s} {t.points:11d} {t.interrupted:11d} {t.identical:17d} {refused:>24s}")
    for t in tallies:
        for failure in t.failures:
            print(f"FAILED {t.command}: {failure}")
    return 0 if all(not t.failures for t in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
