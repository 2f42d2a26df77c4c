"""Margin heads (ARCHITECTURE §4): AdaFace, ArcFace, CosFace.

Every head takes raw embeddings [N, d] and labels [N] and returns scaled logits [N, classes] for
cross-entropy. Class centres are rows of ``weight`` [classes, d]; cosines come from the normalised
embedding and normalised centres.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_core.registry import Registry

HEADS = Registry("head")


def create_head(name: str, embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    return HEADS.create(name, embedding_size=embedding_size, num_classes=num_classes, **kw)


def list_heads(pattern: str = "*") -> list[str]:
    return HEADS.list(pattern)


class _MarginHead(nn.Module):
    def __init__(self, embedding_size: int, num_classes: int, s: float):
        super().__init__()
        self.s = s
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)  # arcface_torch's init; only the direction matters

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings), F.normalize(self.weight))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Margins are computed in float32 even under AMP: acos/cos near ±1 are fragile in half.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            target = F.one_hot(labels.long(), self.weight.shape[0]).bool()
            return self.s * self.margin_logits(self.cosine(embeddings), target, embeddings)

    def margin_logits(self, cosine: torch.Tensor, target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosines with the margin applied on the target entries (``target`` is a one-hot bool mask)."""
        raise NotImplementedError


@HEADS.register("cosface")
class CosFace(_MarginHead):
    """Target logit s·(cos θ − m)."""

    def __init__(self, embedding_size: int, num_classes: int, m: float = 0.4, s: float = 64.0):
        super().__init__(embedding_size, num_classes, s)
        self.m = m

    def margin_logits(self, cosine, target, embeddings):
        return cosine - self.m * target


@HEADS.register("arcface")
class ArcFace(_MarginHead):
    """Target logit s·cos(θ + m); past θ + m > π, where cos(θ + m) would turn back up, use
    cos θ − m·sin m instead (arcface_torch's non-easy-margin rule), keeping the logit monotonic in θ."""

    def __init__(self, embedding_size: int, num_classes: int, m: float = 0.5, s: float = 64.0):
        super().__init__(embedding_size, num_classes, s)
        self.m = m

    def margin_logits(self, cosine, target, embeddings):
        # acos has an infinite slope at ±1: keep cosines just inside.
        cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
        with_margin = torch.cos(torch.acos(cosine) + self.m)
        fallback = cosine - self.m * math.sin(self.m)
        target_logit = torch.where(cosine > math.cos(math.pi - self.m), with_margin, fallback)
        return torch.where(target, target_logit, cosine)


@HEADS.register("adaface")
class AdaFace(_MarginHead):
    """AdaFace (Kim et al. 2022): the margin adapts to image quality through the feature norm.

    ẑ = clip(h·(‖z‖ − μ)/(σ + eps), −1, 1) with μ, σ an EMA (t_alpha) of the batch norm statistics,
    updated before use in training. Target: angle θ + g_angle with g_angle = −m·ẑ, clipped to
    [eps, π − eps], then minus g_add = m + m·ẑ from its cosine. The norm is detached (no gradient).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        m: float = 0.4,
        h: float = 0.333,
        s: float = 64.0,
        t_alpha: float = 0.01,
        eps: float = 1e-3,
    ):
        super().__init__(embedding_size, num_classes, s)
        self.m, self.h, self.t_alpha, self.eps = m, h, t_alpha, eps
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def margin_logits(self, cosine, target, embeddings):
        # As AdaFace's head.py: cosines kept eps inside ±1, norms clipped to [0.001, 100], detached.
        cosine = cosine.clamp(-1 + self.eps, 1 - self.eps)
        norms = embeddings.detach().norm(dim=1, keepdim=True).clamp(0.001, 100)
        if self.training:
            self._update_statistics(norms)
        z = (self.h * (norms - self.batch_mean) / (self.batch_std + self.eps)).clamp(-1, 1)
        theta = torch.acos(cosine)
        theta = torch.where(target, theta - self.m * z, theta).clamp(self.eps, math.pi - self.eps)
        return torch.cos(theta) - target * (self.m + self.m * z)

    @torch.no_grad()
    def _update_statistics(self, norms: torch.Tensor) -> None:
        self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * norms.mean())
        # Unbiased std as the reference; one sample has none, so the EMA keeps its value then.
        if norms.numel() > 1:
            self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * norms.std())
