"""Verification sets used while training and searching (ARCHITECTURE §4 face fitness).

Pairs built from identities held out of the training set (the default fitness of the search and of
facerec-train's choice of model.pt), or `.bin` packs of the data folder (lfw, cfp_fp, agedb_30): the fitness
only when asked (paper style), else a report scored every few epochs. Scores are the 10-fold accuracy of
eval_protocols (ARCHITECTURE §6) on flip-fused embeddings.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facerec.errors import FaceRecError


@dataclass
class VerificationSet:
    name: str
    images: np.ndarray  # RGB uint8 [N, H, W, 3]
    issame: np.ndarray  # bool [P]
    index: np.ndarray | None = None  # pair i = images[index[2i]], images[index[2i+1]]; None: index = arange(2P)


def find_bins(data_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """The `.bin` packs in ``data_dir``: all of them, or exactly ``names`` (missing one -> FaceRecError)."""
    data_dir = Path(data_dir)
    if names is None:
        return sorted(data_dir.glob("*.bin"))
    paths = []
    for name in names:  # any stem: the benchmark packs, or a user's own (facerec-data make-bin)
        path = data_dir / (name if name.endswith(".bin") else f"{name}.bin")
        if not path.is_file():
            present = ", ".join(p.stem for p in sorted(data_dir.glob("*.bin"))) or "none"
            raise FaceRecError(f"{path}: expected a verification .bin pack (named by --val-bins); the .bin packs "
                               f"in {data_dir}: {present}")
        paths.append(path)
    return paths


def load_bin_sets(paths: list[Path], image_size: int = 112) -> list[VerificationSet]:
    from eval_protocols.bins import load_bin

    sets = []
    for path in paths:
        images, issame = load_bin(path, image_size=image_size)
        if len(issame) < 10:  # eval_protocols.verification's 10 folds; said here, where the file is known
            raise FaceRecError(f"{path}: expected at least 10 pairs for 10-fold verification, got {len(issame)}")
        unique, index = _distinct_images(images)
        sets.append(VerificationSet(path.stem, unique, np.asarray(issame, bool), index))
    return sets


def _distinct_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct image once, and where each pair slot finds it: packs built from few identities
    repeat their images across pairs, and embedding dominates the cost of a verification."""
    first: dict[bytes, int] = {}
    index = np.array([first.setdefault(hashlib.blake2b(im.tobytes(), digest_size=16).digest(), len(first))
                      for im in images], dtype=np.int64)
    keep = np.zeros(len(first), dtype=np.int64)
    keep[index] = np.arange(len(images))
    return images[keep], index


def _max_positive_pairs(pack, identities: list[int]) -> int:
    sizes = [len(pack.identity_keys(i)) for i in identities]
    return sum(n * (n - 1) // 2 for n in sizes)


def holdout_set(pack, identities: list[int], seed: int, max_pairs: int = 3000) -> VerificationSet:
    """Half-positive pairs of the held-out identities; as many as they allow, up to ``max_pairs``.

    The pairs are drawn person by person (``sample_pairs(by="people")``), so a few held-out people with
    hundreds of photos do not make most of the same pairs; each image is stored (and embedded) once, since
    pairs of a few identities reuse their images many times.
    """
    from facerec.data.datasets import sample_pairs

    if len(identities) < 2:
        raise FaceRecError(f"{getattr(pack, 'root', 'data')}: expected at least 2 held-out identities "
                           f"to build verification pairs (got {len(identities)}; raise --holdout-ids)")
    num_pairs = min(max_pairs, 2 * _max_positive_pairs(pack, identities))
    num_pairs -= num_pairs % 20  # whole folds, half positive (ARCHITECTURE §6 10-fold)
    if num_pairs < 20:
        raise FaceRecError(f"{getattr(pack, 'root', 'data')}: held-out identities have too few images "
                           "for 10-fold verification (need ≥ 10 positive pairs)")
    pairs, issame = sample_pairs([pack.identity_keys(int(i)) for i in identities], num_pairs, seed,
                                  by="people")
    keys, index = np.unique(np.asarray(pairs, np.int64).reshape(-1), return_inverse=True)
    images = np.stack([pack.image(int(key)) for key in keys])
    return VerificationSet("holdout", images, np.asarray(issame, bool), index.reshape(-1))


@torch.no_grad()
def verify(backbone: nn.Module, sets: list[VerificationSet], device: torch.device | str,
           batch_size: int = 128, far: float | None = None) -> dict[str, dict]:
    """10-fold verification of ``backbone`` on every set: {name: evaluate_verification dict (fractions), the
    pairs' ROC AUC of cosine similarity (``auc``: threshold-free, a smoother ranking signal than the 10-fold
    accuracy), plus the collapse numbers of facerec.train.diagnostics.collapse_stats}. With ``far``, each also
    holds ``verification_threshold``: the cosine threshold calibrated at that false accept rate on its pairs
    (facerec.deploy.threshold.calibrate_threshold; None when the embeddings are not finite)."""
    from eval_protocols.embed import Embedder
    from eval_protocols.verification import evaluate_verification
    from facerec.train.diagnostics import collapse_stats

    was_training = backbone.training
    backbone.eval()
    try:
        embedder = Embedder(backbone, device=str(device), batch_size=batch_size)
        results = {}
        for vs in sets:
            embeddings = embedder.embed(vs.images, flip=True)
            health = collapse_stats(embeddings)  # each distinct face once (facerec.train.diagnostics)
            if vs.index is not None:
                embeddings = embeddings[vs.index]
            embeddings = np.asarray(embeddings, np.float64)
            results[vs.name] = {**evaluate_verification(embeddings, vs.issame), "auc": pair_auc(embeddings, vs.issame),
                                **health}
            if far is not None:
                results[vs.name]["verification_threshold"] = _calibrated(embeddings, vs.issame, far)
        return results
    finally:
        backbone.train(was_training)


def _calibrated(embeddings: np.ndarray, issame: np.ndarray, far: float) -> dict | None:
    from facerec.deploy.threshold import calibrate_threshold

    return calibrate_threshold(embeddings, issame, far) if np.isfinite(embeddings).all() else None


def pair_auc(embeddings: np.ndarray, issame: np.ndarray) -> float:
    """ROC AUC of the cosine similarity of pairs (rows 2i, 2i+1) against "same identity"."""
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import normalize

    emb = normalize(embeddings)
    return float(roc_auc_score(np.asarray(issame, bool), np.sum(emb[0::2] * emb[1::2], axis=1)))


REPORT_SHARE = 0.10  # of the training time, at most, for the report-only benchmark packs


def report_cadence(report_sets: list[VerificationSet], train_images: int, world_size: int = 1,
                   share: float = REPORT_SHARE) -> int:
    """Epochs between scorings of report-only sets so that they take about ``share`` of the training time at most.

    Scoring embeds each distinct image twice (it and its flip) on one rank; an epoch trains each of
    ``train_images`` once over ``world_size`` ranks. A scored image is counted as costly as a trained one:
    its two forward passes (about 2/3 of a training step's forward and backward) run in float32, without
    the training's AMP, and at a batch tuned for nothing; on a CPU they measured about as costly. 0 when
    there is nothing to score."""
    images = sum(len(vs.images) for vs in report_sets)
    if not images:
        return 0
    return max(1, math.ceil(images * world_size / (share * max(train_images, 1))))


def mean_accuracy(results: dict[str, dict]) -> float:
    """One fitness from several sets: the mean of their accuracies (fraction)."""
    return float(np.mean([r["accuracy"] for r in results.values()]))
