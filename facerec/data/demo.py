"""A built-in synthetic face set, so `facerec-search` / `facerec-train` run with no --data (README quickstart).

Each identity is a drawn face with its own shape, skin, hair, eyes, nose and mouth; each image of it
varies pose, scale, lighting, expression and noise. It is generated deterministically (no download)
and packed once as an InsightFace RecordIO set into a cache folder under the run's output dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from nas_core.io import atomic_write_json

DEMO_IDENTITIES = 20
DEMO_IMAGES_PER_IDENTITY = 12
DEMO_IMAGE_SIZE = 112
_VERSION = 2

# The CPU-sized search budget the demo runs with (whole `facerec-search --size small` in ~minutes on
# 2 cores): tiny stem widths, 4..6 blocks, short trials. Explicit flags still override these.
DEMO_SEARCH = {"e_min": 2, "d_min": 4, "d_max": 6, "w_min": 4, "w_max": 8, "w_res": 2,
               "micro_epochs": 2, "max_trials": 8}


def _identity(rng: np.random.Generator) -> dict:
    return {
        "face_axes": rng.uniform([26, 32], [36, 44]),
        "skin": rng.uniform(90, 230, size=3),
        "hair": rng.uniform(10, 140, size=3),
        "hair_height": rng.uniform(6, 22),
        "eye_dx": rng.uniform(10, 17),
        "eye_y": rng.uniform(-12, -2),
        "eye_size": rng.uniform(2.5, 5.5),
        "iris": rng.uniform(20, 160, size=3),
        "brow": rng.uniform(1, 3.5),
        "nose_len": rng.uniform(6, 16),
        "mouth_y": rng.uniform(12, 22),
        "mouth_w": rng.uniform(6, 15),
    }


def _draw(face: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of an identity, drawn at 112x112 then jittered (pose, light, expression, noise)."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(70, 170, size=3)  # background varies per image, not per identity
    cx, cy = size / 2, size / 2 + 4
    ax, ay = face["face_axes"]
    cv2.ellipse(img, (int(cx), int(cy - ay * 0.55)), (int(ax * 1.05), int(face["hair_height"] + 14)),
                0, 180, 360, face["hair"].tolist(), -1)
    cv2.ellipse(img, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, face["skin"].tolist(), -1)
    ey = int(cy + face["eye_y"])
    for side in (-1, 1):
        ex = int(cx + side * face["eye_dx"])
        cv2.circle(img, (ex, ey), int(face["eye_size"] + 1.5), (235, 235, 235), -1)
        cv2.circle(img, (ex, ey), int(face["eye_size"]), face["iris"].tolist(), -1)
        cv2.line(img, (ex - 6, ey - 8), (ex + 6, ey - 9), face["hair"].tolist(), int(face["brow"]))
    cv2.line(img, (int(cx), ey + 2), (int(cx), int(ey + face["nose_len"])), (face["skin"] * 0.7).tolist(), 2)
    smile = rng.uniform(-4, 6)  # expression
    my = int(cy + face["mouth_y"])
    cv2.ellipse(img, (int(cx), my), (int(face["mouth_w"]), max(1, int(abs(smile)))), 0,
                0 if smile >= 0 else 180, 180 if smile >= 0 else 360, (60, 40, 120), 2)
    angle, scale = rng.uniform(-10, 10), rng.uniform(0.92, 1.08)
    warp = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    warp[:, 2] += rng.uniform(-4, 4, size=2)
    img = cv2.warpAffine(img, warp, (size, size), borderMode=cv2.BORDER_REPLICATE)
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12)  # lighting
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def demo_identities(num_identities: int = DEMO_IDENTITIES, images_per_identity: int = DEMO_IMAGES_PER_IDENTITY,
                    *, size: int = DEMO_IMAGE_SIZE, seed: int = 0) -> list[list[np.ndarray]]:
    """Per identity, a list of RGB uint8 images; the same arguments always give the same pixels."""
    faces = []
    for i in range(num_identities):
        face = _identity(np.random.default_rng([seed, i]))
        faces.append([_draw(face, np.random.default_rng([seed, i, j]), size) for j in range(images_per_identity)])
    return faces


def demo_pack(cache_dir: str | Path, *, num_identities: int = DEMO_IDENTITIES,
              images_per_identity: int = DEMO_IMAGES_PER_IDENTITY, seed: int = 0) -> Path:
    """Write (once) the demo set as a RecordIO face pack in ``cache_dir``; returns the folder."""
    from facerec.data.recordio import write_face_pack

    cache_dir = Path(cache_dir)
    stamp = {"version": _VERSION, "identities": num_identities, "images_per_identity": images_per_identity,
             "seed": seed, "image_size": DEMO_IMAGE_SIZE}
    stamp_path = cache_dir / "demo.json"
    if stamp_path.is_file() and (cache_dir / "train.rec").is_file():
        if json.loads(stamp_path.read_text()) == stamp:
            return cache_dir
    faces = demo_identities(num_identities, images_per_identity, seed=seed)
    write_face_pack(cache_dir, faces, image_size=(DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE))
    atomic_write_json(stamp_path, stamp)  # written last: its presence means the pack is complete
    return cache_dir

