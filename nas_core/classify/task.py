"""nas-search's task for nas_core.search_run.SearchRun: an image classifier searched in the paper's FCN space
(ARCHITECTURE §3, §9). RUN/settings.json holds the preset's name, the ClassificationOptions (flat), the device,
the search settings ("search") and, once the data are loaded, the space ("space", what a replay or a report of a
killed run rebuilds it from)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas_core.classify.datasets import ClassificationData, load_dataset
from nas_core.classify.evaluator import ClassificationEvaluator, TrialJob, create_classifier_space, run_trial
from nas_core.classify.settings import ClassificationOptions
from nas_core.cost import run_costs
from nas_core.errors import NasError
from nas_core.estimate import classifier_estimate
from nas_core.io import read_json_object
from nas_core.search import space_spec
from nas_core.search_run import SearchTask
from nas_core.settings import SearchSettings
from nas_core.train import TrainConfig, cpu_threads, resolve_device
from nas_core.values import is_number, shown

# The run options of settings.json, each of the type and range a run uses it as ('dataset' is required; the
# other strings may be null).
_STRINGS = ("dataset", "size", "data_root", "device")
_NUMBERS = {"val_fraction": (False, 0, 0.99), "batch_size": (True, 1, 1 << 20), "threads": (True, 1, 4096)}


class ClassificationSearch(SearchTask):
    """``config``: RUN/settings.json's content; ``device``: where this invocation trains (None: the run's own)."""

    def __init__(self, config: dict[str, Any], *, device: str | None = None, data: ClassificationData | None = None,
                 where: str = "search settings"):
        self.config = config
        self.settings = SearchSettings.from_dict(config["search"], where=where)
        self.device = device or config.get("device")
        self._data = data

    @classmethod
    def new(cls, options: ClassificationOptions, settings: SearchSettings, *, size: str,
            device: str) -> ClassificationSearch:
        """A new run. Its data are loaded here: bad data fail before a run folder is made."""
        config = {"size": size, **asdict(options), "device": device, "search": settings.to_dict()}
        task = cls(config)
        task.data  # noqa: B018  (loads them)
        return task

    @classmethod
    def resume(cls, run: str | Path, device: str = "auto") -> ClassificationSearch:
        """The run in RUN, its settings checked field by field; it trains on its own device unless ``device``
        names another."""
        path = Path(run) / "settings.json"
        return cls(_read_config(path), device=None if device == "auto" else device, where=f"{path}: search settings")

    @property
    def data(self) -> ClassificationData:
        if self._data is None:
            config = self.config
            self._data = load_dataset(config["dataset"], config.get("data_root"),
                                      val_fraction=config.get("val_fraction", 0.1), rank_on=config.get("rank_on", "val"))
        return self._data

    def default_output(self, estimate: bool) -> str:
        return f"runs/{self.config['dataset']}-{self.config['size']}-" + (
            "estimate" if estimate else time.strftime("%Y%m%d-%H%M%S"))

    def open(self, run: Path, log) -> ClassificationEvaluator:
        data, config = self.data, self.config
        log.info(f"data {config['dataset']}: {len(data.train_labels)} train / {len(data.val_labels)} val / "
                 f"{len(data.test_labels)} test images, {data.num_classes} classes, {data.in_channels} channel(s)")
        self.space = create_classifier_space(data)
        config.setdefault("space", space_spec(self.space))
        train_config = TrainConfig(epochs=1, batch_size=config.get("batch_size", 64),
                                   reference_schedule=config.get("reference_schedule", False))
        return ClassificationEvaluator(data, self.space, device=self.device, rank_on=config.get("rank_on", "val"),
                                       run_seed=self.settings.seed, config=train_config)

    def running(self):
        return cpu_threads(self.device, self.config.get("threads"))

    def trial_job(self, workers: int, executor: str):
        config = self.config
        base = {"dataset": config["dataset"], "data_root": config.get("data_root"),
                "val_fraction": config.get("val_fraction", 0.1), "rank_on": config.get("rank_on", "val"),
                "run_seed": self.settings.seed, "device": self.device, "batch_size": config.get("batch_size", 64),
                "reference_schedule": config.get("reference_schedule", False), "threads": config.get("threads")}
        return lambda genotype, epochs: (run_trial, TrialJob(genotype=genotype.to_dict(), epochs=epochs, **base))

    def estimate(self, run: Path, workers: int) -> dict[str, Any]:
        device = resolve_device(self.device)
        space = create_classifier_space(self.data)
        with cpu_threads(device, self.config.get("threads")):  # the costs measured here are those RUN's search reads
            return classifier_estimate(self.data, space, self.settings, device=device,
                                       batch_size=self.config["batch_size"], workers=workers,
                                       costs=run_costs(space, self.settings.budget, run))

    def cache_text(self, estimate: dict[str, Any]) -> str:
        return f"{estimate['cache_bytes'] / 1e6:.1f} MB of training images"


def _read_config(path: Path) -> dict[str, Any]:
    config = read_json_object(path, "the settings of a search run to resume")
    if "search" not in config or "dataset" not in config:
        raise NasError(f"{path}: expected a settings object with 'dataset' and 'search'")
    for name in _STRINGS:
        nullable = name != "dataset"
        if not (isinstance(config.get(name), str) or (nullable and config.get(name) is None)):
            raise NasError(f"{path}: expected '{name}' to be a string{' or null' if nullable else ''}, "
                           f"got {shown(config.get(name))}")
    for name, (integer, lo, hi) in _NUMBERS.items():
        if config.get(name) is not None and not is_number(config[name], integer=integer, lo=lo, hi=hi):
            raise NasError(f"{path}: expected '{name}' to be {'an integer' if integer else 'a number'} in "
                           f"[{lo:g}, {hi:g}], got {shown(config[name])}")
    if config.get("rank_on", "val") not in ("val", "test") or not isinstance(config.get("reference_schedule", False), bool):
        raise NasError(f"{path}: expected 'rank_on' val or test and 'reference_schedule' true or false")
    return config
