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
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    singular = np.linalg.svd(x, compute_uv=False)
    p = singular / max(float(singular.sum()), 1e-300)
    p = p[p > 0]
    entropy = float(-(p * np.log(p)).sum())
    return {"mean_norm": float(np.linalg.norm(x.mean(axis=0))), "effective_rank": math.exp(entropy)}


def collapse_warning(stats: dict[str, float], dim: int) -> str | None:
    """A one-line warning when ``stats`` (from ``collapse_stats`` of d=``dim`` embeddings) show collapse."""
    min_rank = max(MIN_RANK, MIN_RANK_FRACTION * dim)
    reasons = []
    if stats["mean_norm"] > MAX_MEAN_NORM:
        reasons.append(f"norm of the mean normalised embedding {stats['mean_norm']:.2f} > {MAX_MEAN_NORM}")
    if stats["effective_rank"] < min_rank:
        reasons.append(f"effective rank {stats['effective_rank']:.1f} < {min_rank:g} of {dim} dimensions")
    if not reasons:
        return None
    return "embeddings collapsed: " + "; ".join(reasons)
