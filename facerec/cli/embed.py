"""facerec-embed: embed a folder of face images with an .onnx or facenas .pt model, and search a gallery.

    facerec-embed --model model.onnx --images gallery/ --output gallery.npz
    facerec-embed --model model.pt --images photos/ --landmarks photos_5pts.txt --output photos.npz
    facerec-embed --model model.onnx --images queries/ --gallery gallery.npz --top-k 5

Names are the image paths relative to --images (every .jpg/.jpeg/.png/.pgm/.bmp at any depth, in natural
order); the identity of a name is its parent folder. Embeddings are flip-fused (emb(x) + emb(fliplr x))
and L2-normalised, so the cosine of two faces is their dot product. Without --landmarks every image must
be a 112x112 aligned face; with it, the images it lists are aligned on the ArcFace template exactly as
IJB evaluation aligns them (lines 'path x1 y1 ... x5 y5 [score]': left eye, right eye, nose, mouth
corners; IJB's <t>_name_5pts_score.txt works as it is). --output writes an .npz of 'names' and
'embeddings'. --gallery prints, per image, the --top-k gallery names with their cosine, and rank-1
accuracy when names carry identities.
"""

from __future__ import annotations

import argparse

from facerec.deploy.options import EmbedOptions
from nas_core.command import CommandParser, run_command
from nas_core.config_args import add_dataclass_args, dataclass_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="facerec-embed", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, EmbedOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _embed, hold_native_output=True)


def _embed(args: argparse.Namespace) -> int:
    # The command's one deliberate lazy import (torch, OpenCV, onnxruntime), made inside run_cli so that what
    # it prints is held like the job's own output; --help and flag errors never pay for it.
    from facerec.deploy.embed_job import run_embed

    return run_embed(dataclass_from_args(EmbedOptions, args))


if __name__ == "__main__":
    raise SystemExit(main())
