"""facerec-verify: are the faces in two photos the same person? One line, at the model's calibrated threshold.

    facerec-verify alice_1.jpg alice_2.jpg --model OUT/model.pt
    facerec-verify a.jpg b.jpg --model model.onnx --json
    facerec-verify a_112.png b_112.png --model model.onnx --no-detect --threshold 0.3

Each photo (any size) goes through face detection; its largest face is aligned on the ArcFace template and
embedded (flip-fused, L2-normalised), and the two faces are the same person iff their cosine >= the threshold:
--threshold T, else the one calibrated with the model (facerec-train records it in model.pt, calibrated at
--far on the held-out identities' pairs; facerec-export copies it into the .onnx). Prints e.g.

    same person: yes  cosine 0.6132 >= threshold 0.3120 (calibrated at FAR 0.001 on 3000 held-out pairs)

Exit 0 for yes and for no; exit 2 with one line when a photo holds no face, the model carries no threshold and
none is given, or an input is bad. Nothing is written.
"""

from __future__ import annotations

import argparse

from facerec.deploy.verify_options import VerifyOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-verify", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", metavar="A", help="a photo (or with --no-detect an aligned 112x112 face)")
    parser.add_argument("b", metavar="B", help="the photo to compare it with")
    add_dataclass_args(parser, VerifyOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _verify, hold_native_output=True)


def _verify(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (torch, OpenCV, onnxruntime), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.verify_job import run_verify

    return run_verify(dataclass_from_args(VerifyOptions, args, a=args.a, b=args.b))


if __name__ == "__main__":
    raise SystemExit(main())
