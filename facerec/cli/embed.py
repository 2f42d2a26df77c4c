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
import sys
from pathlib import Path

from facerec.deploy.embedding import (
    face_crops,
    find_images,
    identity_of,
    load_embedder,
    load_embeddings,
    nearest,
    rank1,
    read_landmarks,
    save_embeddings,
)
from facerec.errors import FaceRecError
from nas_core.errors import run_cli
from nas_core.io import output_file
from nas_core.runlog import progress_bar


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facerec-embed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an .onnx file or a facenas .pt checkpoint")
    p.add_argument("--images", required=True, help="folder of face images (searched at any depth)")
    p.add_argument("--landmarks", help="5-point landmarks per image; embeds the images it lists, aligned")
    p.add_argument("--output", help="write names + embeddings to this .npz")
    p.add_argument("--gallery", help="an .npz from facerec-embed --output: print each image's nearest names")
    p.add_argument("--top-k", type=int, default=5, help="gallery names printed per image (default 5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="flip fusion emb(x) + emb(fliplr x) (default on)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _run(args), hold_native_output=True)


def _run(args: argparse.Namespace) -> int:
    # Every input is checked before the model runs, so a bad one fails fast and nothing is written.
    if not args.output and not args.gallery:
        raise FaceRecError("--output/--gallery: expected --output FILE.npz, --gallery FILE.npz or both")
    if args.top_k < 1:
        raise FaceRecError(f"--top-k {args.top_k}: expected a number of gallery names >= 1")
    if args.batch_size < 1:
        raise FaceRecError(f"--batch-size {args.batch_size}: expected a positive number of images")
    model = Path(args.model)
    if not model.is_file():
        raise FaceRecError(f"{model}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
    if args.output:
        output_file(args.output)  # a folder, a file in the way or a read-only folder fails before any work
    images = Path(args.images)
    if not images.is_dir():
        raise FaceRecError(f"{images}: expected a folder of face images, not found")
    if args.landmarks:
        names, landmarks = read_landmarks(args.landmarks, images)
    else:
        names, landmarks = find_images(images), None
    gallery = load_embeddings(args.gallery) if args.gallery else None

    embedder = load_embedder(model, device=args.device, batch_size=args.batch_size)
    crops = face_crops(images, names, landmarks, landmarks_source=args.landmarks)
    if gallery is not None:  # one face first: a gallery of another model fails before the long run
        first = next(crops)
        dim = embedder.embed(first[None], flip=args.flip).shape[1]
        if dim != gallery[1].shape[1]:
            raise FaceRecError(f"{args.gallery}: expected {dim}-d embeddings of this model, "
                               f"holds {gallery[1].shape[1]}-d")
        crops = _chain(first, crops)
    with progress_bar(total=len(names), unit="img", desc=f"embedding ({embedder.runtime})") as bar:
        embeddings = embedder.embed(crops, flip=args.flip, progress=bar)
    if args.output:
        save_embeddings(args.output, names, embeddings, model=str(model))
    if gallery is not None:
        _print_nearest(names, embeddings, gallery, args.top_k)
    # Last, once everything is written: a run that fails leaves its one error line alone on stderr.
    wrote = f"; wrote {args.output}" if args.output else ""
    print(f"embedded {len(names)} images ({embeddings.shape[1]}-d) with {embedder.runtime}{wrote}", file=sys.stderr)
    return 0


def _chain(first, rest):
    yield first
    yield from rest


def _print_nearest(names: list[str], embeddings, gallery: tuple, top_k: int) -> None:
    gallery_names, gallery_embeddings = gallery
    indices, scores = nearest(embeddings, gallery_embeddings, top_k)
    for name, row, row_scores in zip(names, indices, scores):
        hits = "\t".join(f"{gallery_names[int(i)]} {s:.4f}" for i, s in zip(row, row_scores))
        print(f"{name}\t{hits}")
    result = rank1(names, gallery_names, indices[:, 0])
    if result is not None:
        accuracy, hits, counted = result
        print(f"rank-1: {accuracy:.4f} ({hits} of {counted} images whose identity, the parent folder, "
              f"is in the gallery)")
    elif all(identity_of(n) for n in names):
        print("rank-1: none of these identities is in the gallery")


if __name__ == "__main__":
    raise SystemExit(main())
