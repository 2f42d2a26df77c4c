"""facerec-import: published IResNet / MobileFaceNet weights (arcface_torch, AdaFace) → a facenas checkpoint.

    facerec-import --format arcface_torch --arch iresnet50 --weights backbone.pth --output r50.pt
    facerec-import --format arcface_torch --arch mobilefacenet --weights backbone.pth --output mbf.pt
    facerec-import --format adaface --arch iresnet100 --weights adaface_ir101_webface12m.ckpt --output ir101.pt

The checkpoint rebuilds itself like any facenas one: facerec-eval --model, facerec-export
--checkpoint and facerec-train --init take it. An AdaFace net is converted to take RGB input like every
facenas model; it outputs AdaFace's embedding before AdaFace's own L2 normalisation.
"""

from __future__ import annotations

import argparse

from facerec.deploy.options import ImportOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-import", description=__doc__.split("\n\n")[0])
    add_dataclass_args(parser, ImportOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _import, hold_native_output=True)


def _import(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (torch, the backbones), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.import_job import run_import

    return run_import(dataclass_from_args(ImportOptions, args))


if __name__ == "__main__":
    raise SystemExit(main())
