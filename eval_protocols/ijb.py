"""IJB-B and IJB-C: 1:1 TAR@FAR over template pairs and, when the release has the lists, 1:N rank-k.

ARCHITECTURE §6: image feature = raw flip-sum (× detector score); per template, average the images of each
media, sum the media, L2-normalise; score = cosine; ROC by sklearn; TAR at the FPR nearest each FAR.
Pooling is one sparse matrix product and pair scoring multiplies template blocks, so IJB-C's 15.6M
pairs score in seconds from saved features (ARCHITECTURE §6 Scale).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse
from sklearn.metrics import auc, roc_curve
from sklearn.preprocessing import normalize

from eval_protocols.align import align_face
from eval_protocols.cmc import cmc
from eval_protocols.errors import EvalError
from eval_protocols.ijb_meta import (
    one_n_files,
    read_landmarks,
    read_template_media,
    read_template_pairs,
    read_template_subjects,
)
from eval_protocols.protocols import PROTOCOLS, Scored

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
_BLOCK_BYTES = 1 << 28  # ~256 MB per template score block keeps the scorer far under 4 GB


def image_weights(
    features: np.ndarray, detector_scores: np.ndarray, *, detector_score: bool = True, norm_score: bool = True
) -> np.ndarray:
    """Per-image factor on the raw flip-sum: detector score (D1) and, without norm score, 1/‖f‖ (N0)."""
    weights = np.ones(len(features), dtype=np.float64)
    if detector_score:
        weights *= detector_scores
    if not norm_score:
        norms = np.concatenate([np.linalg.norm(c, axis=1) for c in np.array_split(features, max(1, len(features) // 65536))])
        weights /= np.maximum(norms, 1e-12)
    return weights


def pool_templates(
    features: np.ndarray, templates: np.ndarray, medias: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Template features (float64, L2-normalised) and their sorted template ids.

    Each image gets weight w_i / (images in its media of its template); one sparse matrix (one entry
    per image) then gives Σ_media mean_media(w·f) per template in a single product.
    """
    unique_templates, t_index = np.unique(templates, return_inverse=True)
    _, m_index = np.unique(medias, return_inverse=True)
    key = t_index.astype(np.int64) * (int(m_index.max()) + 1) + m_index
    _, k_index, k_count = np.unique(key, return_inverse=True, return_counts=True)
    w = 1.0 / k_count[k_index]
    if weights is not None:
        w = w * weights
    n = len(features)
    pooling = scipy.sparse.csr_matrix((w, (t_index, np.arange(n))), shape=(len(unique_templates), n))
    pooled = np.empty((len(unique_templates), features.shape[1]), dtype=np.float64)
    for c in range(0, features.shape[1], 64):  # column chunks: never a float64 copy of all image features
        pooled[:, c : c + 64] = pooling @ np.ascontiguousarray(features[:, c : c + 64], dtype=np.float64)
    return normalize(pooled), unique_templates


def template_index(unique_templates: np.ndarray, ids: np.ndarray, source: str,
                   tid_mid: str = "the tid_mid list") -> np.ndarray:
    pos = np.searchsorted(unique_templates, ids)
    pos = np.minimum(pos, len(unique_templates) - 1)
    missing = unique_templates[pos] != ids
    if missing.any():
        raise EvalError(f"{source}: template {int(ids[np.flatnonzero(missing)[0]])} has no image in {tid_mid}")
    return pos


