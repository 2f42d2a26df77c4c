"""Embedding-collapse diagnostics: the numbers on known geometries, and the warning they raise."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.diagnostics import collapse_stats, collapse_warning


def test_spread_directions_are_healthy():
    rng = np.random.default_rng(0)
    stats = collapse_stats(rng.normal(size=(2000, 64)) * 7.0)  # raw scale does not matter
    assert stats["mean_norm"] < 3 / np.sqrt(2000)
    assert stats["effective_rank"] > 0.9 * 64
    assert collapse_warning(stats, 64) is None


def test_one_shared_direction_is_collapse():
    rng = np.random.default_rng(0)
    shared = np.zeros(128)
    shared[0] = 1.0
    embeddings = shared + 0.2 * rng.normal(size=(500, 128)) / np.sqrt(128)  # every face near one direction
    stats = collapse_stats(embeddings)
    assert stats["mean_norm"] > 0.95
    warning = collapse_warning(stats, 128)
    assert warning is not None and "norm of the mean normalised embedding" in warning


def test_embeddings_on_a_few_axes_have_a_low_effective_rank():
    rng = np.random.default_rng(1)
    embeddings = np.zeros((400, 512))
    embeddings[:, :3] = rng.normal(size=(400, 3))  # centred, so the mean direction alone misses it
    stats = collapse_stats(embeddings)
    assert stats["mean_norm"] < 0.2
    assert 2.0 < stats["effective_rank"] < 3.01
    warning = collapse_warning(stats, 512)
    assert warning is not None and "effective rank" in warning


def test_rank_is_exactly_one_for_a_single_line():
    embeddings = np.outer(np.arange(1, 11), np.ones(16))
    assert collapse_stats(embeddings)["effective_rank"] == pytest.approx(1.0)
    assert collapse_stats(embeddings)["mean_norm"] == pytest.approx(1.0)
