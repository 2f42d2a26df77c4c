"""Face detection on everyday photos: boxes, scores and 5 landmarks per face, which faces a photo keeps,
and the aligned 112x112 crops of those faces.

The detector is MTCNN (Zhang et al. 2016) as facenet-pytorch 2.5.3 ships it: its three nets' weights lie
inside the package (``facenet_pytorch/data/``), so nothing downloads. It returns the 5 points in the order
the ArcFace template expects (left eye, right eye, nose, left and right mouth corner, "left" as seen in the
image), which ``eval_protocols.align.align_face`` (the project's one alignment, ARCHITECTURE §6: least
squares over all 5 points) maps onto the template.

Detectors are looked up by name in ``DETECTORS`` (``create_detector("mtcnn", threads=1)``); a detector takes
a list of RGB uint8 images and returns, per image, its faces.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval_protocols.align import align_face, point_off_image
from eval_protocols.errors import EvalError
from facerec.errors import FaceRecError
from nas_core.registry import Registry

FACE_POLICIES = ("largest", "all")
DEFAULT_MIN_FACE = 20  # pixels: MTCNN's own default smallest face
DEFAULT_MIN_SCORE = 0.9  # MTCNN's final-stage probability; its last threshold is 0.7
SMALLEST_DETECTABLE = 12  # MTCNN's first net looks at 12x12 windows: no face is found below it

# Why a photo gave no face: the keys of OUT/align.json's counts, in the order they are checked.
UNREADABLE, EMPTY, TRUNCATED = "unreadable", "empty file", "truncated JPEG"
NO_FACE, TOO_SMALL, LOW_SCORE = "no face found", "faces smaller than --min-face", "faces scored below --min-score"
OFF_PHOTO, DETECTOR_FAILED = "face points far outside the photo", "the detector failed on it"
REASONS = (UNREADABLE, EMPTY, TRUNCATED, DETECTOR_FAILED, NO_FACE, OFF_PHOTO, TOO_SMALL, LOW_SCORE)

DETECTORS = Registry("face detector")


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2) in pixels, the detector's ``score`` in [0, 1], and the
    5 ``landmarks`` as float32 [5, 2] (x, y): left eye, right eye, nose, left and right mouth corner."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def size(self) -> float:
        """The shorter side of the box: what --min-face compares."""
        x1, y1, x2, y2 = self.box
        return min(x2 - x1, y2 - y1)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    def visible_area(self, width: int, height: int) -> float:
        """The box's area inside a ``width`` x ``height`` photo. MTCNN extends the box of a face cut by the
        border beyond the photo, so a half-visible face at the edge can have a larger box than the face the
        photo is of: "largest" compares what is visible."""
        x1, y1, x2, y2 = self.box
        return max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0)

    def to_dict(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 5),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}


@dataclass
class PhotoFaces:
    """What one photo gave: the faces kept (largest first) and their aligned RGB uint8 112x112 crops, or the
    ``reason`` (one of ``REASONS``) none was kept, with ``detail`` for a photo that could not be read."""

    path: Path
    faces: list[Face]
    crops: list[np.ndarray]
    reason: str | None = None
    detail: str | None = None


@DETECTORS.register("mtcnn")
class MTCNNDetector:
    """MTCNN from facenet-pytorch. ``threads``: torch's intra-op threads for this process, set here (torch's
    default of one per core is several times slower on a busy machine, and workers each take one).
    ``min_face``: the smallest face searched for, in pixels (MTCNN's image pyramid starts there, so a larger
    value is also faster). Photos of one size are detected as one batch of up to ``batch_size``."""

    def __init__(self, *, threads: int | None = 1, device: str = "cpu", min_face: int = DEFAULT_MIN_FACE,
                 batch_size: int = 16):
        import torch
        from facenet_pytorch import MTCNN

        if threads is not None and threads < 1:
            raise FaceRecError(f"--threads {threads}: expected a positive number of threads")
        if threads is not None:
            torch.set_num_threads(threads)
        self.name = "mtcnn"
        self.batch_size = max(1, int(batch_size))
        self._mtcnn = MTCNN(min_face_size=max(SMALLEST_DETECTABLE, int(min_face)), keep_all=True,
                            select_largest=False, device=torch.device(device))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """RGB uint8 HxWx3 images (any sizes) → their faces, in the detector's order."""
        found: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if min(image.shape[:2]) >= SMALLEST_DETECTABLE:
                by_shape.setdefault(image.shape, []).append(i)
        for indices in by_shape.values():
            for lo in range(0, len(indices), self.batch_size):
                batch = indices[lo : lo + self.batch_size]
                boxes, scores, points = self._mtcnn.detect([images[i] for i in batch], landmarks=True)
                for i, b, s, p in zip(batch, boxes, scores, points):
                    found[i] = _faces(b, s, p)
        return found


def _faces(boxes, scores, points) -> list[Face]:
    # facenet-pytorch gives None (no face) or object arrays of boxes [N, 4], scores [N], points [N, 5, 2].
    if boxes is None:
        return []
    return [Face(tuple(float(v) for v in box), float(score), np.asarray(pts, dtype=np.float32).reshape(5, 2))
            for box, score, pts in zip(boxes, scores, points)]


MAX_MIN_FACE = 10_000  # pixels: no photo holds a larger face


