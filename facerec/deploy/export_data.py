"""Face images facerec-export checks and calibrates a model on, read from what users have: a face pack
folder (train.rec/.idx/property, or the .rec file), an image folder (one sub-folder per identity, as
``facerec-data pack`` reads it) or a verification .bin pack.

Images come back as RGB uint8 [N, size, size, 3]; ``eval_protocols.embed.to_input`` turns them into the
model's input exactly as facerec-eval does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from eval_protocols.bins import decode_image, read_bin
from facerec.data.datasets import FacePack
from facerec.data.images import fit_face, load_image, read_image_folder
from facerec.errors import FaceRecError
from nas_core.errors import NasError

_EXPECTED = ("expected a face pack folder (train.rec), an image folder (one sub-folder per identity) "
             "or a verification .bin pack")


def _spread(total: int, count: int, seed: int) -> list[int]:
    """``count`` of ``range(total)`` (all when fewer), a seeded choice in file order: images of many
    identities rather than the first few."""
    if total <= count:
        return list(range(total))
    return sorted(np.random.default_rng(seed).choice(total, size=count, replace=False).tolist())


def _to_size(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _from_pack(path: Path, count: int, size: int, seed: int) -> np.ndarray:
    pack = FacePack(path)
    keys = pack.image_keys()
    return np.stack([_to_size(pack.image(keys[i]), size) for i in _spread(len(keys), count, seed)])


def _from_bin(path: Path, count: int, size: int, seed: int) -> np.ndarray:
    encoded, _ = read_bin(path)
    return np.stack([decode_image(encoded[i], size, source=f"{path}: image {i}")
                     for i in _spread(len(encoded), count, seed)])


def _from_folder(path: Path, count: int, size: int, seed: int) -> np.ndarray:
    files = [f for _, paths in read_image_folder(path) for f in paths]
    # Fitted into the 112x112 frame (aspect kept, edges replicated) the way facerec-data pack stores them.
    chosen = _spread(len(files), count, seed)
    return np.stack([_to_size(fit_face(load_image(files[i])), size) for i in chosen])


def read_face_images(path: str | Path, count: int, size: int = 112, *, seed: int = 0,
                     flag: str = "--data") -> np.ndarray:
    """Up to ``count`` face images of ``path`` (spread over the whole source, seeded), RGB uint8
    [N, size, size, 3]. Bad input raises FaceRecError naming ``flag`` and the path."""
    path = Path(path)
    if path.is_file() and path.suffix == ".bin":
        read = _from_bin
    elif path.is_file() and path.suffix == ".rec" or path.is_dir() and (path / "train.rec").is_file():
        read = _from_pack
    elif path.is_dir():
        read = _from_folder
    else:
        what = "not found" if not path.exists() else "not a folder or a .bin file"
        raise FaceRecError(f"{flag} {path}: {_EXPECTED} ({what})")
    try:
        return read(path, count, size, seed)
    except NasError as exc:  # FaceRecError or the .bin reader's EvalError: keep the message, name the flag
        raise FaceRecError(f"{flag} {exc}") from None
