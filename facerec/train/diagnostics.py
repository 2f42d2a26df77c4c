"""Embedding-collapse diagnostics of a face model's validation embeddings (ARCHITECTURE §4).

A collapsed face model maps every face near one direction: verification then rests on tiny angle
differences, and eval-mode embeddings can be far off in scale from training mode. Two numbers tell it:

- ``mean_norm``: ‖mean of the L2-normalised embeddings‖, 0 for directions spread evenly, 1 when they all
  coincide. Independent random directions in d dimensions give about 1/√N for N samples.
- ``effective_rank``: exp of the entropy of the normalised singular values of the L2-normalised embedding
  matrix (Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007):
  1 when all embeddings lie on one line, d when they fill every dimension evenly.
"""

from __future__ import annotations

import math

import numpy as np

# A model is reported as collapsed when most of every embedding is one shared direction (two faces of
# different people then have cosine ≥ mean_norm² on average), or when the embeddings span only a few
# dimensions of the d available.
MAX_MEAN_NORM = 0.8
MIN_RANK_FRACTION = 0.02
MIN_RANK = 2.0


def collapse_stats(embeddings: np.ndarray) -> dict[str, float]:
    """``{"mean_norm", "effective_rank"}`` of embeddings [N, d] (raw or normalised; normalised here)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"embeddings: expected [N >= 2, d], got shape {x.shape}")
    if not np.isfinite(x).all():  # a diverged model: nothing to measure (the warning says so)
        return {"mean_norm": math.nan, "effective_rank": math.nan, "dim": int(x.shape[1])}
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    singular = np.linalg.svd(x, compute_uv=False)
    p = singular / max(float(singular.sum()), 1e-300)
    p = p[p > 0]
    entropy = float(-(p * np.log(p)).sum())
    return {"mean_norm": float(np.linalg.norm(x.mean(axis=0))), "effective_rank": math.exp(entropy),
            "dim": int(x.shape[1])}


def collapse_warning(stats: dict[str, float], dim: int | None = None) -> str | None:
    """A one-line warning when ``stats`` (from ``collapse_stats``; d = ``dim`` or stats["dim"]) show collapse."""
    dim = int(dim if dim is not None else stats["dim"])
    min_rank = max(MIN_RANK, MIN_RANK_FRACTION * dim)
    if not (math.isfinite(stats["mean_norm"]) and math.isfinite(stats["effective_rank"])):
        return "embeddings collapsed: they are not finite (NaN or inf)"
    reasons = []
    if stats["mean_norm"] > MAX_MEAN_NORM:
        reasons.append(f"norm of the mean normalised embedding {stats['mean_norm']:.2f} > {MAX_MEAN_NORM}")
    if stats["effective_rank"] < min_rank:
        reasons.append(f"effective rank {stats['effective_rank']:.1f} < {min_rank:g} of {dim} dimensions")
    if not reasons:
        return None
    return "embeddings collapsed: " + "; ".join(reasons)


SAMPLE_IMAGES = 512  # training images embedded when a run has no verification sets


def epoch_diagnostics(backbone, results: dict[str, dict], train_set, device, batch_size: int = 128) -> dict:
    """Collapse numbers of an epoch's model: from the verification sets' embeddings (``results`` of
    facerec.train.validation.verify carry them), else from SAMPLE_IMAGES un-augmented training images (a fixed,
    seeded choice: every epoch sees the same faces). ``{"on", "mean_norm", "effective_rank", "dim",
    "warning"}``; the worst set (largest mean norm) speaks for several."""
    if results:
        on, worst = max(results.items(), key=lambda item: item[1].get("mean_norm", 0.0))
        if "mean_norm" in worst:
            stats = {k: worst[k] for k in ("mean_norm", "effective_rank", "dim")}
            return {"on": on, **stats, "warning": collapse_warning(stats)}
    embeddings = _sample_embeddings(backbone, train_set, device, batch_size)
    stats = collapse_stats(embeddings)
    return {"on": f"{len(embeddings)} training images", **stats, "warning": collapse_warning(stats)}


def _sample_embeddings(backbone, train_set, device, batch_size: int) -> np.ndarray:
    import copy

    import torch

    from eval_protocols.embed import normalize

    plain = copy.copy(train_set)
    if getattr(plain, "transform", None) is not None:
        plain.transform = None  # the faces as they are, not as augmented
    count = min(SAMPLE_IMAGES, len(plain))
    indices = np.sort(np.random.default_rng(0).choice(len(plain), count, replace=False))
    was_training = backbone.training
    backbone.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, count, batch_size):
                images = torch.stack([torch.as_tensor(plain[int(i)][0]) for i in indices[start:start + batch_size]])
                images = images.to(device)
                if images.dtype == torch.uint8:  # FaceDataset(normalize=False)
                    images = normalize(images)
                chunks.append(backbone(images).float().cpu().numpy())
    finally:
        backbone.train(was_training)
    return np.concatenate(chunks)
