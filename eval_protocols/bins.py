"""InsightFace verification packs (``lfw.bin`` ...): pickle of (2P encoded images, P issame bools), ARCHITECTURE §5."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from eval_protocols.errors import EvalError
from nas_core.io import atomic_write_bytes, file_problem
from nas_core.safe_pickle import safe_load


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Encoded images (2P, as bytes) and issame (P bools). Raises EvalError on anything else."""
    path = Path(path)
    problem = file_problem(path)  # by stat: a FIFO would block the unpickler
    if problem == "file not found":
        raise EvalError(f"{path}: file not found; expected a verification .bin pack")
    if problem is not None:
        raise EvalError(f"{path}: expected a verification .bin pack ({problem})")
    # The packs were pickled by Python 2 (str = bytes), so they load with encoding="bytes". The restricted
    # unpickler refuses any global beyond bytes and numpy arrays: a crafted pack cannot run code.
    obj = safe_load(path, "a pickled (images, issame) verification pack", encoding="bytes", error=EvalError)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise EvalError(f"{path}: expected a pickled pair (list of encoded images, list of issame bools)")
    images, issame = obj
    try:
        encoded = [_as_bytes(item) for item in images]
        flags = np.asarray(issame, dtype=bool).reshape(-1)
    except (TypeError, ValueError):
        raise EvalError(f"{path}: expected encoded images as bytes or uint8 arrays, issame as bools") from None
    if len(encoded) != 2 * len(flags) or len(flags) == 0:
        raise EvalError(f"{path}: expected 2 images per pair, found {len(encoded)} images for {len(flags)} pairs")
    return encoded, flags


def _as_bytes(item: object) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    raise TypeError(type(item).__name__)


def decode_image(encoded: bytes, image_size: int | None = 112, *, source: str = "image") -> np.ndarray:
    """Encoded image bytes (JPEG/PNG/PGM/BMP) → RGB uint8 HxWx3, grey images as 3 equal channels; resized
    (bilinear) to image_size² when it is given and the image has another size. The one decoder of the
    project: packs, .bin files and image folders all go through it."""
    buf = np.frombuffer(encoded, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB) if buf.size else None
    if image is None:
        raise EvalError(f"{source}: expected an encoded image OpenCV can decode (jpg/png/pgm/bmp), "
                        f"got {buf.size} undecodable bytes")
    if image_size is not None and image.shape[:2] != (image_size, image_size):
        image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    return image


def iter_decoded(
    encoded: Sequence[bytes], image_size: int = 112, batch_size: int = 64, *, source: str = "pack"
) -> Iterator[np.ndarray]:
    """Decode in batches so a pack is never held decoded all at once (ARCHITECTURE §6)."""
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        yield np.stack(
            [decode_image(b, image_size, source=f"{source}: image {start + i}") for i, b in enumerate(chunk)]
        )


def load_bin(path: str | Path, image_size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Decoded RGB uint8 [2P, size, size, 3] and issame [P]."""
    encoded, issame = read_bin(path)
    images = np.concatenate(list(iter_decoded(encoded, image_size, source=str(path))))
    return images, issame


def write_bin(path: str | Path, encoded: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write a pack InsightFace's loader reads (atomic: temporary file, fsync, rename)."""
    encoded = [_as_bytes(item) for item in encoded]
    flags = [bool(x) for x in issame]
    if len(encoded) != 2 * len(flags):
        raise ValueError(f"expected 2 images per pair, got {len(encoded)} images for {len(flags)} pairs")
    atomic_write_bytes(path, pickle.dumps((encoded, flags), protocol=4))
