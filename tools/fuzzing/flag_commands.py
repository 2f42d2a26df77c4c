"""A valid, tiny command line for every console script and subcommand: the flag fuzzer changes one flag of it
at a time (tools/fuzzing/flag_sweep.py). Inputs are the file fuzzer's subjects (tools/fuzzing/subjects.py) and
the runs ``build_runs`` makes (a face search, a face ranking study, a gallery); outputs are relative paths, in
the case folder the command runs in.

In an argv, ``{S}`` is the subjects folder and ``{R}`` the runs folder; ``Base.copies`` are copied into the
case folder first (what a command changes in place: a run it resumes, a pack it caches, a gallery it edits).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

_DIGITS = ["--d-min", "2", "--d-max", "3", "--w-max", "6", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
           "--device", "cpu", "--threads", "1", "--no-progress"]
_FACES = ["--d-min", "4", "--d-max", "4", "--w-max", "4", "--w-min", "4", "--e-min", "1", "--micro-epochs", "1",
          "--batch-size", "8", "--workers", "0", "--embedding-size", "16", "--holdout-ids", "2", "--device", "cpu",
          "--no-progress"]
_STUDY = ["--e-min", "1", "--w-min", "2", "--w-res", "2", "--depths", "4,5,6", "--widths", "4", "--static-epochs", "1",
          "--truncated", "1", "--reference-epochs", "2", "--reference-seeds", "1", "--bootstrap", "20",
          "--holdout-ids", "2", "--embedding-size", "16", "--batch-size", "8", "--device", "cpu", "--no-progress"]
_TRAIN = ["--genotype", "{S}/result.json", "--data", "{S}/pack", "--epochs", "1", "--batch-size", "8", "--workers",
          "0", "--holdout-ids", "0", "--device", "cpu", "--no-progress"]
_FAST_ONNX = "{S}/fast.onnx"


@dataclass(frozen=True)
class Base:
    """``positionals`` (destination -> value) in the parser's order, then ``flags``; ``timeout`` in seconds."""

    positionals: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    copies: dict[str, str] = field(default_factory=dict)  # name in the case folder -> source
    # Every base runs in under 3 s on a busy core; the deadline leaves ten times that for a loaded machine.
    timeout: float = 30.0


