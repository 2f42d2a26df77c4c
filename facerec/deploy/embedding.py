"""Face embeddings for deployment: ``load_embedder(path).embed(images)``, image folders and landmark lists
as ``facerec-embed`` reads them, the embeddings .npz it writes, and nearest-gallery search.

Embeddings follow the evaluation protocol: input (x/255 − 0.5)/0.5 RGB 112x112, emb(x) + emb(fliplr x),
L2-normalised, float32. Landmark alignment is the IJB alignment (``eval_protocols.align.align_face``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from eval_protocols.align import align_face, landmark_problem
from eval_protocols.embed import Embedder, torch_device
from facerec.data.images import IMAGE_SUFFIXES, load_image
from facerec.errors import FaceRecError
from facerec.model.checkpoint import load_backbone
from nas_core.io import atomic_write, file_problem

FACE_SIZE = 112
LANDMARKS_LINE = "'<image path relative to --images> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 [score]'"
EMBEDDINGS_NPZ = "an embeddings .npz written by facerec-embed (arrays 'names' and 'embeddings')"


class FaceEmbedder:
    """``embed(images)``: RGB uint8 [N, 112, 112, 3] aligned faces → L2-normalised, flip-fused float32
    embeddings [N, D]. ``runtime`` names the onnxruntime provider or torch device that runs the model."""

    def __init__(self, embedder, source: str):
        self._embedder = embedder
        self.source = source

    @property
    def runtime(self) -> str:
        return self._embedder.runtime

    def embed(self, images: np.ndarray | Iterable[np.ndarray], *, flip: bool = True, progress: Any = None) -> np.ndarray:
        """``images``: an array [N, 112, 112, 3] or an iterable of [112, 112, 3] images, consumed lazily in
        batches (never all decoded at once). ``progress``: an optional tqdm bar advanced per image."""
        if isinstance(images, np.ndarray):
            _check_faces(images, batch=True)
            stream: Any = images
        else:
            stream = (_check_faces(np.asarray(image), batch=False) for image in images)
        return self._embedder.embed(stream, flip=flip, normalize=True, progress=progress)


def _check_faces(images: np.ndarray, batch: bool) -> np.ndarray:
    expected = (FACE_SIZE, FACE_SIZE, 3)
    if images.dtype != np.uint8 or images.shape[-3:] != expected or images.ndim != (4 if batch else 3):
        want = f"{'N x ' if batch else ''}112 x 112 x 3"
        raise FaceRecError(f"images: expected RGB uint8 {want} aligned faces, got {images.dtype} {images.shape}")
    return images


def load_embedder(path: str | Path, device: str | None = "auto", batch_size: int = 64) -> FaceEmbedder:
    """A model file → ``FaceEmbedder``. ``.onnx`` runs in onnxruntime (CUDA provider when installed and
    ``device`` is auto or cuda); ``.pt``/``.pth`` is a facenas checkpoint, rebuilt from the file alone.
    ``device``: ``auto`` (or None: CUDA when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    return FaceEmbedder(open_model(path, device, batch_size), str(path))


MODEL_SUFFIXES = (".onnx", ".pt", ".pth")


def check_model_file(path: str | Path) -> Path:
    """``path`` as a model file every command takes (an .onnx file or a facenas .pt checkpoint), checked before
    any work: a FaceRecError naming it otherwise."""
    path = Path(path)
    if path.suffix not in MODEL_SUFFIXES:
        raise FaceRecError(f"{path}: expected a model file ending in .onnx or .pt")
    problem = file_problem(path)  # with stat: a FIFO would block whatever opened it
    if problem == "file not found":
        raise FaceRecError(f"{path}: model file not found; expected an .onnx file or a facenas .pt checkpoint")
    if problem is not None:
        raise FaceRecError(f"{path}: expected an .onnx file or a facenas .pt checkpoint ({problem})")
    return path


def open_model(path: str | Path, device: str | None = "auto", batch_size: int = 64) -> Embedder:
    """A model file → ``eval_protocols.embed.Embedder`` (raw embeddings): an ``.onnx`` file goes to
    onnxruntime; a facenas ``.pt`` checkpoint is rebuilt here and handed in as a module."""
    path = check_model_file(path)
    if path.suffix == ".onnx":
        return Embedder(path, device=device, batch_size=batch_size)
    device = torch_device(device)
    module, _ = load_backbone(path, map_location=device)
    return Embedder(module, device=device, batch_size=batch_size)


def _natural_key(name: str) -> list:
    # img2 before img10, as facerec-data orders image folders.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_images(root: str | Path) -> list[str]:
    """Every image under ``root`` (any depth), as POSIX paths relative to it, in natural order."""
    root = Path(root)
    if not root.is_dir():
        raise FaceRecError(f"{root}: expected a folder of face images, not found")
    names = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not names:
        raise FaceRecError(f"{root}: expected face images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}) in it "
                           "or its sub-folders, found none")
    return sorted(names, key=_natural_key)


def read_landmarks(path: str | Path, root: str | Path) -> tuple[list[str], np.ndarray]:
    """A landmarks file → (image names, float32 [N, 5, 2]) in file order.

    One line per image: its path relative to ``root``, then the 5 points (left eye, right eye, nose,
    left and right mouth corner) as x y pixel pairs; an optional 12th field (the detector score of
    IJB's ``<t>_name_5pts_score.txt``) is ignored, so those files work as they are. Blank lines and
    lines starting with ``#`` are skipped; names cannot contain spaces.
    """
    path, root = Path(path), Path(root)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise FaceRecError(f"{path}: expected a landmarks file of lines {LANDMARKS_LINE} ({reason})") from None
    names: list[str] = []
    points: list[list[float]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}: line {number}"
        try:
            values = [float(v) for v in fields[1:11]]
        except ValueError:
            values = []
        if len(fields) not in (11, 12) or len(values) != 10:
            raise FaceRecError(f"{where}: expected {LANDMARKS_LINE}, got {len(fields)} fields")
        problem = landmark_problem(values)  # finite, in pixel range, 5 distinct points
        if problem is not None:
            raise FaceRecError(f"{where}: {problem} for {fields[0]}")
        name = fields[0]
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise FaceRecError(f"{where}: expected an image path relative to {root}, got {name}")
        if not (root / name).is_file():
            raise FaceRecError(f"{where}: image {name} not found in {root}")
        if name in seen:
            raise FaceRecError(f"{where}: image {name} already has landmarks on line {seen[name]}")
        seen[name] = number
        names.append(name)
        points.append(values)
    if not names:
        raise FaceRecError(f"{path}: expected lines {LANDMARKS_LINE}, found none")
    # float32, as InsightFace reads IJB landmarks: the alignment is fitted on these values.
    return names, np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)


