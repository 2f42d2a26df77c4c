"""What one face training carries from step to step (facerec.train.loop), and what its resume state
(facerec.train.state: OUT/last.pt) is made of: the model, optimizer, lr schedule, scaler and counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from facerec.train.config import TrainConfig
from facerec.train.dist import DistInfo
from facerec.train.recipe import lr_factor, scheduled_lr


class FaceModel(nn.Module):
    """Backbone + margin head as one module, so DDP syncs both; the head runs in float32."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(images)
        with torch.autocast(images.device.type, enabled=False):
            return self.head(embeddings.float(), labels)


def lr_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The trainer's one lr mechanism: stepped after every optimizer step (skipped ones too), so the lr of global
    step k is ``facerec.train.recipe.scheduled_lr(config, k, ...)`` exactly (warm-up, milestones or cosine)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step, steps_per_epoch))


def fresh_state() -> dict[str, Any]:
    """The training state that OUT/last.pt carries besides the weights, optimizer, schedule and RNGs."""
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "best_epoch": None,
            "best_score": None, "nan_steps": [], "seconds": 0.0, "epoch_loss": [0.0, 0]}


@dataclass
class TrainRun:
    """What one training carries from step to step, and what its resume state is made of."""

    model: FaceModel
    net: nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    config: TrainConfig
    device: torch.device
    info: DistInfo
    batch: int  # per rank
    steps_per_epoch: int
    state: dict[str, Any] = field(default_factory=fresh_state)
    nan_run: int = 0  # non-finite losses in a row
    best_state: dict | None = None
    seconds_before: float = 0.0  # of the jobs this one resumes
    started: float = field(default_factory=time.perf_counter)

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def lr(self, step: int) -> float:
        """The learning rate of 0-based global step ``step``."""
        return scheduled_lr(self.config, step, self.steps_per_epoch)