BASES: dict[str, Base] = {
    "nas-search": Base(flags=[*_DIGITS, "--max-trials", "1", "--output", "run"]),
    "nas-train": Base(flags=["--genotype", "{S}/digits-run/result.json", "--dataset", "digits", "--epochs", "1",
                             "--device", "cpu", "--threads", "1", "--no-progress", "--output", "out"]),
    "nas-study random": Base(flags=["--run", "{S}/digits-run", "--samples", "1", "--epochs", "1", "--device", "cpu",
                                    "--threads", "1", "--no-progress", "--output", "study"]),
    "nas-study ranking": Base(flags=[*_DIGITS[:8], "--e-min", "1", "--depth-steps", "1", "--width-steps", "1",
                                     "--static-epochs", "1", "--reference-epochs", "1", "--device", "cpu",
                                     "--threads", "1", "--no-progress", "--output", "study"]),
    "facerec-search": Base(flags=[*_FACES, "--max-trials", "1", "--data", "{S}/pack", "--output", "run"], timeout=60),
    "facerec-train": Base(flags=[*_TRAIN, "--output", "out"], timeout=60),
    "facerec-export": Base(flags=["--checkpoint", "{S}/train/model.pt", "--output", "model.onnx", "--repeats", "1",
                                  "--device", "cpu", "--no-progress"], timeout=60),
    "facerec-eval": Base(flags=["--model", _FAST_ONNX, "--data", "{S}/bins", "--protocol", "lfw", "--output",
                                "result.json", "--device", "cpu", "--no-progress"]),
    "facerec-data align": Base({"photos": "{S}/faces/0", "out": "aligned"}, ["--workers", "1", "--no-progress"],
                               timeout=60),
    "facerec-data pack": Base({"image_folder": "{S}/faces", "out": "pack"}, ["--no-progress"]),
    "facerec-data unpack": Base({"pack": "{S}/pack", "out": "faces"}, ["--no-progress"]),
    "facerec-data make-bin": Base({"image_folder": "{S}/faces", "out": "pairs.bin"}, ["--pairs", "4",
                                                                                      "--no-progress"]),
    "facerec-data inspect": Base({"pack": "{S}/pack"}, ["--json"]),
    "facerec-data verify": Base({"pack": "{S}/pack"}, ["--no-progress"]),
    "facerec-data cache": Base({"pack": "pack"}, ["--workers", "1", "--no-progress"], copies={"pack": "{S}/pack"}),
    "facerec-data index": Base({"rec": "{S}/pack/train.rec", "idx": "train.idx"}),
    "facerec-import": Base(flags=["--format", "arcface_torch", "--arch", "iresnet18", "--weights",
                                  "{S}/weights/backbone.pth", "--output", "model.pt"], timeout=60),
    "facerec-embed": Base(flags=["--model", _FAST_ONNX, "--images", "{S}/faces", "--output", "faces.npz",
                                 "--device", "cpu", "--no-progress"]),
    "facerec-gallery enroll": Base({"gallery": "gallery", "photos": "{S}/faces"},
                                   ["--model", _FAST_ONNX, "--no-detect", "--device", "cpu", "--no-progress"]),
    "facerec-gallery identify": Base({"gallery": "{R}/gallery", "photos": "{S}/faces/0"},
                                     ["--model", _FAST_ONNX, "--no-detect", "--device", "cpu", "--no-progress"]),
    "facerec-gallery remove": Base({"gallery": "gallery", "names": "1"}, copies={"gallery": "{R}/gallery"}),
    "facerec-gallery list": Base({"gallery": "{R}/gallery"}, ["--json"]),
    "facerec-verify": Base({"a": "{S}/faces/0/1.jpg", "b": "{S}/faces/0/2.jpg"},
                           ["--model", _FAST_ONNX, "--no-detect", "--threshold", "0.5", "--device", "cpu"]),
    "nas-report": Base({"run": "run"}, ["--output", "report.html"], copies={"run": "{S}/digits-run"}, timeout=60),
    "facerec-report": Base({"folder": "{S}/train"}, ["--output", "report.html"], timeout=60),
    "facerec-study ranking": Base(flags=["--data", "{S}/pack", *_STUDY, "--output", "study"], timeout=90),
}

# The commands that resume, with the run they resume (under {R} unless a subject) and the command line that
# continues it: --resume RUN, or (facerec-study ranking) the same --output again.
RESUMES: dict[str, tuple[str, list[str]]] = {
    "nas-search": ("{S}/digits-run", ["--resume", "run", "--no-progress"]),
    "facerec-search": ("{R}/face-search", ["--resume", "run", "--no-progress"]),
    "facerec-train": ("{S}/train", [*_TRAIN, "--resume", "run", "--output", "run"]),  # its flags as they were
    "facerec-study ranking": ("{R}/face-study", ["--data", "{S}/pack", *_STUDY, "--output", "run"]),
}


def fill(text: str, subjects: Path, runs: Path) -> str:
    return text.replace("{S}", str(subjects)).replace("{R}", str(runs))


def copy_inputs(base: Base, case: Path, subjects: Path, runs: Path) -> None:
    for name, source in base.copies.items():
        shutil.copytree(fill(source, subjects, runs), case / name, symlinks=True)


def build_runs(argv: list[str]) -> int:
    """argv: [subjects, runs]. A finished tiny face search and face ranking study, and a gallery of the
    faces: the runs the resume cases continue and the gallery the identify/list/remove cases read."""
    import torch

    from facerec.cli.gallery import main as gallery_main
    from facerec.cli.search import main as search_main
    from facerec.cli.study import main as study_main

    torch.set_num_threads(1)
    subjects, runs = Path(argv[0]), Path(argv[1])
    steps = [
        (search_main, [fill(a, subjects, runs) for a in ["--data", "{S}/pack", *_FACES, "--max-trials", "2"]]
         + ["--output", str(runs / "face-search")]),
        (study_main, ["ranking", "--data", str(subjects / "pack"), *_STUDY, "--output", str(runs / "face-study")]),
        (gallery_main, ["enroll", str(runs / "gallery"), str(subjects / "faces"), "--model",
                        str(subjects / "fast.onnx"), "--no-detect", "--device", "cpu", "--no-progress"]),
    ]
    for main, args in steps:
        if main(args) != 0:
            return 1
    return 0
