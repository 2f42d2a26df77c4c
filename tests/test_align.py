"""5-point alignment equals InsightFace's IJB evaluation crop for crop (float32 Umeyama, float32 template)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from eval_protocols.align import ARCFACE_TEMPLATE, _umeyama_float32, align_face, similarity_transform
from eval_protocols.errors import EvalError

NUMPY_2 = int(np.__version__.split(".")[0]) >= 2

# The 112x112 template as docs/ARCHITECTURE.md and papers print it (float64 literals).
TEMPLATE_LITERALS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# IJB-style landmark lines (x1 y1 ... x5 y5, as in <t>_name_5pts_score.txt) and the matrix InsightFace's
# evaluation warps them with: SimilarityTransform().estimate(float32 landmarks, float32 template).params[0:2]
# recorded with scikit-image 0.26.0 on NumPy 1.26.4 (NumPy 1.x promotion, as in InsightFace's pinned
# environment). On every one of them a float64 fit and NumPy 2's float32 reciprocal change the crop.
GOLDEN = [
    ("71.208 104.532 118.904 98.117 97.311 131.420 82.975 160.003 123.590 154.876",
     [[0.7125609660405297, -0.09623383826560072, -1.8830009130845653],
      [0.09623383826560072, 0.7125609660405297, -30.08989282044432]]),
    ("35.5 61.25 80.125 60.0 58.0 85.75 40.5 111.0 78.25 110.5",
     [[0.7993852885322059, -0.017575179293321593, 10.788300478494534],
      [0.017575179293321593, 0.7993852885322059, 2.3657543540819574]]),
    ("150.412 180.977 221.035 196.640 177.560 233.018 136.204 266.331 202.783 280.129",
     [[0.4580405495637486, 0.09487117473862827, -47.276282603374625],
      [-0.09487117473862827, 0.4580405495637486, -17.249495283004038]]),
    ("48.316 55.027 66.841 55.994 57.762 66.383 49.910 77.601 64.875 78.340",
     [[1.848521050347189, 0.05517530654176265, -54.01770458078066],
      [-0.05517530654176265, 1.848521050347189, -48.16342231994244]]),
]


def _landmarks(line: str) -> np.ndarray:
    # As InsightFace parses a meta line: Python floats, then a float32 array.
    return np.array([float(v) for v in line.split()], dtype=np.float32).reshape(5, 2)


def _noise_image(seed: int = 0, size: int = 320) -> np.ndarray:
    # Pure noise: any sub-pixel change of the warp shows up in some pixel.
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _reference_warp(image: np.ndarray, matrix) -> np.ndarray:
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (112, 112), borderValue=0.0)


def _ijb_like_landmarks(rng: np.random.Generator) -> np.ndarray:
    angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.4, 3.0)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = TEMPLATE_LITERALS @ rot.T + rng.uniform(0, 250, 2) + rng.normal(0, 2.5, (5, 2))
    return np.round(points, 3).astype(np.float32)


def test_template_is_built_in_float32_like_insightface():
    assert ARCFACE_TEMPLATE.dtype == np.float32 and not ARCFACE_TEMPLATE.flags.writeable
    reference = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655],
                          [62.7299, 92.2041]], dtype=np.float32)  # InsightFace's 96x112 template...
    reference[:, 0] += 8.0  # ...moved right in place, in float32
    np.testing.assert_array_equal(ARCFACE_TEMPLATE, reference)
    np.testing.assert_allclose(ARCFACE_TEMPLATE, TEMPLATE_LITERALS, atol=5e-6)
    # float32(62.7299) + 8 is not float32(70.7299): building the template the reference's way matters.
    assert ARCFACE_TEMPLATE[4, 0] == np.float32(62.7299) + np.float32(8.0) != np.float32(70.7299)


def _skimage_fit(transform, landmarks):
    """InsightFace's call, SimilarityTransform().estimate(landmarks, template); scikit-image >= 0.26 runs the
    same estimation through from_estimate() and deprecates estimate()."""
    if hasattr(transform.SimilarityTransform, "from_estimate"):
        tform = transform.SimilarityTransform.from_estimate(landmarks, ARCFACE_TEMPLATE)
        assert tform
        return tform
    tform = transform.SimilarityTransform()
    assert tform.estimate(landmarks, ARCFACE_TEMPLATE)
    return tform


def test_fit_equals_scikit_image_bit_for_bit():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(7)
    # Under NumPy >= 2 scikit-image takes 1/var in float32 (NEP 50); the fit is otherwise the same.
    reciprocal = np.float32 if NUMPY_2 else np.float64
    for _ in range(100):
        landmarks = _ijb_like_landmarks(rng)
        tform = _skimage_fit(transform, landmarks)
        np.testing.assert_array_equal(_umeyama_float32(landmarks, ARCFACE_TEMPLATE, reciprocal), tform.params)
        if not NUMPY_2:
            np.testing.assert_array_equal(similarity_transform(landmarks, ARCFACE_TEMPLATE), tform.params[0:2])


@pytest.mark.parametrize("line, matrix", GOLDEN, ids=[f"face{i}" for i in range(len(GOLDEN))])
def test_crops_are_byte_identical_to_insightface(line, matrix):
    landmarks = _landmarks(line)
    np.testing.assert_array_equal(similarity_transform(landmarks, ARCFACE_TEMPLATE), matrix)
    image = _noise_image()
    np.testing.assert_array_equal(align_face(image, landmarks), _reference_warp(image, matrix))
    # float64 landmarks (ijb_meta, a user's array) are rounded to float32 first, as the reference does.
    np.testing.assert_array_equal(align_face(image, landmarks.astype(np.float64)), _reference_warp(image, matrix))


@pytest.mark.parametrize("line, matrix", GOLDEN, ids=[f"face{i}" for i in range(len(GOLDEN))])
def test_float64_fit_and_numpy2_reciprocal_give_other_crops(line, matrix):
    landmarks = _landmarks(line)
    image = _noise_image()
    reference = _reference_warp(image, matrix)
    # A float64 least-squares similarity onto the float64 literals (what align.py did before).
    src = landmarks.astype(np.float64)
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones(5), np.zeros(5)
    design = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, TEMPLATE_LITERALS.T.reshape(-1), rcond=None)
    float64_fit = np.array([[a, -b, tx], [b, a, ty]])
    np.testing.assert_allclose(float64_fit, matrix, rtol=1e-5, atol=1e-4)  # the same transform...
    assert (_reference_warp(image, float64_fit) != reference).any()  # ...but not the same crop
    numpy2 = _umeyama_float32(landmarks, ARCFACE_TEMPLATE, np.float32)[:2]
    assert (_reference_warp(image, numpy2) != reference).any()


def test_known_similarity_is_recovered():
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE), [[1, 0, 0], [0, 1, 0]], atol=1e-5)
    angle, scale, shift = np.deg2rad(20), 1.3, np.array([15.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = TEMPLATE_LITERALS @ rot.T + shift
    inverse = np.linalg.inv(np.vstack([np.hstack([rot, shift[:, None]]), [0, 0, 1]]))[:2]
    np.testing.assert_allclose(similarity_transform(moved, TEMPLATE_LITERALS), inverse, rtol=1e-5, atol=1e-4)


def _umeyama_float64(src, dst):
    """Umeyama (1991) in float64, written from the paper."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / (s**2).sum(1).mean()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def test_least_squares_similarity_without_reflection():
    rng = np.random.default_rng(1)
    noisy = TEMPLATE_LITERALS * 1.7 + 20 + rng.normal(0, 2.0, (5, 2))
    np.testing.assert_allclose(similarity_transform(noisy, TEMPLATE_LITERALS),
                               _umeyama_float64(noisy, TEMPLATE_LITERALS), rtol=1e-5, atol=1e-4)
    mirrored = TEMPLATE_LITERALS * [-1, 1]
    m = similarity_transform(mirrored, TEMPLATE_LITERALS)
    assert np.linalg.det(m[:, :2]) > 0  # never a reflection
    np.testing.assert_allclose(m, _umeyama_float64(mirrored, TEMPLATE_LITERALS), rtol=1e-5, atol=1e-4)


