"""facerec-export: checkpoint → ONNX (dynamic batch), checked against torch with onnxruntime.

    facerec-export --checkpoint OUT/model.pt --output model.onnx [--data PACK] [--tolerance 1e-4] [--device auto]
    facerec-export --checkpoint OUT/model.pt --output model-int8.onnx --precision int8 \\
        --calibration PACK --check-bin heldout/orl.bin [--max-drop 0.5]

Parity: per sample, ‖onnxruntime − torch‖₂ ≤ tolerance·‖torch‖₂ (plus a 1e-6 absolute floor) on a random
batch and on face images from --data / --calibration; exit 1 and nothing written when a sample fails.
fp16 / int8: the verification accuracy on --check-bin of fp32 and of the reduced model (facerec-eval's
numbers), exit 1 and nothing written when it drops by more than --max-drop points; and the onnxruntime
latency of both. fp16 is checked with onnxruntime's CUDA provider, else its CPU provider; where neither
runs it, it is written unverified with a line saying so (it is made for GPUs, and its fp32 source
passed the parity check).
"""

from __future__ import annotations

import argparse

from facerec.deploy.options import ExportOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-export", description=__doc__.split("\n\n")[0])
    # Values are checked by the job (one-line errors naming the file, exit 2).
    add_dataclass_args(parser, ExportOptions)
    # The flag's name before --batch-size, kept for existing scripts; hidden from --help.
    parser.add_argument("--batch", dest="batch_size", type=int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _export, hold_native_output=True)


def _export(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (torch, onnx), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.export_job import run_export

    return run_export(dataclass_from_args(ExportOptions, args))


if __name__ == "__main__":
    raise SystemExit(main())
