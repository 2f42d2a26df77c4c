"""Embedding-collapse diagnostics: the numbers on known geometries, and the warning they raise."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.train.diagnostics import collapse_stats, collapse_warning


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


def test_non_finite_embeddings_warn_instead_of_failing():
    embeddings = np.ones((8, 4))
    embeddings[3, 1] = np.nan
    stats = collapse_stats(embeddings)
    assert np.isnan(stats["mean_norm"]) and stats["dim"] == 4
    assert "not finite" in collapse_warning(stats)


def test_epoch_diagnostics_without_verification_sets_embed_training_faces(tiny_pack):
    import torch

    from facerec.data.augment import AdaFaceAugment
    from facerec.data.datasets import FaceDataset
    from facerec.model.space import IResNetSpace
    from facerec.train.diagnostics import epoch_diagnostics
    from nas_core.genotype import Genotype

    torch.manual_seed(0)
    backbone = IResNetSpace(embedding_size=32).build(Genotype.uniform(4, 4)).train()
    train_set = FaceDataset(tiny_pack, transform=AdaFaceAugment(seed=0), normalize=False)
    health = epoch_diagnostics(backbone, {}, train_set, "cpu", batch_size=32)
    assert health["on"] == "64 training images" and health["dim"] == 32
    assert 0.0 <= health["mean_norm"] <= 1.0 and 1.0 <= health["effective_rank"] <= 32
    assert backbone.training  # left as it was found
    assert train_set.transform is not None  # the caller's dataset keeps its augmentation
    from_sets = epoch_diagnostics(backbone, {"a": {"mean_norm": 0.9, "effective_rank": 3.0, "dim": 32},
                                             "b": {"mean_norm": 0.1, "effective_rank": 20.0, "dim": 32}},
                                  train_set, "cpu")
    assert from_sets["on"] == "a" and "0.90 > 0.8" in from_sets["warning"]
