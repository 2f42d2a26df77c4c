"""Closed-set identification (CMC rank-k), shared by TinyFace and IJB-B/C 1:N."""

from __future__ import annotations

import numpy as np

from eval_protocols.errors import EvalError


def cmc(
    probe_feats: np.ndarray, probe_labels: np.ndarray, gallery_feats: np.ndarray, gallery_labels: np.ndarray,
    ranks=(1, 5, 20), source: str = "TinyFace",
) -> dict:
    """Closed-set CMC: rank-k = share of probes with a true match among the k best gallery scores.

    Labels are integers; a negative gallery label (a distractor) never matches. A probe's rank is
    1 + the number of gallery items scoring strictly above its best true match. Probes without any
    match in the gallery are left out, as AdaFace's DIR_FAR does for closed set.
    """
    probe_labels = np.asarray(probe_labels, dtype=np.int64)
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    gallery_labels = np.where(gallery_labels < 0, -1, gallery_labels)
    probe_labels = np.where(probe_labels < 0, -2, probe_labels)  # never equal to a distractor's -1
    found = []
    for lo in range(0, len(probe_feats), 256):  # 256 x 157k gallery scores per block (TinyFace's gallery)
        sims = probe_feats[lo : lo + 256] @ gallery_feats.T
        match = probe_labels[lo : lo + 256, None] == gallery_labels[None, :]
        has_match = match.any(axis=1)
        best_true = np.where(match, sims, -np.inf).max(axis=1)
        found.append((1 + (sims > best_true[:, None]).sum(axis=1))[has_match])
    rank = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    if len(rank) == 0:
        raise EvalError(f"{source}: expected probes whose identity appears in the gallery, found none")
    result = {f"rank{k}": float(np.mean(rank <= k)) for k in ranks}
    result.update(probes=int(len(rank)), gallery=int(len(gallery_feats)))
    return result
