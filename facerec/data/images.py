"""Face images on disk: the image-folder layout (one sub-folder per identity), decoding and encoding with
OpenCV, and fitting a face into the 112x112 frame the packs hold (ARCHITECTURE §5, §6)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from eval_protocols.bins import decode_image
from facerec.errors import FaceRecError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")


def _natural_key(name: str) -> list:
    # s2 before s10: ORL, LFW-style numbering and most dumps number their folders without zero padding.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_image_folder(root: str | Path) -> list[tuple[str, list[Path]]]:
    """``root/<identity>/<image>`` -> [(identity name, image paths)], identities and images in natural
    order; identity folders without images are left out. Identity label = position in this list."""
    root = Path(root)
    if not root.is_dir():
        raise FaceRecError(f"{root}: expected an image folder (one sub-folder per identity), not found")
    identities = []
    for sub in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)):
        files = [p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if files:
            identities.append((sub.name, sorted(files, key=lambda p: _natural_key(p.name))))
    if not identities:
        raise FaceRecError(f"{root}: expected one sub-folder per identity holding "
                           f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images, found none")
    return identities


def load_image(path: str | Path) -> np.ndarray:
    """Image file -> RGB uint8 HxWx3."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FaceRecError(f"{path}: expected a readable image file ({exc.strerror})") from exc
    return decode_image(data, None, source=str(path))


def fit_face(image: np.ndarray, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """Fit an RGB (or grey) face into ``size`` (h, w) without distorting it: scale so the whole image fits,
    then pad the short side symmetrically by replicating the border. ORL's 92x112 images keep their
    pixels and get 10 columns of edge replication on each side. Grey input comes back as 3 channels."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FaceRecError(f"image: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] not in (1, 3):
        raise FaceRecError(f"image: expected HxW or HxWx3 pixels, got shape {image.shape}")
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    out_h, out_w = size
    h, w = image.shape[:2]
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(image)
    scale = min(out_h / h, out_w / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    return cv2.copyMakeBorder(image, top, out_h - new_h - top, left, out_w - new_w - left, cv2.BORDER_REPLICATE)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """RGB uint8 -> JPEG bytes of the BGR array, as InsightFace packs hold them (ARCHITECTURE §5)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FaceRecError(f"image: OpenCV could not encode a {rgb.shape} array as JPEG")
    return buf.tobytes()
