"""The facerec-verify job: two photos → their largest faces, detected and aligned (facerec.photos.detect) or
given aligned (--no-detect) → flip-fused, L2-normalised embeddings (facerec.deploy.embedding) → "same person"
iff their cosine >= the threshold (--threshold, else the model's calibrated one: facerec.deploy.threshold).

Every flag and input is checked, and both faces found, before the embedding model is loaded; nothing is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.deploy.embedding import FACE_SIZE, check_model_file, load_embedder
from facerec.deploy.threshold import describe_threshold, model_threshold
from facerec.deploy.verify_options import VerifyOptions
from facerec.errors import FaceRecError
from facerec.photos.detect import check_face_flags, command_detector, faces_in_photos


@dataclass(frozen=True)
class _Face:
    """The face of one photo that is compared: its aligned crop and where the detector found it."""

    path: Path
    crop: np.ndarray  # RGB uint8 112x112x3, aligned
    box: list[float] | None  # x1, y1, x2, y2 in the photo; None with --no-detect
    score: float | None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "box": self.box, "score": self.score}


@dataclass(frozen=True)
class _Threshold:
    cosine: float
    source: str  # "--threshold" or "model"
    calibration: dict | None  # the model's calibrated threshold (facerec.deploy.threshold), when used

    def describe(self) -> str:
        return describe_threshold(self.calibration) if self.calibration is not None else "given by --threshold"


def run_verify(options: VerifyOptions) -> int:
    """Print whether A and B show the same person; 0 for yes and for no."""
    photos = _check_options(options)
    threshold = _threshold(options)
    faces = _detected_faces(options, photos) if options.detect else [_aligned_face(p) for p in photos]
    embedder = load_embedder(options.model, device=options.device, batch_size=len(faces))
    a, b = np.asarray(embedder.embed(np.stack([face.crop for face in faces])), np.float64)
    cosine = float(np.dot(a, b))  # both L2-normalised
    same = cosine >= threshold.cosine
    if options.json:
        print(json.dumps({"same": same, "cosine": cosine, "threshold": threshold.cosine,
                          "threshold_source": threshold.source, "calibration": threshold.calibration,
                          "a": faces[0].to_dict(), "b": faces[1].to_dict()}))
    else:
        print(f"same person: {'yes' if same else 'no'}  cosine {cosine:.4f} {'>=' if same else '<'} threshold "
              f"{threshold.cosine:.4f} ({threshold.describe()})")
    return 0


def _check_options(options: VerifyOptions) -> list[Path]:
    """The two photos; every flag checked before anything is loaded."""
    check_model_file(options.model)
    if options.threshold is not None and not (math.isfinite(options.threshold) and -1 <= options.threshold <= 1):
        raise FaceRecError(f"--threshold {options.threshold:g}: expected a cosine in [-1, 1]")
    check_face_flags("largest", options.min_face, options.min_score)
    photos = [Path(options.a), Path(options.b)]
    for photo in photos:
        if not photo.is_file():
            raise FaceRecError(f"{photo}: expected a photo file ({'a folder' if photo.is_dir() else 'not found'})")
    return photos


def _threshold(options: VerifyOptions) -> _Threshold:
    if options.threshold is not None:
        return _Threshold(float(options.threshold), "--threshold", None)
    calibrated = model_threshold(options.model)
    if calibrated is None:
        raise FaceRecError(f"{options.model}: the model has no calibrated verification threshold; pass --threshold T "
                           "(or use a model trained with facerec-train and exported with facerec-export, which "
                           "record one)")
    return _Threshold(calibrated["cosine"], "model", calibrated)


def _aligned_face(path: Path) -> _Face:
    """--no-detect: the photo is already an aligned face."""
    from facerec.data.images import load_image

    image = load_image(path)
    if image.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise FaceRecError(f"{path}: expected an aligned {FACE_SIZE}x{FACE_SIZE} face with --no-detect, got "
                           f"{image.shape[1]}x{image.shape[0]} pixels (leave out --no-detect to find the face)")
    return _Face(path, image, None, None)


def _detected_faces(options: VerifyOptions, photos: list[Path]) -> list[_Face]:
    """The largest face of each photo, aligned; a photo without one is a FaceRecError naming it."""
    detector = command_detector(options.device, options.min_face)
    found = list(faces_in_photos(photos, detector, faces="largest", min_face=options.min_face,
                                 min_score=options.min_score))
    faces = []
    for path, photo in zip(photos, found, strict=True):
        if not photo.faces:
            why = (photo.reason or "no face found") + (f": {photo.detail}" if photo.detail else "")
            raise FaceRecError(f"{path}: expected a photo with a face ({why})")
        face = photo.faces[0]
        faces.append(_Face(path, np.asarray(photo.crops[0]), [float(v) for v in face.box], float(face.score)))
    return faces
