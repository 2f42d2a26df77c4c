"""eval_protocols against small cases computed by hand (ARCHITECTURE §6)."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from eval_protocols import ijb
from eval_protocols.bins import load_bin, read_bin, write_bin
from eval_protocols.cmc import cmc
from eval_protocols.embed import Embedder
from eval_protocols.errors import EvalError
from eval_protocols.protocols import PROTOCOL_ORDER, list_protocols
from eval_protocols.verification import evaluate_verification


def _pairs_at(distances: list[float]) -> np.ndarray:
    """Unit 2-d embeddings whose pair i has squared L2 distance distances[i] (= 2 − 2 cos θ)."""
    rows = []
    for d in distances:
        theta = np.arccos(1 - d / 2)
        rows += [[1.0, 0.0], [np.cos(theta), np.sin(theta)]]
    return np.array(rows)


def test_ten_fold_by_hand():
    # 20 pairs, 2 per fold, alternating genuine/impostor. Genuine at 0.305, impostor at 1.705, except
    # pair 0: a hard genuine at 1.005. Folds 1-9 train with pair 0 → first best threshold 1.01, test 100%.
    # Fold 0 trains without it → first best 0.31, and its test pair 0 is wrong → 50%.
    issame = np.array([i % 2 == 0 for i in range(20)])
    distances = [0.305 if s else 1.705 for s in issame]
    distances[0] = 1.005
    result = evaluate_verification(_pairs_at(distances) * 3.0, issame)  # any norm: normalised inside
    assert result["fold_accuracies"] == [0.5] + [1.0] * 9
    assert result["accuracy"] == pytest.approx(0.95)
    assert result["std"] == pytest.approx(0.15)  # population std: sqrt((0.45² + 9·0.05²)/10)
    assert result["threshold"] == pytest.approx((0.31 + 9 * 1.01) / 10)
    assert result["pairs"] == 20


def test_ten_fold_needs_ten_pairs():
    with pytest.raises(EvalError):
        evaluate_verification(_pairs_at([0.3] * 4), np.ones(4, bool))


def test_tar_at_far_nearest_fpr_with_ties():
    # Genuine 0.9, 0.4; impostors 0.8, 0.3, 0.2, 0.1. sklearn's ROC (drop_intermediate) keeps
    # (0,0) (0,.5) (.25,.5) (.25,1) (1,1).
    labels = np.array([1, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1])
    table, area, (fpr, tpr) = ijb.tar_at_far(labels, scores, fars=(1e-6, 0.1, 0.125, 0.25))
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.25, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert table == {"1e-06": 0.5, "0.1": 0.5, "0.125": 1.0, "0.25": 1.0}  # ties → the higher TPR
    assert area == pytest.approx(7 / 8)  # 7 of the 8 genuine/impostor orderings are right


def test_tar_keys_are_the_json_contract():
    table, _, _ = ijb.tar_at_far(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2]))
    assert list(table) == ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"]


def test_template_pooling_by_hand():
    feats = np.array([[1, 0, 0], [3, 0, 0], [0, 2, 0], [0, 0, 5]], dtype=np.float32)
    templates = np.array([9, 9, 9, 4])
    medias = np.array([1, 1, 2, 3])
    # Template 9: media 1 mean (2,0,0) + media 2 (0,2,0) → (1,1,0)/√2; template 4 → (0,0,1); sorted ids.
    pooled, ids = ijb.pool_templates(feats, templates, medias)
    assert ids.tolist() == [4, 9]
    np.testing.assert_allclose(pooled, [[0, 0, 1], [2**-0.5, 2**-0.5, 0]], atol=1e-12)
    # Detector scores 1, 1, 0.5, 1: media 2 becomes (0,1,0) → (2,1,0)/√5.
    w = ijb.image_weights(feats, np.array([1, 1, 0.5, 1]))
    pooled, _ = ijb.pool_templates(feats, templates, medias, w)
    np.testing.assert_allclose(pooled[1], np.array([2, 1, 0]) / 5**0.5, atol=1e-12)
    # Without norm score every image is unit length first: media 1 → (1,0,0), media 2 → (0,1,0).
    w = ijb.image_weights(feats, np.ones(4), detector_score=False, norm_score=False)
    pooled, _ = ijb.pool_templates(feats, templates, medias, w)
    np.testing.assert_allclose(pooled[1], [2**-0.5, 2**-0.5, 0], atol=1e-12)


def _pool_like_insightface(feats, templates, medias):
    out = []
    for t in np.unique(templates):
        f, m = feats[templates == t], medias[templates == t]
        out.append(sum(f[m == u].mean(axis=0) for u in np.unique(m)))
    out = np.array(out, dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pooling_and_block_scoring_match_the_plain_loops(monkeypatch):
    rng = np.random.default_rng(0)
    n, d = 400, 16
    templates = rng.integers(0, 60, n) * 7 + 3
    medias = rng.integers(0, 5, n) + 100 * (templates % 4)  # media ids shared across templates
    feats = rng.standard_normal((n, d)).astype(np.float32)
    pooled, ids = ijb.pool_templates(feats, templates, medias)
    np.testing.assert_allclose(pooled, _pool_like_insightface(feats, templates, medias), atol=1e-6)
    i1, i2 = rng.integers(0, len(ids), 3000), rng.integers(0, len(ids), 3000)
    monkeypatch.setattr(ijb, "_BLOCK_BYTES", 8 * len(ids) * 5)  # 5 first-templates per block
    np.testing.assert_allclose(ijb.score_pairs(pooled, i1, i2), np.sum(pooled[i1] * pooled[i2], 1), atol=1e-12)


def test_identification_ranks_by_hand():
    # Probe i's similarities to gallery subjects (10, 20, 30) are its row when the gallery is the identity.
    sims = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.7], [0.5, 0.9, 0.2]])
    result = ijb.identification(sims, np.array([10, 20, 10]), np.eye(3), np.array([10, 20, 30]), ranks=(1, 2, 3))
    assert result == {"rank1": 1 / 3, "rank2": 2 / 3, "rank3": 1.0, "probes": 3, "gallery": 3}
    with pytest.raises(EvalError, match="probe subject 40"):
        ijb.identification(sims, np.array([10, 20, 40]), np.eye(3), np.array([10, 20, 30]))


def test_cmc_three_probes_by_hand():
    # Gallery: identity 0, identity 1, a distractor (label -1). Probe ranks: 1, 3, 2.
    # A 4th probe (identity 7) has no match in the gallery and is left out (closed set).
    sims = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.7], [0.5, 0.9, 0.2], [0.9, 0.9, 0.9]])
    result = cmc(sims, np.array([0, 1, 0, 7]), np.eye(3), np.array([0, 1, -1]), ranks=(1, 2, 3))
    assert result == {"rank1": 1 / 3, "rank2": 2 / 3, "rank3": 1.0, "probes": 3, "gallery": 3}
    # Distractors never match: a gallery of distractors only leaves no probe to rank.
    with pytest.raises(EvalError, match="identity appears in the gallery"):
        cmc(sims[:1], np.array([0]), np.eye(3), np.array([-1, -1, -1]))


def test_bin_round_trip_with_bytes_and_array_entries(tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(4)]
    images[3] = cv2.resize(images[3], (96, 96))  # another size: resized on load
    encoded = [cv2.imencode(".png", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))[1] for im in images]  # uint8 arrays
    write_bin(tmp_path / "a.bin", [e.tobytes() for e in encoded], [True, False])
    with (tmp_path / "b.bin").open("wb") as f:  # entries as uint8 arrays, as some packs hold them
        pickle.dump((encoded, [True, False]), f, protocol=2)
    for name in ("a.bin", "b.bin"):
        raw, issame = read_bin(tmp_path / name)
        assert raw == [e.tobytes() for e in encoded] and issame.tolist() == [True, False]
        decoded, _ = load_bin(tmp_path / name)
        assert decoded.shape == (4, 112, 112, 3)
        np.testing.assert_array_equal(decoded[0], images[0])  # PNG: lossless, RGB order kept
    (tmp_path / "c.bin").write_bytes(b"not a pickle")
    with pytest.raises(EvalError, match="c.bin"):
        read_bin(tmp_path / "c.bin")


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 5, stride=4)
        self.fc = nn.Linear(4 * 27 * 27, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_embedder_flip_fusion_input_convention_and_onnx(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    net = _TinyNet().eval()
    embedder = Embedder(net, batch_size=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        expected = (net(x) + net(x.flip(3))).numpy()
    np.testing.assert_allclose(embedder.embed(images, normalize=False), expected, rtol=1e-5, atol=1e-5)
    unit = embedder.embed(iter(list(images)))  # an iterable of single images, streamed
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(embedder.embed(images, flip=False, normalize=False), net(x).numpy(), rtol=1e-5, atol=1e-5)
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(onnx_path), input_names=["input"],
                      dynamic_axes={"input": {0: "n"}}, dynamo=False)
    np.testing.assert_allclose(Embedder(onnx_path, batch_size=3).embed(images, normalize=False), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(EvalError, match="missing.onnx"):
        Embedder(tmp_path / "missing.onnx")


def test_open_model_loads_a_facenas_checkpoint(tmp_path):
    from facerec.deploy.embedding import open_model
    from facerec.model import checkpoint
    from facerec.model.space import IResNetSpace
    from nas_core.genotype import Genotype

    torch.manual_seed(0)
    net = IResNetSpace().build(Genotype.uniform(4, 8)).eval()
    checkpoint.save_checkpoint(tmp_path / "m.pt", backbone=net)
    images = np.random.default_rng(5).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_allclose(open_model(tmp_path / "m.pt", "cpu").embed(images), Embedder(net).embed(images), atol=1e-5)


def test_protocol_registry_lists_every_protocol():
    assert list_protocols() == sorted(PROTOCOL_ORDER)
    assert list_protocols("ijb*") == ["ijbb", "ijbc"]
