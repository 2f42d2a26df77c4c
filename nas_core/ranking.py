"""How trials are ranked: the dynamic-learning epoch schedule and float32 accuracy comparisons.

ARCHITECTURE §3: one epoch counter E starts at E_min, gains +1 for every depth candidate tried and +2
for every width candidate tried (tried, not accepted: the counter never goes back); every micro
trial trains a fixed micro E. A trial's score is the best accuracy over its epochs.

The reference compared float32 accuracy tensors against ``best + 0.10`` / ``best - 0.05`` computed
in float32; two of the authors' traces sit exactly on a threshold and replay only that way.
"""

from __future__ import annotations

import numpy as np


class EpochSchedule:
    """The epochs each next trial trains for (Algorithm 1's dynamic learning)."""

    def __init__(self, e_min: int, depth_step: int = 1, width_step: int = 2, micro_epochs: int = 2):
        self.e_min = e_min
        self.depth_step = depth_step
        self.width_step = width_step
        self.micro_epochs = micro_epochs
        self.current = e_min

    def baseline(self) -> int:
        """Epochs of the D_min baseline."""
        self.current = self.e_min
        return self.current

    def next_depth(self) -> int:
        self.current += self.depth_step
        return self.current

    def next_width(self) -> int:
        self.current += self.width_step
        return self.current

    def micro(self) -> int:
        return self.micro_epochs


def _f32(x: float) -> np.float32:
    return np.float32(x)


def at_least(accuracy: float, reference: float, offset: float = 0.0) -> bool:
    """accuracy >= reference + offset, evaluated as the reference's float32 tensors did."""
    threshold = _f32(_f32(reference) + _f32(offset))
    return bool(_f32(accuracy) >= threshold)


def greater(accuracy: float, reference: float) -> bool:
    """accuracy > reference in float32 (micro phase: strictly better than b)."""
    return bool(_f32(accuracy) > _f32(reference))