def face_crops(root: str | Path, names: list[str], landmarks: np.ndarray | None = None,
               landmarks_source: str | Path = "landmarks") -> Iterator[np.ndarray]:
    """RGB uint8 112x112 faces, one per name, decoded a few hundred at a time in threads (OpenCV releases
    the GIL). With ``landmarks`` (read from ``landmarks_source``, named in errors) each image is aligned like
    IJB; without, it must be 112x112 already."""
    root = Path(root)

    def load(i: int) -> np.ndarray:
        image = load_image(root / names[i])
        if landmarks is not None:
            return align_face(image, landmarks[i], source=f"{landmarks_source}: {names[i]}")
        if image.shape[:2] != (FACE_SIZE, FACE_SIZE):
            h, w = image.shape[:2]
            raise FaceRecError(f"{root / names[i]}: expected a 112x112 aligned face, got {w}x{h}; "
                               "give --landmarks to align faces of other sizes")
        return image

    chunk = 256
    with ThreadPoolExecutor(max_workers=4) as pool:
        for lo in range(0, len(names), chunk):
            yield from pool.map(load, range(lo, min(lo + chunk, len(names))))


def save_embeddings(path: str | Path, names: list[str], embeddings: np.ndarray, model: str = "",
                    **extra: np.ndarray) -> None:
    """Write ``names`` (str), ``embeddings`` (float32 [N, D]), ``model`` and any ``extra`` arrays (plain
    dtypes: they load with ``allow_pickle=False``) to an .npz, atomically."""
    arrays = {"names": np.asarray(names, dtype=str), "embeddings": np.asarray(embeddings, dtype=np.float32),
              "model": np.asarray(str(model)), **{k: np.asarray(v) for k, v in extra.items()}}
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """An embeddings .npz → (names, float32 [N, D] L2-normalised rows)."""
    path = Path(path)
    if not path.is_file():
        raise FaceRecError(f"{path}: expected {EMBEDDINGS_NPZ}; file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "names" not in npz.files or "embeddings" not in npz.files:
                raise FaceRecError(f"{path}: expected {EMBEDDINGS_NPZ}; it holds {', '.join(npz.files) or 'nothing'}")
            names, embeddings = npz["names"], npz["embeddings"]
    except FaceRecError:
        raise
    except Exception as exc:  # noqa: BLE001  (not a zip, truncated, pickled objects: all the same to the user)
        raise FaceRecError(f"{path}: expected {EMBEDDINGS_NPZ} ({type(exc).__name__})") from None
    if (names.ndim != 1 or names.dtype.kind != "U" or embeddings.ndim != 2 or embeddings.dtype.kind != "f"
            or len(names) != len(embeddings) or len(names) == 0 or not np.isfinite(embeddings).all()):
        raise FaceRecError(f"{path}: expected {EMBEDDINGS_NPZ}: one name per row of finite float embeddings")
    # Normalised in float64: rows of huge float32 values would overflow their norm in float32.
    embeddings = embeddings.astype(np.float64)
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return names.tolist(), embeddings.astype(np.float32)


def nearest(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows of highest cosine per query: (indices, scores), best first; equal scores
    keep gallery order. Rows must be L2-normalised. Queries go 1024 at a time."""
    k = min(int(k), len(gallery))
    indices = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for lo in range(0, len(queries), 1024):
        sims = queries[lo : lo + 1024] @ gallery.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.argsort(-sims, axis=1)
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)  # by score, then by gallery position
        indices[lo : lo + 1024] = np.take_along_axis(top, order, axis=1)
        scores[lo : lo + 1024] = np.take_along_axis(top_sims, order, axis=1)
    return indices, scores


def identity_of(name: str) -> str:
    """The identity a name carries: its parent folder (``s12/3.pgm`` → ``s12``), or "" at the top level."""
    return PurePosixPath(name).parent.name


def rank1(query_names: list[str], gallery_names: list[str], top1: np.ndarray) -> tuple[float, int, int] | None:
    """Closed-set rank-1 from identities (parent folders): (accuracy, hits, queries counted). Queries whose
    identity has no gallery image are not counted. None when a name has no parent folder."""
    queries = [identity_of(n) for n in query_names]
    gallery = [identity_of(n) for n in gallery_names]
    if not all(queries) or not all(gallery):
        return None
    known = set(gallery)
    counted = [i for i, q in enumerate(queries) if q in known]
    if not counted:
        return None
    hits = sum(gallery[int(top1[i])] == queries[i] for i in counted)
    return hits / len(counted), hits, len(counted)