def check_face_flags(faces: str = "largest", min_face: float = DEFAULT_MIN_FACE,
                     min_score: float = DEFAULT_MIN_SCORE) -> None:
    """The one check of --faces, --min-face and --min-score, for every command that detects faces."""
    if faces not in FACE_POLICIES:
        raise FaceRecError(f"--faces {faces}: expected one of {', '.join(FACE_POLICIES)}")
    if not 1 <= min_face <= MAX_MIN_FACE:  # NaN fails too
        raise FaceRecError(f"--min-face {min_face}: expected a face size in pixels, 1 to {MAX_MIN_FACE}")
    if not 0.0 <= min_score <= 1.0:
        raise FaceRecError(f"--min-score {min_score}: expected a detector score in [0, 1]")


def create_detector(name: str = "mtcnn", *, threads: int | None = 1, device: str = "cpu",
                    min_face: int = DEFAULT_MIN_FACE):
    """A detector by name (``DETECTORS.list()``). ``threads`` None keeps the process's torch thread count."""
    return DETECTORS.create(name, threads=threads, device=device, min_face=min_face)


def command_detector(device: str = "auto", min_face: int = DEFAULT_MIN_FACE):
    """The detector of a command that also runs an embedding model in the same process (embed, verify,
    gallery): on ``--device`` (auto: cuda when there is one), at the process's thread count, which the model
    shares; ``facerec-data align`` instead gives each worker process one thread."""
    from eval_protocols.embed import torch_device

    return create_detector("mtcnn", threads=None, device=torch_device(device), min_face=min_face)


def select_faces(faces: list[Face], policy: str = "largest", *, min_face: float = DEFAULT_MIN_FACE,
                 min_score: float = DEFAULT_MIN_SCORE,
                 image_size: tuple[int, int] | None = None) -> tuple[list[Face], str | None]:
    """The faces a photo keeps under ``policy`` (``largest``: the one with the largest box; ``all``: every
    face, largest first) once those under ``min_face`` pixels or ``min_score`` are dropped; with the reason
    when none is left. With the photo's ``image_size`` (width, height) "largest" is the largest box area
    inside the photo."""
    if policy not in FACE_POLICIES:
        raise FaceRecError(f"--faces {policy}: expected one of {', '.join(FACE_POLICIES)}")
    if not faces:
        return [], NO_FACE
    scored = [f for f in faces if f.score >= min_score]
    if not scored:
        return [], LOW_SCORE
    def area(face: Face) -> float:
        return face.visible_area(*image_size) if image_size else face.area

    kept = sorted((f for f in scored if f.size >= min_face), key=lambda f: (-area(f), -f.score))
    if not kept:
        return [], TOO_SMALL
    return (kept[:1] if policy == "largest" else kept), None


def read_photo(path: Path) -> tuple[np.ndarray | None, str | None, str | None]:
    """A photo file → (RGB uint8 image, None, None), or (None, reason, detail) when it cannot be used."""
    from eval_protocols.bins import decode_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, UNREADABLE, exc.strerror or type(exc).__name__
    if not data:
        return None, EMPTY, "0 bytes"
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        # libjpeg decodes a cut JPEG anyway, greying out what is missing (and says so only on fd 2).
        return None, TRUNCATED, f"{len(data)} bytes, no end-of-image marker after the last scan"
    try:
        return decode_image(data, None, source=str(path)), None, None
    except EvalError:
        return None, UNREADABLE, f"{len(data)} bytes OpenCV cannot decode"


def _jpeg_complete(data: bytes) -> bool:
    # The end-of-image marker must follow the last start-of-scan: an EXIF thumbnail ends with one of its own
    # before the main image's scans, and some cameras append data after the real one.
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) >= 0


def faces_in_photos(paths: Iterable[str | Path], detector, *, faces: str = "largest",
                    min_face: float = DEFAULT_MIN_FACE, min_score: float = DEFAULT_MIN_SCORE,
                    chunk: int = 32) -> Iterator[PhotoFaces]:
    """Per photo, in order: its kept faces and their aligned 112x112 crops, or why it has none. A photo
    that cannot be read is reported, never raised: one bad file does not stop a folder."""
    if faces not in FACE_POLICIES:
        raise FaceRecError(f"--faces {faces}: expected one of {', '.join(FACE_POLICIES)}")
    paths = [Path(p) for p in paths]
    for lo in range(0, len(paths), chunk):
        decoded = [(path, *read_photo(path)) for path in paths[lo : lo + chunk]]
        readable = [image for _, image, _, _ in decoded if image is not None]
        detected = iter(_detect_guarded(detector, readable))
        for path, image, reason, detail in decoded:
            if image is None:
                yield PhotoFaces(path, [], [], reason, detail)
                continue
            found = next(detected)
            if found is None:
                yield PhotoFaces(path, [], [], DETECTOR_FAILED, None)
                continue
            # A face cut by the border can get points the alignment refuses (eval_protocols.align): not usable.
            h, w = image.shape[:2]
            usable = [face for face in found if point_off_image(face.landmarks, w, h) is None]
            kept, reason = select_faces(usable, faces, min_face=min_face, min_score=min_score, image_size=(w, h))
            if found and not usable:
                reason = OFF_PHOTO
            crops = [align_face(image, face.landmarks, source=str(path)) for face in kept]
            yield PhotoFaces(path, kept, crops, reason)


def _detect_guarded(detector, images: list[np.ndarray]) -> list:
    """The detector's faces per image; when a batch fails, each image alone, None for the ones that fail, so
    one odd photo never stops a folder (facenet-pytorch raises RuntimeError/ValueError on some degenerate
    inputs, e.g. an image whose pyramid has no level)."""
    try:
        return detector.detect(images)
    except (RuntimeError, ValueError, IndexError):
        pass
    found: list = []
    for image in images:
        try:
            found.extend(detector.detect([image]))
        except (RuntimeError, ValueError, IndexError):
            found.append(None)
    return found