def test_align_face_recovers_the_face():
    rng = np.random.default_rng(2)
    face = cv2.resize(rng.uniform(0, 255, (6, 6, 3)).astype(np.float32), (112, 112), interpolation=cv2.INTER_CUBIC)
    face = face.clip(0, 255).astype(np.uint8)
    matrix = cv2.getRotationMatrix2D((56, 56), 12, 1.25)
    matrix[:, 2] += [20, 25]
    crop = cv2.warpAffine(face, matrix, (160, 160), borderMode=cv2.BORDER_REFLECT)
    points = TEMPLATE_LITERALS @ matrix[:, :2].T + matrix[:, 2]
    aligned = align_face(crop, points)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    inner = (slice(10, 102), slice(10, 102))
    assert np.abs(aligned[inner].astype(float) - face[inner]).mean() < 3.0


def test_degenerate_landmarks():
    image = _noise_image(size=64)
    with pytest.raises(EvalError, match="5 distinct points"):
        align_face(image, np.full((5, 2), 30.0))
    with pytest.raises(EvalError, match="5 points"):
        align_face(image, np.zeros((4, 2)))
    # Collinear points: scikit-image's rank-1 branch, still a rotation with positive scale.
    collinear = np.float32([[10, 20], [30, 40], [50, 60], [35, 45], [70, 80]])
    m = similarity_transform(collinear, ARCFACE_TEMPLATE)
    assert np.isfinite(m).all() and np.linalg.det(m[:, :2]) > 0
