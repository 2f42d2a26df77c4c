"""Every fuzzed input kind: the subject files a case copies, how the kind's file is mutated (menus.py), the
commands that read it and how their exit-0 result is judged (results.py).

A kind has one or more variants (commands reading the same file, e.g. ``nas-search --replay RUN`` and
``--resume RUN`` for a journal); a case draws one. A variant's ``summary`` returns what an exit-0 run
computed; after a harmless mutation, or for an ``exact`` variant after any, it must equal the unmutated
run's summary.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.fuzzing import menus, results
from tools.fuzzing.mutations import Mutation
from tools.fuzzing.runner import ChildResult, Step
from tools.fuzzing.subjects import TRAIN_ARGS, Subjects


@dataclass
class Variant:
    label: str
    steps: Callable[[Subjects, Path], list[Step]]
    summary: Callable[[Path, ChildResult], dict]
    outputs: Callable[[Path], list[Path]]
    exact: bool = False  # every exit 0 must equal the unmutated result (not only after harmless mutations)


@dataclass
class Kind:
    name: str
    reads: str  # the file(s) mutated, for the table
    copy: Callable[[Subjects, Path], None]  # the subject files into a case folder
    mutate: Callable[[Path, np.random.Generator], Mutation]
    variants: list[Variant]
    timeout: float = 60.0
    needs: Callable[[Subjects], bool] = field(default=lambda s: True)
    unstubbed: tuple[str, ...] = ()  # sweep.STUBS this kind's commands must run for real (the report they draw)


def _eval_variant(
    protocol: str, data: Callable[[Subjects, Path], Path], model: Callable[[Subjects, Path], Path]
) -> Variant:
    def steps(subjects: Subjects, case: Path) -> list[Step]:
        return [
            Step(
                "facerec.cli.eval:main",
                [
                    "--model",
                    str(model(subjects, case)),
                    "--data",
                    str(data(subjects, case)),
                    "--protocol",
                    protocol,
                    "--device",
                    "cpu",
                    "--batch-size",
                    "16",
                    "--output",
                    str(case / "out" / "result.json"),
                    "--features-out",
                    str(case / "out" / "features.npz"),
                ],
            )
        ]

    return Variant(protocol, steps, results.eval_summary(protocol), lambda case: [case / "out"])


# --- face pack: train.rec, train.idx, property -------------------------------------------------------


def _pack_steps(subjects: Subjects, case: Path) -> list[Step]:
    return [
        Step("facerec.cli.data:main", ["verify", str(case / "pack")]),
        Step("facerec.cli.data:main", ["inspect", str(case / "pack"), "--json"]),
    ]


def _copy_pack(subjects: Subjects, case: Path) -> None:
    shutil.copytree(subjects.pack, case / "pack")


# Records only pass the readers whole: a mutation that leaves a command's exit at 0 must have hit bytes
# nothing interprets (inside a JPEG, the unused IRHeader ids, padding), so the result cannot change.
_PACK_VARIANTS = [
    Variant("verify+inspect", _pack_steps, results.pack_summary, lambda case: [case / "pack"], exact=True),
    Variant(
        "unpack",
        lambda s, c: [Step("facerec.cli.data:main", ["unpack", str(c / "pack"), str(c / "out" / "faces")])],
        results.unpack_summary,
        lambda case: [case / "pack", case / "out"],
        exact=True,
    ),
]
_INDEX_VARIANT = Variant(
    "index",
    lambda s, c: [
        Step("facerec.cli.data:main", ["index", str(c / "pack" / "train.rec"), str(c / "out" / "train.idx")])
    ],
    results.index_summary,
    lambda case: [case / "out"],
    exact=True,
)


# --- evaluation inputs: .bin, IJB meta, TinyFace, model.pt, .onnx ----------------------------------------


def copy_file(source: Callable[[Subjects], Path], name: str) -> Callable[[Subjects, Path], None]:
    """Copy one subject file into CASE/in/NAME."""
    def copy(subjects: Subjects, case: Path) -> None:
        (case / "in").mkdir(parents=True)
        shutil.copyfile(source(subjects), case / "in" / name)

    return copy


def _copy_ijb(subjects: Subjects, case: Path) -> None:
    shutil.copytree(subjects.ijb, case / "IJBC")


def _copy_tinyface(subjects: Subjects, case: Path) -> None:
    shutil.copytree(subjects.tinyface, case / "tinyface")


# --- training inputs: genotype result.json, last.pt ----------------------------------------------------


def _genotype_steps(subjects: Subjects, case: Path) -> list[Step]:
    return [
        Step(
            "facerec.cli.train:main",
            [
                "--genotype",
                str(case / "in" / "result.json"),
                "--data",
                str(subjects.pack),
                "--output",
                str(case / "out"),
                "--epochs",
                "1",
                *TRAIN_ARGS,
            ],
        )
    ]


def _copy_train(subjects: Subjects, case: Path) -> None:
    (case / "train").mkdir(parents=True)
    for name in ("last.pt", "model.pt", "metrics.json"):
        shutil.copyfile(subjects.train / name, case / "train" / name)


# The subject's last.pt is rewound to the start of its one epoch: the resume reads all of it and trains that
# epoch with the saved optimizer and scheduler state.
def _resume_steps(subjects: Subjects, case: Path) -> list[Step]:
    return [
        Step(
            "facerec.cli.train:main",
            [
                "--resume",
                str(case / "train" / "last.pt"),
                "--data",
                str(subjects.pack),
                "--output",
                str(case / "train"),
                "--epochs",
                "1",
                *TRAIN_ARGS,
            ],
        )
    ]


# --- search inputs: journal.jsonl, authors' trace ------------------------------------------------------


def _copy_run(subjects: Subjects, case: Path) -> None:
    (case / "run").mkdir(parents=True)
    for name in ("settings.json", "journal.jsonl"):  # no result.json: a resume must write it anew
        shutil.copyfile(subjects.run / name, case / "run" / name)


def _replay_steps(source: Callable[[Path], Path]) -> Callable[[Subjects, Path], list[Step]]:
    return lambda subjects, case: [
        Step("nas_core.cli.search:main", ["--replay", str(source(case)), "--output", str(case / "out")])
    ]


KINDS: list[Kind] = [
    Kind("rec", "train.rec", _copy_pack, menus.rec, [*_PACK_VARIANTS, _INDEX_VARIANT]),
    Kind("idx", "train.idx", _copy_pack, menus.idx, _PACK_VARIANTS),
    Kind("property", "property", _copy_pack, menus.property, _PACK_VARIANTS[:1]),
    Kind(
        "bin",
        "lfw.bin",
        copy_file(lambda s: s.bins / "lfw.bin", "lfw.bin"),
        menus.bin,
        [_eval_variant("lfw", lambda s, c: c / "in", lambda s, c: s.fast_onnx)],
    ),
    *[
        Kind(
            name,
            ", ".join(files),
            _copy_ijb,
            menus.ijb(name),
            [_eval_variant("ijbc", lambda s, c: c / "IJBC", lambda s, c: s.fast_onnx)],
        )
        for name, files in menus.IJB_FILES.items()
    ],
    Kind(
        "tinyface",
        "TinyFace folders",
        _copy_tinyface,
        menus.tinyface,
        [_eval_variant("tinyface", lambda s, c: c / "tinyface", lambda s, c: s.fast_onnx)],
    ),
    Kind(
        "genotype",
        "result.json (facerec-train --genotype)",
        copy_file(lambda s: s.genotype, "result.json"),
        menus.genotype,
        [
            Variant(
                "train", _genotype_steps, results.train_summary(lambda c: c / "out"), lambda c: [c / "out"]
            )
        ],
        timeout=120,
    ),
    Kind(
        "model_pt",
        "model.pt (facerec-eval --model)",
        copy_file(lambda s: s.train / "model.pt", "model.pt"),
        menus.checkpoint("model.pt", harmless_keys=("config", "epoch", "val")),
        [_eval_variant("lfw", lambda s, c: s.bins, lambda s, c: c / "in" / "model.pt")],
    ),
    Kind(
        "last_pt",
        "last.pt (facerec-train --resume)",
        _copy_train,
        menus.checkpoint("last.pt"),
        [
            Variant(
                "resume", _resume_steps, results.train_summary(lambda c: c / "train"), lambda c: [c / "train"]
            )
        ],
        timeout=120,
    ),
    Kind(
        "onnx",
        "model.onnx (facerec-eval --model)",
        copy_file(lambda s: s.onnx, "model.onnx"),
        menus.onnx,
        [_eval_variant("lfw", lambda s, c: s.bins, lambda s, c: c / "in" / "model.onnx")],
    ),
    Kind(
        "journal",
        "journal.jsonl (nas-search --replay/--resume RUN)",
        _copy_run,
        menus.journal,
        [
            Variant(
                "replay",
                _replay_steps(lambda c: c / "run"),
                results.search_summary(lambda c: c / "out" / "result.json"),
                lambda c: [c / "out"],
            ),
            Variant(
                "resume",
                lambda s, c: [Step("nas_core.cli.search:main", ["--resume", str(c / "run")])],
                results.search_summary(lambda c: c / "run" / "result.json"),
                lambda c: [c / "run"],
            ),
        ],
        timeout=120,
    ),
    Kind(
        "trace",
        "authors' trace JSON (nas-search --replay)",
        copy_file(lambda s: s.trace, "trace.json"),
        menus.trace,
        [
            Variant(
                "replay",
                _replay_steps(lambda c: c / "in" / "trace.json"),
                results.search_summary(lambda c: c / "out" / "result.json"),
                lambda c: [c / "out"],
            )
        ],
        needs=lambda s: s.trace.is_file(),
    ),
]


# The newer commands' inputs (published weights, landmarks, galleries, image folders, caches, report folders,
# output paths, custom-named packs) live beside, in tools/fuzzing/user_kinds.py.
from tools.fuzzing.user_kinds import USER_KINDS  # noqa: E402  (it builds on Kind and Variant above)

KINDS += USER_KINDS
