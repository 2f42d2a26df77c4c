"""Classification Evaluator: train a genotype of the FCN space for E epochs, score = best accuracy (ARCHITECTURE §3).

Also the picklable ``TrialJob`` / ``run_trial`` pair that the executor ships to other processes (Ray) for
independent trials (random baseline, ranking study): the data are loaded once per process.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from nas_core.classify.datasets import ClassificationData, load_dataset
from nas_core.evaluator import TrialResult, trial_seed
from nas_core.genotype import Genotype
from nas_core.space import SearchSpace, create_space
from nas_core.train import TrainConfig, cpu_threads, resolve_device, seed_everything, train_classifier


def create_classifier_space(data: ClassificationData) -> SearchSpace:
    import nas_core.classify.network  # noqa: F401  (registers the "fcn" space)

    # The side it trains on: the random crop's, else the images' own (ARCHITECTURE §3).
    size = data.augment.crop or int(data.train_images.shape[-1])
    return create_space("fcn", in_channels=data.in_channels, num_classes=data.num_classes, image_size=size)


class ClassificationEvaluator:
    """Evaluator over in-memory data; the trial's seed depends only on (run seed, genotype, epochs)."""

    def __init__(self, data: ClassificationData | str, space: SearchSpace | None = None, *,
                 device: str | None = None, rank_on: str = "val", run_seed: int = 0,
                 config: TrainConfig | None = None, track_test: bool = True, data_root: str | None = None,
                 val_fraction: float = 0.1):
        if isinstance(data, str):
            data = load_dataset(data, data_root, val_fraction=val_fraction, rank_on=rank_on)
        self.data = data
        self.space = space if space is not None else create_classifier_space(data)
        self.device = resolve_device(device)
        # With rank_on="test" (the paper's protocol) there is no validation split to rank on.
        self.rank_on = rank_on if len(data.val_labels) > 0 else "test"
        self.run_seed = run_seed
        self.config = config or TrainConfig(epochs=1)
        self.track_test = track_test

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        tic = time.perf_counter()
        seed = trial_seed(self.run_seed, genotype, epochs)
        seed_everything(seed)  # the model's initialisation is part of the trial
        model = self.space.build(genotype)
        splits = [self.rank_on] + (["test"] if self.track_test and self.rank_on != "test" else [])
        result = train_classifier(model, self.data, replace(self.config, epochs=epochs), seed=seed,
                                  device=self.device, eval_splits=splits)
        scores = result.accuracies[self.rank_on]
        extra: dict[str, Any] = {"rank_on": self.rank_on, "train_accuracies": result.train_accuracies}
        if "test" in result.accuracies:
            extra["test_accuracies"] = result.accuracies["test"]
            extra["test_accuracy"] = result.accuracies["test"][-1]  # ARCHITECTURE §3: report the last epoch
        return TrialResult(accuracy=max(scores), params=self.space.count_params(genotype),
                           seconds=time.perf_counter() - tic, seed=seed, epoch_accuracies=list(scores),
                           extra=extra)


@dataclass(frozen=True)
class TrialJob:
    """One independent trial, described by plain values so it can be sent to another process."""

    dataset: str
    genotype: dict
    epochs: int
    data_root: str | None = None
    val_fraction: float = 0.1
    rank_on: str = "val"
    run_seed: int = 0
    device: str | None = None
    batch_size: int = 64
    reference_schedule: bool = False
    threads: int | None = None  # CPU threads of the trial (nas_core.train.cpu_threads; default 1 on CPU)

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=2)
def _cached_data(dataset: str, data_root: str | None, val_fraction: float, rank_on: str) -> ClassificationData:
    return load_dataset(dataset, data_root, val_fraction=val_fraction, rank_on=rank_on)


def run_trial(job: TrialJob) -> TrialResult:
    """Train ``job.genotype`` for ``job.epochs``, as nas-search's in-process evaluator does (same seed, same
    thread count, so the same result); the data are read once per process."""
    data = _cached_data(job.dataset, job.data_root, job.val_fraction, job.rank_on)
    config = TrainConfig(epochs=job.epochs, batch_size=job.batch_size, reference_schedule=job.reference_schedule)
    evaluator = ClassificationEvaluator(data, device=job.device, rank_on=job.rank_on, run_seed=job.run_seed,
                                        config=config)
    with cpu_threads(evaluator.device, job.threads):
        return evaluator.evaluate(Genotype.from_dict(job.genotype), job.epochs)
