"""facerec-search's task for nas_core.search_run.SearchRun: an IResNet backbone searched on a face pack
(ARCHITECTURE §3, §4, §9). RUN/settings.json holds the search settings ("search"), the data and trial-training
options ("options": facerec.search.settings.FaceSearchOptions resolved for real or demo data) and the space
("space"). The weights of every trial that may still be the answer wait in RUN/trials/; the producing trial's
become RUN/model.pt. Under torchrun every rank runs the search: trials train with DDP, rank 0's fitness decides,
and rank 0 alone writes and logs (ARCHITECTURE §8).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from facerec import report as _names  # noqa: F401  (names IResNet genotypes R-<layers>-<8C> in the report)
from facerec.data.demo import DEMO_SEARCH
from facerec.data.options import CacheOptions
from facerec.data.run_data import check_identities, check_pack_dir, describe_fitness, parse_names
from facerec.errors import FaceRecError
from facerec.model.space import IResNetSpace
from facerec.search.estimate import face_estimate
from facerec.search.evaluator import (
    FaceEvaluator,
    FaceTrialJob,
    face_evaluator,
    run_face_trial,
    trial_weights_path,
)
from facerec.search.settings import OPTION_DEFAULTS, SEARCH_RANKINGS, FaceSearchOptions
from facerec.train.dist import barrier, broadcast_object, init_distributed, resolve_device
from facerec.train.validation import find_bins
from nas_core.io import atomic_write, read_json_object
from nas_core.search import SearchResult, TrialRecord, space_spec
from nas_core.search_run import SearchTask
from nas_core.settings import SearchSettings, settings_for


class FaceSearch(SearchTask):
    """``saved``: RUN/settings.json's content. ``step_seconds`` ("SMALL,LARGE"): --estimate's assumed step times."""

    command, logger = "facerec-search", "facerec"

    def __init__(self, saved: dict[str, Any], *, device: str = "auto", cache: CacheOptions = CacheOptions(),
                 progress: bool = True, step_seconds: str | None = None, where: str = "search settings"):
        self.config = saved
        self.settings = SearchSettings.from_dict(saved["search"], where=where)
        self.info = init_distributed()
        self.device = resolve_device(device, self.info)
        self.is_main = self.info.is_main
        if self.info.enabled:
            self.share = lambda value: broadcast_object(value, self.info)
        self.cache, self.progress = cache, progress
        self.step_seconds = _step_pair(step_seconds) if step_seconds is not None else None

    @classmethod
    def new(cls, options: FaceSearchOptions, *, size: str, recipe: str, overrides: dict[str, Any], estimate: bool,
            **run: Any) -> FaceSearch:
        """A new search: ``overrides`` of the ``size`` preset (the demo's settings where --data is not given).
        A bad pack fails here, before a run folder is made (an estimate reads the pack's metadata only)."""
        demo = options.data is None
        if not demo and not estimate:
            check_pack_dir(options.data)
        if options.val_bins:  # the named packs exist (the demo set has none)
            if demo:
                raise FaceRecError(f"--val-bins {options.val_bins}: expected --data, a pack with .bin packs beside it")
            find_bins(options.data, parse_names(options.val_bins))
        if not estimate:  # an estimate reads the pack's metadata only
            check_identities(options.data, subset_ids=options.subset_ids, holdout_ids=options.holdout_ids,
                             fitness="bins" if options.val_bins else "holdout")
        settings = settings_for(size, **{**(DEMO_SEARCH if demo else {}), **overrides})
        if SEARCH_RANKINGS[options.ranking].static:  # every macro trial E_min epochs: no +1/+2 per candidate tried
            settings.depth_epoch_step = settings.width_epoch_step = 0
        values = {name: (getattr(options, name) if getattr(options, name) is not None else default[1 if demo else 0])
                  for name, default in OPTION_DEFAULTS.items()}
        values.update(size=size, data=None if demo else str(Path(options.data).resolve()), val_bins=options.val_bins,
                      recipe=recipe, fitness="bins" if options.val_bins else "holdout", ranking=options.ranking,
                      ranking_full_epochs=options.ranking_full_epochs)
        # The space spec lets a report (or a replay) of a killed run rebuild what the run searched.
        space = space_spec(IResNetSpace(embedding_size=values["embedding_size"]))
        return cls({"search": settings.to_dict(), "options": values, "space": space}, **run)

    @classmethod
    def resume(cls, run: str | Path, **options: Any) -> FaceSearch:
        path = Path(run) / "settings.json"
        saved = read_json_object(path, "the settings.json of a facerec-search run")
        if "search" not in saved or "options" not in saved:
            raise FaceRecError(f"{path}: expected the settings.json of a facerec-search run ('search' and 'options')")
        return cls(saved, where=f"{path}: search settings", **options)

    def default_output(self, estimate: bool) -> str:
        return f"runs/face-search-{self.config['options'].get('size', 'small')}"

    def open(self, run: Path, log) -> FaceEvaluator:
        self.run, settings, options = run, self.settings.to_dict(), self.config["options"]
        if options["data"] is None:
            log.info("no --data: searching on the built-in synthetic demo face set (facerec.data.demo, 20 identities "
                     "x 12 images, 112x112) with a CPU-sized budget: " + ", ".join(
                         f"{k} {settings[k]}" for k in ("e_min", "d_min", "d_max", "w_min", "w_max", "micro_epochs",
                                                        "max_trials")))
        self.evaluator, self.data, self.recipe = face_evaluator(self._worker_settings(), run, self.device,
                                                                info=self.info, log=log, progress=self.progress)
        self.space = self.evaluator.space
        log.info(f"data {self.data.source}: {self.data.info['train_images']} training images of "
                 f"{self.data.num_classes} identities; fitness = 10-fold accuracy on "
                 f"{describe_fitness(self.data.info['fitness_on'])}; ranking {options.get('ranking', 'paper')}; "
                 f"device {self.device}, world size {self.info.world_size}; settings {settings}")
        return self.evaluator

    def _worker_settings(self) -> dict[str, Any]:
        """RUN/settings.json plus this invocation's decoded-cache choice: what the evaluator and every --parallel
        worker build their data from (facerec.search.evaluator.face_evaluator), so every trial sees the same."""
        return {**self.config, "cache": asdict(self.cache)}

    def trial_job(self, workers: int, executor: str):
        # One GPU per worker, or an equal share of this process's CPU threads each.
        threads = max(1, torch.get_num_threads() // workers) if self.device.type == "cpu" else torch.get_num_threads()
        device = "cuda" if self.device.type == "cuda" and executor == "ray" else str(self.device)
        settings, run = json.dumps(self._worker_settings(), sort_keys=True), str(self.run)
        return lambda genotype, epochs: (run_face_trial, FaceTrialJob(settings, run, device, threads,
                                                                      genotype.to_dict(), epochs))

    def on_trial(self, record: TrialRecord) -> None:
        """The weights of a trial that can no longer be the answer are dropped."""
        if self.is_main and record.decision not in ("baseline", "accept"):
            trial_weights_path(self.run / "trials", record.genotype, record.epochs).unlink(missing_ok=True)

    def finish(self, run: Path, result: SearchResult, log) -> None:
        """RUN/model.pt: the weights of the trial that produced the result (retrained if a crash lost them)."""
        genotype, epochs = result.producing_trial.genotype, result.producing_trial.epochs
        weights = trial_weights_path(run / "trials", genotype, epochs)
        missing = broadcast_object(not weights.is_file(), self.info)  # rank 0 writes the file: its view decides
        if missing:  # e.g. journaled before a crash that lost the file: retrain (same seed)
            log.info(f"retraining {genotype.key()} x{epochs} for RUN/model.pt (its trial weights are missing)")
            self.evaluator.evaluate(genotype, epochs)
        barrier(self.info)
        if self.is_main:
            with open(weights, "rb") as source:
                atomic_write(run / "model.pt", lambda f: shutil.copyfileobj(source, f))
            shutil.rmtree(run / "trials", ignore_errors=True)

    def result_fields(self, result: SearchResult) -> dict[str, Any]:
        payload = result.to_dict()
        payload.update(trial_epochs=result.producing_trial.epochs, num_trials=len(result.trials),
                       settings=self.settings.to_dict(), options=self.config["options"], space=self.space.config(),
                       data=self.data.info, fitness_on=self.data.info["fitness_on"], recipe=self.recipe.to_dict(),
                       model="model.pt")
        return payload

    def estimate(self, run: Path, workers: int) -> dict[str, Any]:
        return face_estimate(self.config, self.device, workers, step_seconds=self.step_seconds, run=run)

    def cache_text(self, estimate: dict[str, Any]) -> str:
        return (f"{estimate['cache_bytes'] / 1e9:.2f} GB ({estimate['data']['pack_images']:,} images x 112x112x3 "
                "bytes)")


def _step_pair(text: str) -> tuple[float, float]:
    """--step-seconds SMALL,LARGE: 0 < SMALL <= LARGE."""
    try:
        small, large = (float(v) for v in text.split(","))
    except ValueError:
        raise FaceRecError(f"--step-seconds: expected SMALL,LARGE seconds, e.g. 0.05,0.4; got {text}") from None
    if not 0 < small <= large:
        raise FaceRecError(f"--step-seconds: expected 0 < SMALL <= LARGE, got {text}")
    return small, large
