"""The options of a classification search or study (nas-search, nas-study), as data: each flag is generated from
these fields (nas_core.config_args). Dependency-free, so a command's ``--help`` never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The names nas_core.classify.datasets registers (tests/test_search_settings.py checks the two agree).
DATASET_NAMES = ("digits", "mnist", "fashionmnist", "kmnist", "emnist", "cifar10", "cifar100")


def _flag(text: str, **meta: Any) -> dict[str, Any]:
    return {"help": text, **meta}


@dataclass(frozen=True)
class ClassificationOptions:
    """The data and training of every trial of a classification run (RUN/settings.json holds them, flat)."""

    dataset: str = field(default="digits", metadata=_flag(
        f"one of {', '.join(DATASET_NAMES)}: local files in --data-root (never downloaded); digits is "
        "scikit-learn's bundled set"))
    data_root: str | None = field(default=None, metadata=_flag("folder holding the dataset files"))
    val_fraction: float = field(default=0.1, metadata=_flag(
        "held-out stratified share of the training set the trials are ranked on", minimum=0, maximum=0.99))
    rank_on: str = field(default="val", metadata=_flag(
        "rank trials on the validation split, or on test as the paper did", choices=("val", "test")))
    batch_size: int = field(default=64, metadata=_flag("batch of a trial's training", positive=True))
    reference_schedule: bool = field(default=False, metadata=_flag(
        "step the cosine schedule before each epoch like the reference code (ARCHITECTURE §3)"))
    threads: int | None = field(default=None, metadata=_flag(
        "CPU threads per trial (default 1 on a CPU: tiny trials gain nothing from more)", positive=True,
        maximum="cpus"))


@dataclass(frozen=True)
class RankingStudyOptions:
    """nas-study ranking: the candidates (the search's macro candidates in the order it meets them) and the
    epochs they are trained for (ARCHITECTURE §3)."""

    depth_steps: int = field(default=4, metadata=_flag("Grow candidates: D_min, D_min+1, ...", positive=True))
    width_steps: int = field(default=3, metadata=_flag("Prune candidates after the deepest", positive=True))
    static_epochs: int | None = field(default=None, metadata=_flag(
        "epochs of every static trial (default E_min)", positive=True))
    reference_epochs: int | None = field(default=None, metadata=_flag(
        "epochs of the reference training (default 4 x E_min)", positive=True))


@dataclass(frozen=True)
class RandomStudyOptions:
    """nas-study random: random architectures trained like the search's macro result, and RI of the found one."""

    epochs: int | None = field(default=None, metadata=_flag(
        "epochs of every trained network (default: the epochs the search ranked its macro result at, "
        "RUN/result.json macro_epochs)", positive=True))
    budget: str = field(default="trials", metadata=_flag(
        "trials: as many random networks as the search trained; epochs: as many as fit in its total epochs",
        choices=("trials", "epochs")))
    samples: int | None = field(default=None, metadata=_flag("the number of random networks instead",
                                                             positive=True))
