"""The facerec-embed job: a folder of faces (aligned, or aligned here from 5-point landmarks) → flip-fused,
L2-normalised embeddings, written as an .npz and/or searched in a gallery .npz.

Every input is checked before the model runs, so a bad one fails fast and nothing is written.
"""

from __future__ import annotations

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
from facerec.deploy.options import EmbedOptions
from facerec.errors import FaceRecError
from nas_core.io import output_file
from nas_core.runlog import progress_bar


def run_embed(options: EmbedOptions) -> int:
    """Embed --images, write --output and/or print the nearest --gallery names; 0 on success."""
    # Every input is checked before the model runs, so a bad one fails fast and nothing is written.
    if not options.output and not options.gallery:
        raise FaceRecError("--output/--gallery: expected --output FILE.npz, --gallery FILE.npz or both")
    if options.top_k < 1:
        raise FaceRecError(f"--top-k {options.top_k}: expected a number of gallery names >= 1")
    if options.batch_size < 1:
        raise FaceRecError(f"--batch-size {options.batch_size}: expected a positive number of images")
    model = Path(options.model)
    if not model.is_file():
        raise FaceRecError(f"{model}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
    if options.output:
        output_file(options.output)  # a folder, a file in the way or a read-only folder fails before any work
    images = Path(options.images)
    if not images.is_dir():
        raise FaceRecError(f"{images}: expected a folder of face images, not found")
    if options.landmarks:
        names, landmarks = read_landmarks(options.landmarks, images)
    else:
        names, landmarks = find_images(images), None
    gallery = load_embeddings(options.gallery) if options.gallery else None

    embedder = load_embedder(model, device=options.device, batch_size=options.batch_size)
    crops = face_crops(images, names, landmarks, landmarks_source=options.landmarks)
    if gallery is not None:  # one face first: a gallery of another model fails before the long run
        first = next(crops)
        dim = embedder.embed(first[None], flip=options.flip).shape[1]
        if dim != gallery[1].shape[1]:
            raise FaceRecError(f"{options.gallery}: expected {dim}-d embeddings of this model, "
                               f"holds {gallery[1].shape[1]}-d")
        crops = _chain(first, crops)
    with progress_bar(total=len(names), unit="img", desc=f"embedding ({embedder.runtime})",
                      disable=not options.progress) as bar:
        embeddings = embedder.embed(crops, flip=options.flip, progress=bar)
    if options.output:
        save_embeddings(options.output, names, embeddings, model=str(model))
    if gallery is not None:
        _print_nearest(names, embeddings, gallery, options.top_k)
    # Last, once everything is written: a run that fails leaves its one error line alone on stderr.
    wrote = f"; wrote {options.output}" if options.output else ""
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
