"""5-point similarity alignment onto the 112x112 ArcFace template (DESIGN §6)."""

from __future__ import annotations

import cv2
import numpy as np

# DESIGN §6: InsightFace's 112x112 template (its 96x112 template shifted 8 px right).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation; no reflection) mapping ``src`` onto ``dst``.

    Returns the 2x3 matrix for ``cv2.warpAffine``. The model x' = a·x − b·y + tx, y' = b·x + a·y + ty is
    linear in (a, b, tx, ty) and cannot reflect, so one linear least-squares solve gives the same optimum
    as Umeyama's method with its reflection fix (what scikit-image's SimilarityTransform, used by
    InsightFace, computes). cv2.estimateAffinePartial2D is avoided: its robust methods (RANSAC/LMEDS)
    fit a subset of the points, which is not the reference's least-squares fit.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"expected matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    x, y = src[:, 0], src[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    design = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    target = np.concatenate([dst[:, 0], dst[:, 1]])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp ``image`` so its 5 landmarks (x, y) land on the ArcFace template; returns a ``size``² crop."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), template)
    # InsightFace warps with OpenCV's defaults (bilinear, constant black border).
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
