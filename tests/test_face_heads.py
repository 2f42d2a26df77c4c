"""Margin heads against their formulas on hand-made cosines and norms (ARCHITECTURE §4)."""

import math

import pytest
import torch

from facerec.model.heads import AdaFace, create_head, list_heads
from nas_core.errors import NasError

# Unit directions; with class centres e0, e1, e2 the cosine with class c is component c.
DIRS = [(0.6, 0.8, 0.0), (-0.95, math.sqrt(1 - 0.95**2), 0.0)]
LABELS = [0, 0]  # sample 0: target cosine 0.6; sample 1: target cosine −0.95 (θ + 0.5 > π)


def _head(name, **kw):
    head = create_head(name, embedding_size=3, num_classes=3, **kw)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3) * 7.0)  # centres are normalised: any length
    return head


def _embeddings(norms):
    return torch.tensor([[n * c for c in d] for n, d in zip(norms, DIRS)], dtype=torch.float32)


@pytest.mark.parametrize("name", list_heads())
def test_every_head_trains(name):
    torch.manual_seed(0)
    head = create_head(name, embedding_size=16, num_classes=10)
    embeddings = torch.randn(4, 16, requires_grad=True)
    logits = head(embeddings, torch.tensor([0, 3, 3, 9]))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 3, 9])).backward()
    for p in [embeddings, *head.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_unknown_head():
    with pytest.raises(NasError, match="unknown head"):
        create_head("sphereface", 3, 3)


def test_cosface_formula():
    logits = _head("cosface")(_embeddings([5.0, 9.0]), torch.tensor(LABELS))
    expected = [[64 * (0.6 - 0.4), 64 * 0.8, 0.0], [64 * (-0.95 - 0.4), 64 * DIRS[1][1], 0.0]]
    torch.testing.assert_close(logits, torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_arcface_formula_and_fallback():
    logits = _head("arcface")(_embeddings([5.0, 9.0]), torch.tensor(LABELS))
    target0 = math.cos(math.acos(0.6) + 0.5)
    # θ = acos(−0.95) ≈ 2.82 and θ + m > π: the logit falls back to cos θ − m·sin m.
    target1 = -0.95 - 0.5 * math.sin(0.5)
    expected = [[64 * target0, 64 * 0.8, 0.0], [64 * target1, 64 * DIRS[1][1], 0.0]]
    torch.testing.assert_close(logits, torch.tensor(expected), atol=1e-4, rtol=1e-5)


def _adaface_expected(cosine, norm, mean, std, m=0.4, h=0.333, eps=1e-3):
    z = max(-1.0, min(1.0, h * (norm - mean) / (std + eps)))
    theta = min(max(math.acos(cosine) - m * z, eps), math.pi - eps)
    return math.cos(theta) - (m + m * z), z


def test_adaface_ema_updated_before_use():
    head = _head("adaface").train()
    norms = [14.0, 34.0]  # batch mean 24 and std √200: both differ from the initial 20 / 100
    logits = head(_embeddings(norms), torch.tensor(LABELS))
    # EMA from the initial 20 / 100 with t_alpha 0.01; torch's (unbiased) std of (14, 34) is √200.
    mean = 0.99 * 20 + 0.01 * 24.0
    std = 0.99 * 100 + 0.01 * math.sqrt(200)
    assert head.batch_mean.item() == pytest.approx(mean, rel=1e-6)
    assert head.batch_std.item() == pytest.approx(std, rel=1e-6)
    for i, (cosine, norm) in enumerate(zip([0.6, -0.95], norms)):
        target, z = _adaface_expected(cosine, norm, mean, std)
        assert abs(z) < 1  # no clip here
        assert logits[i, 0].item() == pytest.approx(64 * target, abs=1e-3)
        assert logits[i, 1].item() == pytest.approx(64 * DIRS[i][1], abs=1e-3)  # non-target untouched
    # A second batch moves the statistics again, from the updated values.
    head(_embeddings([20.0, 20.0]), torch.tensor(LABELS))
    assert head.batch_mean.item() == pytest.approx(0.99 * mean + 0.01 * 20, rel=1e-6)
    assert head.batch_std.item() == pytest.approx(0.99 * std, rel=1e-6)


def test_adaface_clip_and_eval_keeps_statistics():
    head = _head("adaface", t_alpha=0.0).eval()
    head.batch_mean.fill_(20.0)
    head.batch_std.fill_(1.0)
    norms = [30.0, 10.0]  # h·(n − μ)/(σ + eps) = ±3.33 → ẑ clipped to ±1
    logits = head(_embeddings(norms), torch.tensor(LABELS))
    for i, (cosine, norm) in enumerate(zip([0.6, -0.95], norms)):
        target, z = _adaface_expected(cosine, norm, 20.0, 1.0)
        assert z == (1.0 if i == 0 else -1.0)
        assert logits[i, 0].item() == pytest.approx(64 * target, abs=1e-3)
    # ẑ = 1: angle θ − 0.4, cosine minus 0.8.  ẑ = −1: angle θ + 0.4 (2.82 + 0.4 > π, so clipped
    # to π − eps), cosine minus 0.
    assert logits[0, 0].item() == pytest.approx(64 * (math.cos(math.acos(0.6) - 0.4) - 0.8), abs=1e-3)
    assert logits[1, 0].item() == pytest.approx(64 * math.cos(math.pi - 1e-3), abs=1e-3)
    assert (head.batch_mean.item(), head.batch_std.item()) == (20.0, 1.0)  # eval: no update


def test_adaface_angle_clipped_to_eps():
    head = _head("adaface", t_alpha=0.0).eval()
    head.batch_mean.fill_(20.0)
    head.batch_std.fill_(1.0)
    # ẑ = 1 on a target cosine 0.99 (θ ≈ 0.141): θ − 0.4 < 0 is clipped up to eps = 1e-3.
    embeddings = torch.tensor([[0.99 * 30, math.sqrt(1 - 0.99**2) * 30, 0.0]])
    logits = head(embeddings, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(64 * (math.cos(1e-3) - 0.8), abs=1e-3)


def test_adaface_norm_is_detached():
    # Cosines do not change when an embedding is scaled and the norm carries no gradient, so the
    # gradient has no radial component.
    head = _head("adaface").train()
    embeddings = _embeddings([10.0, 30.0]).requires_grad_()
    head(embeddings, torch.tensor(LABELS)).sum().backward()
    radial = (embeddings.grad * embeddings.detach()).sum(dim=1)
    torch.testing.assert_close(radial, torch.zeros(2), atol=1e-4, rtol=0)
    assert embeddings.grad.abs().sum() > 0


def test_adaface_single_sample_keeps_std():
    head = AdaFace(3, 3)
    head.train()(torch.ones(1, 3), torch.tensor([1]))
    assert math.isfinite(head.batch_std.item()) and head.batch_std.item() == 100.0