def _compact(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``index`` (sorted) and, for each value, its position among them (no sort)."""
    present = np.zeros(size, dtype=bool)
    present[index] = True
    position = np.cumsum(present) - 1
    return np.flatnonzero(present), position


def score_pairs(template_feats: np.ndarray, index1: np.ndarray, index2: np.ndarray) -> np.ndarray:
    """Cosine of template pairs (rows of ``template_feats``) by matrix products over template blocks.

    Every template that appears first in a pair is scored against every template that appears second,
    a block of first templates at a time (~256 MB of scores), and the pairs are read out of the block.
    For IJB-C (3.5k enrolment x 19.6k verification templates, 23% of them paired) that is a few dense
    products instead of 15.6M gathered dot products; no sort of the pairs is needed.
    """
    n = len(template_feats)
    rows, row_of = _compact(index1, n)
    cols, col_of = _compact(index2, n)
    r, c = row_of[index1], col_of[index2]
    partners = np.ascontiguousarray(template_feats[cols].T)
    per_block = max(1, _BLOCK_BYTES // (8 * len(cols)))
    scores = np.empty(len(index1), dtype=np.float64)
    if len(rows) <= per_block:
        block = template_feats[rows] @ partners
        scores[:] = block[r, c]
        return scores
    block_of = r // per_block
    for b in range(-(-len(rows) // per_block)):
        sel = np.flatnonzero(block_of == b)
        block = template_feats[rows[b * per_block : (b + 1) * per_block]] @ partners
        scores[sel] = block[r[sel] - b * per_block, c[sel]]
    return scores


def tar_at_far(labels: np.ndarray, scores: np.ndarray, fars=FARS) -> tuple[dict[str, float], float, tuple]:
    """TAR at the ROC point whose FPR is nearest each FAR, ties → higher TPR (ARCHITECTURE §6); AUC; (fpr, tpr)."""
    fpr, tpr, _ = roc_curve(labels, scores)  # sklearn default drop_intermediate, as InsightFace
    table = {}
    for far in fars:
        gap = np.abs(fpr - far)
        # TPR never decreases along the curve, so the last nearest point has the highest TPR.
        table[str(far)] = float(tpr[np.flatnonzero(gap == gap.min())[-1]])
    return table, float(auc(fpr, tpr)), (fpr, tpr)


def identification(
    probe_feats: np.ndarray, probe_subjects: np.ndarray, gallery_feats: np.ndarray, gallery_subjects: np.ndarray,
    ranks=(1, 5, 10), source: str = "1:N",
) -> dict:
    """Closed-set rank-k: a probe hits at k when fewer than k gallery templates outscore its true one."""
    order = np.argsort(gallery_subjects, kind="stable")
    sorted_subjects = gallery_subjects[order]
    if (sorted_subjects[1:] == sorted_subjects[:-1]).any():
        raise EvalError(f"{source}: expected one gallery template per subject")
    pos = np.minimum(np.searchsorted(sorted_subjects, probe_subjects), len(order) - 1)
    if (sorted_subjects[pos] != probe_subjects).any():
        bad = int(probe_subjects[np.flatnonzero(sorted_subjects[pos] != probe_subjects)[0]])
        raise EvalError(f"{source}: probe subject {bad} has no gallery template; expected one")
    # One template per subject and every probe has one: CMC over subject labels is exactly rank-k here.
    return cmc(probe_feats, probe_subjects, gallery_feats, gallery_subjects, ranks=ranks, source=source)


def _check_one_n(unique_templates: np.ndarray, tid_mid: str, gallery_paths: list[Path],
                 gallery: list[tuple[np.ndarray, np.ndarray]], probe_path: Path, probe_templates: np.ndarray,
                 probe_subjects: np.ndarray) -> None:
    """The 1:N lists agree with the tid_mid list and with each other; errors name the list at fault."""
    owner: dict[int, Path] = {}
    for path, (templates, subjects) in zip(gallery_paths, gallery):
        template_index(unique_templates, templates, str(path), tid_mid)
        for subject in subjects.tolist():
            if subject in owner:
                raise EvalError(f"{path}: subject {subject} already has a gallery template (in {owner[subject].name}); "
                                "expected one gallery template per subject")
            owner[subject] = path
    template_index(unique_templates, probe_templates, str(probe_path), tid_mid)
    missing = sorted(set(probe_subjects.tolist()) - set(owner))
    if missing:
        raise EvalError(f"{probe_path}: probe subject {missing[0]} has no gallery template in "
                        f"{' or '.join(p.name for p in gallery_paths)}; expected one")


class IJBProtocol:
    """IJB-B or IJB-C in InsightFace's release layout: ``<DIR>/{loose_crop,meta}``."""

    def __init__(self, target: str):
        self.target = target  # "IJBB" or "IJBC"
        self.name = target.lower()

    def locate(self, data_dir: Path) -> Path | None:
        data_dir = Path(data_dir)
        candidates = [data_dir, data_dir / self.target, data_dir / "IJB_release" / self.target]
        for c in candidates:
            if c.is_dir() and (c.name.upper() == self.target or (c / "meta" / f"{self.name}_face_tid_mid.txt").is_file()):
                return c
        return None

    def expected(self, data_dir: Path) -> str:
        return f"{data_dir}: expected an IJB folder {self.target}/ (or IJB_release/{self.target}/) with loose_crop/ and meta/"

    def prepare(self, root: Path) -> dict:
        meta = root / "meta"
        names, templates, medias = read_template_media(meta / f"{self.name}_face_tid_mid.txt")
        lmk_path = meta / f"{self.name}_name_5pts_score.txt"
        lmk_names, landmarks, det_scores = read_landmarks(lmk_path)
        if lmk_names != names:
            raise EvalError(f"{lmk_path}: expected the same image names in the same order as {self.name}_face_tid_mid.txt")
        pair_path = meta / f"{self.name}_template_pair_label.txt"
        t1, t2, labels = read_template_pairs(pair_path)
        unique = np.unique(templates)
        tid_mid = f"{self.name}_face_tid_mid.txt"  # named too: a template missing there may be its fault
        template_index(unique, t1, str(pair_path), tid_mid)
        template_index(unique, t2, str(pair_path), tid_mid)
        prepared = dict(root=root, names=names, landmarks=landmarks, arrays=dict(
            detector_scores=det_scores, templates=templates, medias=medias, t1=t1, t2=t2, labels=labels))
        lists = one_n_files(meta, self.name)
        if lists is not None:
            gallery = [read_template_subjects(g) for g in lists[0]]
            probe_t, probe_s = read_template_subjects(lists[1])
            _check_one_n(unique, tid_mid, lists[0], gallery, lists[1], probe_t, probe_s)
            prepared["arrays"].update(
                gallery_templates=np.concatenate([g[0] for g in gallery]),
                gallery_subjects=np.concatenate([g[1] for g in gallery]),
                probe_templates=probe_t, probe_subjects=probe_s)
        if not (root / "loose_crop").is_dir():
            raise EvalError(f"{root / 'loose_crop'}: folder not found; expected the IJB loose face crops")
        return prepared

    def count_images(self, prepared) -> int:
        return len(prepared["names"])

    def extract(self, prepared, embedder, *, flip: bool = True, batch_size: int = 64, progress=None) -> dict:
        crops = prepared["root"] / "loose_crop"
        names, landmarks = prepared["names"], prepared["landmarks"]

        def load(i: int) -> np.ndarray:
            bgr = cv2.imread(str(crops / names[i]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise EvalError(f"{crops / names[i]}: expected a readable image (listed in the IJB meta files)")
            # InsightFace aligns the BGR crop, then feeds RGB.
            where = f"{crops.parent / 'meta' / f'{self.name}_name_5pts_score.txt'}: {names[i]}"
            return cv2.cvtColor(align_face(bgr, landmarks[i], source=where), cv2.COLOR_BGR2RGB)

        def stream():
            # Decode a few batches ahead in threads (cv2 releases the GIL); never the whole set at once.
            with ThreadPoolExecutor(max_workers=4) as pool:
                for lo in range(0, len(names), 4 * batch_size):
                    yield from pool.map(load, range(lo, min(lo + 4 * batch_size, len(names))))

        features = embedder.embed(stream(), flip=flip, normalize=False, progress=progress)
        return {"features": features, **prepared["arrays"]}

    def score(self, features: dict, *, detector_score: bool = True, norm_score: bool = True, **_options) -> Scored:
        f = features
        weights = image_weights(f["features"], f["detector_scores"], detector_score=detector_score, norm_score=norm_score)
        template_feats, unique = pool_templates(f["features"], f["templates"], f["medias"], weights)
        i1 = template_index(unique, f["t1"], "pairs")
        i2 = template_index(unique, f["t2"], "pairs")
        scores = score_pairs(template_feats, i1, i2)
        table, area, roc = tar_at_far(f["labels"], scores)
        result = {"tar_at_far": table, "auc": area, "templates": int(len(unique)), "pairs": int(len(scores))}
        if "probe_templates" in f:
            g = template_index(unique, f["gallery_templates"], "1:N gallery")
            p = template_index(unique, f["probe_templates"], "1:N probe")
            result["identification"] = identification(
                template_feats[p], f["probe_subjects"], template_feats[g], f["gallery_subjects"], source=f"{self.name} 1:N")
        return Scored(result, roc=roc)


for _target in ("IJBB", "IJBC"):
    PROTOCOLS.register(_target.lower())(functools.partial(IJBProtocol, _target))
