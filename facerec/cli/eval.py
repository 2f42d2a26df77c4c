"""facerec-eval: evaluate a face model (.onnx or facenas .pt) on LFW-style packs, IJB-B/C and TinyFace.

    facerec-eval --model model.onnx --data faces_webface_112x112 --protocol lfw --output lfw.json
    facerec-eval --model model.pt --data IJB_release --protocol ijbc --output ijbc.json --features-out ijbc.npz
    facerec-eval --features-in ijbc.npz --protocol ijbc --no-detector-score   # re-score in seconds, no model
    facerec-eval --model model.pt --data packs/orl --protocol orl      # your own pairs (facerec-data make-bin)

Every .bin pack in --data is a verification set scored 10-fold (ARCHITECTURE §6): lfw, cfp_fp, cplfw,
agedb_30, calfw and any other, reported under its file's stem.
"""

from __future__ import annotations

import argparse

from facerec.deploy.options import EvalOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-eval", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, EvalOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _evaluate, hold_native_output=True)


def _evaluate(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (torch, the protocols), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.eval_job import run_eval

    return run_eval(dataclass_from_args(EvalOptions, args))


if __name__ == "__main__":
    raise SystemExit(main())
