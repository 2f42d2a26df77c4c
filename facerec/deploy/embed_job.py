"""The facerec-embed job: a folder of faces (aligned, or aligned here from 5-point landmarks) → flip-fused,
L2-normalised embeddings, written as an .npz and/or searched in a gallery .npz.

Every input is checked before the model runs, so a bad one fails fast and nothing is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from facerec.deploy.embedding import (
    check_model_file,
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
from facerec.photos.detect import check_face_flags, command_detector, faces_in_photos
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
    model = check_model_file(options.model)
    if options.output:
        output_file(options.output)  # a folder, a file in the way or a read-only folder fails before any work
    images = Path(options.images)
    if not images.is_dir():
        raise FaceRecError(f"{images}: expected a folder of face images, not found")
    _check_detect_flags(options)
    if options.landmarks:
        names, landmarks = read_landmarks(options.landmarks, images)
    else:
        names, landmarks = find_images(images), None
    gallery = load_embeddings(options.gallery) if options.gallery else None

    embedder = load_embedder(model, device=options.device, batch_size=options.batch_size)
    with progress_bar(total=len(names), unit="img", desc=f"embedding ({embedder.runtime})",
                      disable=not options.progress) as bar:
        photos = PhotoFaceList(images, names, options, bar) if options.detect else None
        crops = photos.crops() if photos else face_crops(images, names, landmarks, landmarks_source=options.landmarks)
        first = next(crops, None)
        if first is None:
            raise FaceRecError(f"{images}: no face found in any of its {len(names)} photos")
        if gallery is not None:  # one face first: a gallery of another model fails before the long run
            dim = embedder.embed(first[None], flip=options.flip).shape[1]
            if dim != gallery[1].shape[1]:
                raise FaceRecError(f"{options.gallery}: expected {dim}-d embeddings of this model, "
                                   f"holds {gallery[1].shape[1]}-d")
        embeddings = embedder.embed(_chain(first, crops), flip=options.flip, progress=None if photos else bar)
    if photos:
        names = photos.names
    if options.output:
        save_embeddings(options.output, names, embeddings, model=str(model), **(photos.arrays() if photos else {}))
    if gallery is not None:
        _print_nearest(names, embeddings, gallery, options.top_k)
    # Last, once everything is written: a run that fails leaves its one error line alone on stderr.
    wrote = f"; wrote {options.output}" if options.output else ""
    what = photos.summary() if photos else f"{len(names)} images"
    print(f"embedded {what} ({embeddings.shape[1]}-d) with {embedder.runtime}{wrote}", file=sys.stderr)
    return 0


def _check_detect_flags(options: EmbedOptions) -> None:
    if not options.detect:
        return
    if options.landmarks:
        raise FaceRecError("--detect/--landmarks: expected one of them (--detect finds the landmarks itself)")
    check_face_flags(options.faces, options.min_face, options.min_score)


class PhotoFaceList:
    """--detect: the aligned faces of everyday photos, and what is known of each (its photo, box, score,
    landmarks) once they have been consumed. Names are the photo's path, ``PHOTO#k`` with --faces all."""

    def __init__(self, root: Path, photos: list[str], options: EmbedOptions, bar):
        self.root, self.photos, self.options, self.bar = root, photos, options, bar
        self.names: list[str] = []
        self.faces: list = []
        self.sources: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def crops(self):
        detector = command_detector(self.options.device, self.options.min_face)
        found = faces_in_photos((self.root / p for p in self.photos), detector, faces=self.options.faces,
                                min_face=self.options.min_face, min_score=self.options.min_score)
        for photo, result in zip(self.photos, found):
            self.bar.update()
            if not result.crops:
                self.skipped.append((photo, result.reason))
            for k, (face, crop) in enumerate(zip(result.faces, result.crops)):
                self.names.append(photo if self.options.faces == "largest" else f"{photo}#{k}")
                self.sources.append(photo)
                self.faces.append(face)
                yield crop

    def arrays(self) -> dict:
        return {"photos": np.asarray(self.sources, dtype=str),
                "boxes": np.asarray([f.box for f in self.faces], dtype=np.float32).reshape(-1, 4),
                "scores": np.asarray([f.score for f in self.faces], dtype=np.float32),
                "landmarks": np.asarray([f.landmarks for f in self.faces], dtype=np.float32).reshape(-1, 5, 2),
                "skipped": np.asarray([p for p, _ in self.skipped], dtype=str),
                "skipped_reasons": np.asarray([r for _, r in self.skipped], dtype=str)}

    def summary(self) -> str:
        skipped = ""
        if self.skipped:
            shown = ", ".join(f"{p} ({r})" for p, r in self.skipped[:3])
            skipped = f"; skipped {len(self.skipped)} photo(s) without a usable face: {shown}"
            skipped += ", ..." if len(self.skipped) > 3 else ""
        return f"{len(self.names)} faces of {len(self.photos)} photos{skipped}"


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
