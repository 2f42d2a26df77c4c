"""The Evaluator protocol: train a genotype for some epochs and score it.

Accuracies are percentages (0–100), the units of the paper's thresholds (+0.10 / −0.05).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from nas_core.genotype import Genotype


@dataclass
class TrialResult:
    accuracy: float  # score used for ranking: best accuracy over the trial's epochs (percent)
    params: int
    seconds: float = 0.0  # train + eval time of this trial
    seed: int = 0
    epoch_accuracies: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator(Protocol):
    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult: ...


def trial_seed(run_seed: int, genotype: Genotype, epochs: int) -> int:
    """A trial's seed depends only on the run seed, the genotype and the epochs.

    So a trial's result does not depend on which trials ran before it, and a resumed search
    reaches the same answer as an uninterrupted one.
    """
    text = f"{run_seed}|{genotype.key()}|{epochs}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF
