"""facerec-gallery: enroll people's photos into a gallery folder, identify faces against it, remove people, list.

    facerec-gallery enroll GALLERY --model M PHOTOS               # PHOTOS/<person>/*.jpg, one sub-folder each
    facerec-gallery enroll GALLERY --model M --person NAME PHOTO_OR_FOLDER...
    facerec-gallery identify GALLERY --model M PHOTO_OR_FOLDER... [--top-k 5] [--threshold T] [--json]
    facerec-gallery remove GALLERY NAME...
    facerec-gallery list GALLERY [--json]

Photos are everyday photos: each goes through face detection (MTCNN) and 5-point alignment to 112x112, and
enroll keeps the largest face (identify: --faces all takes every face). --no-detect: the photos are already
aligned 112x112 faces. A gallery is one model's: enroll and identify refuse a --model other than the one it
was built with (sha256 fingerprint of the model file). identify lists the top-k people per face, a person
scoring the best cosine over their enrolled faces, and calls the best one "unknown" below the threshold
(--threshold, else the one calibrated with the model). GALLERY holds gallery.npz (the rows), gallery.json
and index.faiss (exact inner product by default; --index hnsw or ivf: approximate, for large galleries).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas_core.command import CommandParser, run_command

INDEX_KINDS = ("flat", "hnsw", "ivf")  # facerec.deploy.gallery_files.INDEX_KINDS (tests check they agree)
FACE_POLICIES = ("largest", "all")  # facerec.photos.detect.FACE_POLICIES
_GALLERY = "gallery folder (gallery.npz, gallery.json, index.faiss)"


def _add_model_and_faces(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True,
                   help="face model (.onnx or facenas .pt): the one the gallery was built with")
    p.add_argument("--no-detect", dest="detect", action="store_false",
                   help="the photos are already aligned 112x112 faces: no detection, no alignment")
    p.add_argument("--min-face", type=int, default=20,
                   help="smallest face kept, in pixels (the box's shorter side; default 20)")
    p.add_argument("--min-score", type=float, default=0.9, help="smallest detector score kept (default 0.9)")
    p.add_argument("--device", default="auto",
                   help="where the detector and model run: auto (cuda when there is one, else cpu), cpu, cuda, "
                        "cuda:N")
    p.add_argument("--batch-size", type=int, default=64, help="faces embedded per forward pass (default 64)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar, drawn on a terminal only (default on; --no-progress hides it)")


def _add_enroll(commands) -> None:
    p = commands.add_parser(
        "enroll", help="add people's photos to a gallery (created when absent)",
        description="PHOTOS is a folder with one sub-folder of photos per person (the person's name is the "
                    "sub-folder's), or with --person NAME, photos (files or folders) of that one person. One "
                    "embedding per photo, of its largest face. A photo without a usable face is skipped and "
                    "counted (--strict: exit 2 and write nothing). A photo already enrolled for the same person "
                    "is not added again.")
    p.add_argument("gallery", type=Path, help=_GALLERY)
    p.add_argument("photos", type=Path, nargs="+",
                   help="a folder of one sub-folder per person; with --person, photos or folders of photos")
    p.add_argument("--person", default=None, help="enroll PHOTOS as this one person")
    _add_model_and_faces(p)
    p.add_argument("--strict", action="store_true", help="a photo without a usable face is an error (exit 2)")
    p.add_argument("--index", choices=INDEX_KINDS, default=None,
                   help="faiss index: flat (exact inner product, the default of a new gallery), hnsw or ivf "
                        "(approximate, for large galleries); default: the gallery's own")


def _add_identify(commands) -> None:
    p = commands.add_parser(
        "identify", help="the top-k enrolled people of each face in photos",
        description="Per photo (per face with --faces all): the --top-k people, each scored by the best cosine "
                    "over their enrolled faces. The best is reported as unknown when it scores below the "
                    "threshold: --threshold, else the one calibrated with the model (facerec-train records it). "
                    "Without either the top-k are listed and no face is called unknown.")
    p.add_argument("gallery", type=Path, help=_GALLERY)
    p.add_argument("photos", type=Path, nargs="+", help="photos, or folders of photos (any depth)")
    _add_model_and_faces(p)
    p.add_argument("--top-k", type=int, default=5, help="people listed per face (default 5)")
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine below which the best person is 'unknown' (default: the model's calibrated one)")
    p.add_argument("--faces", choices=FACE_POLICIES, default="largest",
                   help="largest: the largest face of each photo (default); all: every face")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _add_remove_and_list(commands) -> None:
    p = commands.add_parser("remove", help="remove people (all their faces) from a gallery")
    p.add_argument("gallery", type=Path, help=_GALLERY)
    p.add_argument("names", nargs="+", help="people to remove, as enrolled")

    p = commands.add_parser("list", help="the people of a gallery, faces each, its model and index")
    p.add_argument("gallery", type=Path, help=_GALLERY)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-gallery", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_enroll(commands)
    _add_identify(commands)
    _add_remove_and_list(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, hold_native_output=True)


def _run(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (NumPy, faiss, torch, OpenCV), made inside run_cli so that what it
    # prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.gallery_job import run_gallery_command

    return run_gallery_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
