"""facerec-data: pack image folders into InsightFace RecordIO, unpack, inspect, verify, rebuild a lost
.idx, and build .bin verification packs (ARCHITECTURE §5).

    facerec-data align PHOTOS OUT [--faces largest|all] [--min-face 20] [--min-score 0.9] [--workers N] [--strict]
    facerec-data pack IMAGE_FOLDER [IMAGE_FOLDER ...] OUT [--image-size 112] [--quality 95] [--limit-ids N]
    facerec-data unpack DIR OUT
    facerec-data inspect DIR [--json]
    facerec-data verify DIR
    facerec-data cache DIR [--workers N] [--restart] [--no-progress]
    facerec-data index REC [IDX]
    facerec-data make-bin IMAGE_FOLDER OUT.bin --pairs N [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas_core.command import CommandParser, cpu_count, run_command
from nas_core.config_args import cpu_threads

_PACK = "face pack folder (train.rec, train.idx, property) or its .rec file"
_IMAGE_FOLDER = "image folder, one sub-folder of images per identity"


def _add_pack(p: argparse.ArgumentParser) -> None:
    p.add_argument("pack", type=Path, help=_PACK)


def _add_image_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, default=112, help="square side in pixels (default 112)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar, drawn on a terminal only (default on; --no-progress hides it)")


def _add_pack_commands(commands) -> None:
    p = commands.add_parser("pack", help="image folder(s) (one sub-folder per identity) -> train.rec/.idx/property",
                            description="Faces not already at the image size are scaled to fit (aspect kept) and "
                                        "padded by edge replication (pack.json records the rule): give it aligned "
                                        "faces (facerec-data align turns photos into them). Identities are "
                                        "numbered in natural folder order (s2 before s10), folder after folder; "
                                        "their names go to identities.txt (FOLDER/identity when several folders "
                                        "are packed together), a summary to pack.json.")
    p.add_argument("image_folder", type=Path, nargs="+",
                   help=f"{_IMAGE_FOLDER}; several are packed as one set of distinct identities")
    p.add_argument("out", type=Path, help="output folder (InsightFace layout)")
    _add_image_format(p)
    p.add_argument("--identities-from", type=int, default=0, help="first identity (natural folder order)")
    p.add_argument("--identities-to", type=int, default=None, help="stop before this identity")
    p.add_argument("--limit-ids", type=int, default=None, help="keep only the first N selected identities")
    _add_progress(p)

    p = commands.add_parser("unpack", help="pack -> image folder (the stored JPEG bytes, not re-encoded)")
    _add_pack(p)
    p.add_argument("out", type=Path, help="new folder")
    _add_progress(p)

    p = commands.add_parser("make-bin", help="image folder -> .bin verification pack of balanced pairs")
    p.add_argument("image_folder", type=Path, help=_IMAGE_FOLDER)
    p.add_argument("out", type=Path, help=".bin file to write")
    p.add_argument("--pairs", type=int, required=True, help="number of pairs (half same, half different)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair sampling (default 0)")
    p.add_argument("--sampling", choices=("images", "people"), default="images",
                   help="images (default): uniform over all distinct pairs, so people with many images make most "
                        "same pairs; people: every person alike (a person, then two of their images; two people, "
                        "then an image of each), as LFW's pair lists")
    _add_image_format(p)
    _add_progress(p)


def _add_align(commands) -> None:
    p = commands.add_parser("align", help="photos -> detected, 5-point aligned 112x112 faces (same layout)",
                            description="Detects faces (MTCNN, weights inside facenet-pytorch), keeps the largest "
                                        "(or all), aligns each onto the ArcFace 112x112 template and writes "
                                        "OUT/<same sub-folders>/<photo>.jpg, ready for pack and make-bin. Photos "
                                        "without a usable face are skipped and listed with the reason in "
                                        "OUT/align.json. Journaled in OUT/align.jsonl: a rerun continues.")
    p.add_argument("photos", type=Path, help="photo folder: one sub-folder per person (any depth), or flat")
    p.add_argument("out", type=Path, help="output folder (new, or an earlier align run's to continue it)")
    p.add_argument("--faces", default="largest", metavar="{largest,all}",
                   help="faces kept per photo: the largest (default) or all, written as <photo>_<k>.jpg")
    p.add_argument("--min-face", type=int, default=20, help="smallest face kept, in pixels (default 20)")
    p.add_argument("--min-score", type=float, default=0.9, help="lowest detector score kept (default 0.9)")
    p.add_argument("--detector", default="mtcnn", help="face detector (default mtcnn)")
    p.add_argument("--workers", type=int, default=1, help="detector processes, one thread each (default 1)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the aligned faces (default 95)")
    p.add_argument("--strict", action="store_true", help="stop (exit 2) at the first photo without a usable face")
    _add_progress(p)


def _add_pack_checks(commands) -> None:
    p = commands.add_parser("inspect", help="images, identities, image size, images per identity")
    _add_pack(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = commands.add_parser("verify", help="decode every record; exit 2 at the first bad one")
    _add_pack(p)
    _add_progress(p)

    p = commands.add_parser("cache", help="decode every image once into DIR/cache (uint8 memmap) for fast training",
                            description="Writes DIR/cache/images.u8 (uint8 N x H x W x 3 RGB), labels.npy and "
                                        "cache.json (ARCHITECTURE §8); CASIA-WebFace takes 18.5 GB. A killed build "
                                        "rerun continues where it stopped. facerec-train and facerec-search use "
                                        "the cache when present (--no-cache: not).")
    _add_pack(p)
    p.add_argument("--workers", type=cpu_threads, default=cpu_count(), help="decoding threads, at most the CPUs "
                                                                            "(default: CPUs)")
    p.add_argument("--restart", action="store_true", help="start again instead of continuing a killed build")
    p.add_argument("--chunk", type=int, default=1024, help="images decoded between two progress records "
                                                           "(default 1024)")
    _add_progress(p)

    p = commands.add_parser("index", help="rebuild a lost .idx by scanning the .rec")
    p.add_argument("rec", type=Path, help="RecordIO .rec file")
    p.add_argument("idx", type=Path, nargs="?", default=None, help="index to write (default: REC with suffix .idx)")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_align(commands)
    _add_pack_commands(commands)
    _add_pack_checks(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _run, hold_native_output=True)


def _run(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (NumPy, OpenCV, the readers), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.data.jobs import run_data_command

    return run_data_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
