"""5-point similarity alignment onto the 112x112 ArcFace template, bit for bit as InsightFace's IJB
evaluation does it (``recognition/_evaluation_/ijb/ijb_11.py``, ``arcface_torch/eval_ijbc.py``).

The reference reads the landmarks as float32, builds the template in float32 as the 96x112 template
plus 8.0 on x, fits ``skimage.transform.SimilarityTransform`` (Umeyama's method) on those float32
arrays and warps with ``cv2.warpAffine(img, params[0:2, :], (112, 112), borderValue=0.0)``. A float64
fit of the same points moves most crops by one grey level somewhere and flips TAR at low FAR, so the
fit below repeats the reference's arithmetic step by step.
"""

from __future__ import annotations

import cv2
import numpy as np

from eval_protocols.errors import EvalError

# InsightFace's 96x112 template moved 8 px right in float32: 65.5318 + 8 and the rest round the same as
# the 112x112 literals, but float32(62.7299) + 8 is one float32 step away from float32(70.7299).
_TEMPLATE_96X112 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float32,
)
ARCFACE_TEMPLATE = _TEMPLATE_96X112 + np.array([8.0, 0.0], dtype=np.float32)
ARCFACE_TEMPLATE.flags.writeable = False


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity (scale, rotation, translation; never a reflection) mapping ``src`` points onto
    ``dst`` points in the least-squares sense, as the 2x3 float64 matrix ``cv2.warpAffine`` takes.

    Computed as scikit-image's ``SimilarityTransform.estimate`` computes it on float32 input, which is
    what InsightFace's IJB evaluation runs: both point sets are rounded to float32; means, centred
    points, their cross-covariance and its SVD stay in float32 (float32 LAPACK); the rotation, scale
    and translation are then assembled in float64. Its ``params`` are float64 in every scikit-image
    version (the matrix starts as a float64 identity), and InsightFace passes ``params[0:2, :]`` to
    OpenCV unchanged.

    One step depends on the NumPy version, not on scikit-image: the scale is ``1.0 / var`` times the
    singular values, where ``var`` is a float32 scalar. NumPy 1.x promoted ``1.0 / float32`` to float64;
    NumPy >= 2 (NEP 50) keeps it in float32, which changes the matrix in the last bits for almost every
    face and about half of the crops by a grey level. InsightFace's evaluation pins mxnet 1.6, hence
    NumPy 1.x, and the published IJB tables come from there, so the reciprocal is taken in float64
    whatever NumPy is installed.

    Degenerate point sets follow the reference too: collinear points (covariance of rank 1 by
    ``numpy.linalg.matrix_rank``) get scikit-image's rank-deficient rotation; identical points raise
    ValueError (scikit-image would return NaN).
    """
    return _umeyama_float32(src, dst, np.float64)[:2].copy()


def _umeyama_float32(src, dst, reciprocal_dtype) -> np.ndarray:
    """The 3x3 homogeneous fit; ``reciprocal_dtype`` float32 gives what scikit-image computes under
    NumPy >= 2, float64 what it computed under NumPy 1.x (see ``similarity_transform``)."""
    src = np.asarray(src, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float32).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"expected matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    covariance = dst_centred.T @ src_centred / len(src)  # float32, Umeyama (1991) eq. 38
    signs = np.ones(2, dtype=np.float64)
    if np.linalg.det(covariance) < 0:  # eq. 39: flip the last axis rather than reflect
        signs[1] = -1
    u, singular, vt = np.linalg.svd(covariance)
    # The matrix is filled in place and its upper-left view used, as the reference does, so NumPy takes
    # the same code path (and rounding) for every product.
    matrix = np.eye(3, dtype=np.float64)
    rank = np.linalg.matrix_rank(covariance)
    if rank == 0:
        raise ValueError("expected points that are not all identical (the similarity is undefined)")
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        matrix[:2, :2] = u @ vt  # a float32 product here, as in the reference
    elif rank == 1:
        matrix[:2, :2] = u @ np.diag([1.0, -1.0]) @ vt
    else:
        matrix[:2, :2] = u @ np.diag(signs) @ vt
    reciprocal = reciprocal_dtype(1.0) / reciprocal_dtype(src_centred.var(axis=0).sum())
    scale = reciprocal * (singular @ signs)  # eqs. 41-42
    matrix[:2, 2] = dst_mean - scale * (matrix[:2, :2] @ src_mean.T)
    matrix[:2, :2] *= scale
    return matrix


# No photograph is 100,000 pixels wide: a landmark file holding such coordinates is damaged. Points must lie
# in the image or near it (half its size around it: a face cut by the border keeps its points close).
COORDINATE_LIMIT = 100_000.0
IMAGE_MARGIN = 0.5


def landmark_problem(values) -> str | None:
    """Why 10 numbers read from a landmark file (x1 y1 ... x5 y5) cannot be a face's 5 points, or None. The
    one check of every landmark file (facerec-embed --landmarks, IJB's name_5pts_score)."""
    points = np.asarray(values, dtype=np.float64)
    if points.size != 10 or not np.isfinite(points).all() or np.abs(points).max() > COORDINATE_LIMIT:
        return f"expected 5 points (x, y) of finite pixel coordinates within ±{COORDINATE_LIMIT:.0f}"
    if len({(float(x), float(y)) for x, y in points.reshape(5, 2)}) < 2:
        return "expected 5 distinct points, got the same point 5 times"
    return None


def point_off_image(points: np.ndarray, width: int, height: int) -> tuple[float, float] | None:
    """The first of the 5 points (x, y) farther than half the image's size outside it, or None: the rule
    ``align_face`` applies, for callers (a face detector) that drop such a face rather than fail."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = ((xy[:, 0] >= -IMAGE_MARGIN * width) & (xy[:, 0] <= (1 + IMAGE_MARGIN) * width)
              & (xy[:, 1] >= -IMAGE_MARGIN * height) & (xy[:, 1] <= (1 + IMAGE_MARGIN) * height))
    if inside.all():
        return None
    x, y = xy[int(np.flatnonzero(~inside)[0])]
    return float(x), float(y)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112, *, source: str = "landmarks") -> np.ndarray:
    """Warp ``image`` so its 5 landmarks (x, y) land on the ArcFace template; returns a ``size``² crop.

    Bilinear, constant black border: the reference's ``cv2.warpAffine`` call. The channel order does not
    matter (each channel is warped alike); InsightFace warps the BGR image, then converts to RGB. Points far
    outside the image are an EvalError naming ``source`` (they would warp a blank crop).
    """
    points = np.asarray(landmarks, dtype=np.float32)
    problem = landmark_problem(points)
    if problem is not None:
        raise EvalError(f"{source}: {problem}")
    h, w = image.shape[:2]
    xy = points.reshape(5, 2)
    outside = point_off_image(xy, w, h)
    if outside is not None:
        x, y = outside
        raise EvalError(f"{source}: expected 5 points on the {w}x{h} image or within half its size of it, "
                        f"got ({x:g}, {y:g})")
    template = ARCFACE_TEMPLATE if size == 112 else ARCFACE_TEMPLATE * np.float32(size / 112.0)
    try:
        matrix = similarity_transform(xy, template)
    except ValueError:
        raise EvalError(f"{source}: expected 5 distinct points, got {xy.tolist()}") from None
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
