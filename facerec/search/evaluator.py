"""The face Evaluator for nas_core.search.MacroMicroSearch over the "iresnet" space (ARCHITECTURE §4).

A trial trains the genotype for E epochs with the facerec trainer (facerec.train.loop.train_model) and is
scored by the 10-fold verification accuracy, in percent, on pairs of identities held out of the training
pack (or, only when asked with --val-bins, on .bin benchmark packs): the best accuracy over its epochs
(ARCHITECTURE §3, §4). Each trial is seeded by nas_core.evaluator.trial_seed,
so a resumed search retrains exactly what an uninterrupted one would. The weights of every trial that
may still be the search's answer are kept under RUN/trials/ until the search ends (RUN/model.pt).

Under torchrun every rank calls ``evaluate`` in the same order: the trial trains with DDP, rank 0
scores it and the TrialResult is broadcast, so every rank takes the same search decision (ARCHITECTURE §8).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from facerec.data.run_data import parse_names, prepare_data
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.search.settings import SEARCH_RANKINGS, SearchRanking
from facerec.train.config import TrainConfig
from facerec.train.dist import DistInfo, broadcast_object
from facerec.train.loop import train_model
from facerec.train.recipe import resolve_recipe
from facerec.train.state import holdout_threshold
from facerec.train.validation import VerificationSet, find_bins
from nas_core.evaluator import TrialResult, trial_seed
from nas_core.genotype import Genotype


def trial_weights_path(trials_dir: Path, genotype: Genotype, epochs: int) -> Path:
    return trials_dir / f"{genotype.key()}-e{epochs}.pt"


class FaceEvaluator:
    """Evaluator(genotype, epochs) -> TrialResult for the face search (see the module docstring)."""

    def __init__(self, space, train_set, val_sets: list[VerificationSet], config: TrainConfig, *,
                 run_seed: int = 0, device: torch.device | str = "cpu", info: DistInfo = DistInfo(),
                 trials_dir: str | Path | None = None, progress: bool = True, metric: str = "accuracy",
                 schedule_epochs: int | None = None):
        self.space = space
        self.metric = metric  # "accuracy" (10-fold) or "auc" (pairs' ROC AUC): what a trial is scored by
        self.schedule_epochs = schedule_epochs  # a trial = the first epochs of a training this long (truncated)
        self.train_set = train_set
        self.val_sets = list(val_sets)
        self.config = config
        self.run_seed = run_seed
        self.device = torch.device(device)
        self.info = info
        self.trials_dir = Path(trials_dir) if trials_dir is not None else None
        self.progress = progress

    def train_trial(self, genotype: Genotype, epochs: int):
        """Train one trial exactly as ``evaluate`` does; returns (TrainOutcome, backbone, seed)."""

        seed = trial_seed(self.run_seed, genotype, epochs)
        torch.manual_seed(seed)  # the init depends on the trial alone, not on the trials before it
        backbone = self.space.build(genotype)
        head = create_head(self.config.head, self.space.embedding_size, self.train_set.num_classes,
                           **self.config.head_options)
        config = replace(self.config, epochs=epochs, seed=seed, checkpoint_every=0,
                         schedule_epochs=max(epochs, self.schedule_epochs) if self.schedule_epochs else None)
        outcome = train_model(backbone, head, self.train_set, config, device=self.device, val_sets=self.val_sets,
                              info=self.info, keep_best=True, progress=self.progress, verbose=False)
        return outcome, backbone, seed

    def evaluate(self, genotype: Genotype, epochs: int) -> TrialResult:
        start = time.perf_counter()
        outcome, backbone, seed = self.train_trial(genotype, epochs)
        scores = [100.0 * s for s in outcome.epoch_scores]  # percent: the units of the search's thresholds
        if self.metric == "auc":
            scores = [100.0 * _mean_auc(h["val"]) for h in outcome.history if h.get("val")]
        result = TrialResult(
            accuracy=max(scores), params=self.space.count_params(genotype), seconds=time.perf_counter() - start,
            seed=seed, epoch_accuracies=scores,
            extra={"best_epoch": outcome.best_epoch, "nan_steps": len(outcome.nan_steps),
                   "val": {k: v["accuracy"] for k, v in outcome.history[outcome.best_epoch - 1]["val"].items()},
                   # per-epoch signals the face rankings read besides accuracy (facerec.ranking)
                   "epoch_auc": [_mean_auc(h["val"]) for h in outcome.history],
                   "epoch_loss": [float(h["loss"]) for h in outcome.history]},
        )
        result = broadcast_object(result, self.info)  # decisions use rank 0's fitness (ARCHITECTURE §8)
        if self.trials_dir is not None and self.info.is_main:
            from facerec.model.checkpoint import save_checkpoint

            backbone.load_state_dict(outcome.best_state)
            save_checkpoint(trial_weights_path(self.trials_dir, genotype, epochs), backbone=backbone.cpu(),
                            genotype=genotype, space=self.space.config(),
                            config={"train": replace(self.config, epochs=epochs, seed=seed).to_dict()},
                            epoch=outcome.best_epoch, fitness=result.accuracy, val=result.extra["val"],
                            verification_threshold=holdout_threshold(outcome.history[outcome.best_epoch - 1]["val"]))
        logging.getLogger("facerec").info(f"trial {genotype.key()} x{epochs} epochs: {result.accuracy:.2f}% "
                          f"(epochs {', '.join(f'{s:.2f}' for s in scores)}), {result.params:,} params, "
                          f"{result.seconds:.1f} s")
        return result


def _mean_auc(results: dict) -> float | None:
    values = [r["auc"] for r in results.values() if "auc" in r]
    return float(sum(values) / len(values)) if values else None


def search_fitness(options: dict) -> str:
    """What a search ranks on: "bins" with --val-bins, else "holdout" (RUN/settings.json 'fitness'). A run
    from before that setting took every .bin pack of its folder when --holdout-ids was not given: its resume
    keeps ranking the way its journaled trials were ranked."""

    if "fitness" in options:
        return options["fitness"]
    legacy_bins = options["holdout_ids"] is None and options["data"] is not None and find_bins(options["data"])
    return "bins" if options["val_bins"] or legacy_bins else "holdout"


def search_ranking(options: dict) -> SearchRanking:
    """The SearchRanking of a search (RUN/settings.json 'ranking'; runs from before it: paper)."""
    return SEARCH_RANKINGS[options.get("ranking", "paper")]


def face_evaluator(saved: dict, run: Path, device: torch.device | str, *, info: DistInfo = DistInfo(),
                   log: logging.Logger | None = None, progress: bool = True):
    """The FaceEvaluator of a search from its RUN/settings.json content: data, space and recipe, built the same
    way by facerec-search and by each of its ``--parallel`` workers. Returns (evaluator, data, recipe)."""

    seed, options = int(saved["search"].get("seed", 0)), saved["options"]
    data = prepare_data(options["data"], run, subset_ids=options["subset_ids"], holdout_ids=options["holdout_ids"],
                        val_bins=parse_names(options["val_bins"]), fitness=search_fitness(options), seed=seed,
                        **saved.get("cache", {}))
    space = IResNetSpace(embedding_size=options["embedding_size"])
    # A run from before --recipe stored AdaFace's batch/lr/head explicitly: its recipe is AdaFace's.
    recipe = resolve_recipe(options.get("recipe", "adaface"), data.info, batch_size=options["batch_size"],
                            lr=options["lr"], head=options["head"], log=log)
    config = recipe.train_config(epochs=1, seed=seed, workers=options["workers"])
    ranking = search_ranking(options)
    evaluator = FaceEvaluator(space, data.train_set, data.val_sets, config, run_seed=seed, device=device, info=info,
                              trials_dir=run / "trials", progress=progress, metric=ranking.metric,
                              schedule_epochs=options.get("ranking_full_epochs") if ranking.truncated else None)
    return evaluator, data, recipe


@dataclass(frozen=True)
class FaceTrialJob:
    """One trial of a face search as plain values, for a worker process or a Ray task (nas_core.speculative)."""

    settings: str  # RUN/settings.json content as JSON text
    run: str
    device: str
    threads: int
    genotype: dict
    epochs: int


@functools.lru_cache(maxsize=2)
def _worker_evaluator(settings: str, run: str, device: str) -> FaceEvaluator:
    return face_evaluator(json.loads(settings), Path(run), device, progress=False)[0]


def run_face_trial(job: FaceTrialJob) -> TrialResult:
    """Train and score one trial as facerec-search does in-process (same seed; same result at the same thread
    count); its weights go to RUN/trials/ like an in-process trial's. The data are read once per process."""
    evaluator = _worker_evaluator(job.settings, job.run, job.device)
    torch.set_num_threads(job.threads)
    return evaluator.evaluate(Genotype.from_dict(job.genotype), job.epochs)
