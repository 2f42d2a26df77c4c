"""The files of a face training with an output folder, and the resume state (ARCHITECTURE §9, §10).

OUT/last.pt: the full resume state (backbone, head, optimizer, scheduler, scaler, the training state
of facerec.train.loop, the global RNGs) and, in ``config``, the settings that define the run, so a resume
that changes them is refused. OUT/model.pt: the selected epoch's weights (the best epoch on the verification
sets, or the last one) and ``verification_threshold``, the cosine threshold calibrated on that epoch's held-out
pairs (facerec.deploy.threshold; None without held-out identities). OUT/metrics.json: the history so far, what
model.pt was selected on (and its threshold) and, at the end, the report-only benchmark packs scored on model.pt.
Every file is written atomically.
"""

from __future__ import annotations

import copy
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from facerec.errors import FaceRecError
from facerec.model.checkpoint import save_checkpoint
from facerec.report import write_train_report
from facerec.train.run import TrainRun
from facerec.train.validation import verify
from nas_core.checkpoint import state_dict_problem
from nas_core.io import atomic_write_json
from nas_core.safe_pickle import load_weights_only
from nas_core.train import rng_state, set_rng_state


class RunFiles:
    """What the main rank of a training with an output folder writes there."""

    def __init__(self, output: Path, architecture: dict | None, run_config: dict | None, select: str = "best"):
        if select not in ("best", "last"):
            raise ValueError(f"select: expected 'best' or 'last', got {select!r}")
        self.output = Path(output)
        self.architecture = dict(architecture or {})  # genotype / arch / space: every checkpoint rebuilds its model alone
        self.run_config = dict(run_config or {})
        self.select = select
        self.model_benchmarks: dict | None = None

    def _config(self, run: TrainRun) -> dict:
        return {**self.run_config, "train": run.config.to_dict()}

    def save_last(self, run: TrainRun) -> None:
        run.state["seconds"] = run.seconds()
        save_checkpoint(self.output / "last.pt", backbone=run.model.backbone, **self.architecture, config=self._config(run),
                        head=run.model.head.state_dict(), optimizer=run.optimizer.state_dict(),
                        scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(),
                        train_state=dict(run.state), rng=rng_state())

    def model_epoch(self, run: TrainRun) -> int | None:
        """The epoch model.pt holds: the last one, or with "best" the best so far (the last without scores)."""
        if self.select == "best" and run.state["best_epoch"] is not None:
            return run.state["best_epoch"]
        return run.state["epoch"] or None

    def end_epoch(self, run: TrainRun, is_best: bool, results: dict) -> None:
        """model.pt when the epoch is the selected one so far, then last.pt and metrics.json."""
        if self.select == "last" or is_best or (run.state["best_score"] is None and not results):
            save_checkpoint(self.output / "model.pt", backbone=run.model.backbone, **self.architecture,
                            config=self._config(run), epoch=run.state["epoch"], val=results,
                            verification_threshold=holdout_threshold(results))
        self.save_last(run)
        self.write_metrics(run)

    def write_metrics(self, run: TrainRun) -> None:
        state = run.state
        history = state["history"]
        speeds = [h["images_per_second"] for h in history if h.get("images_per_second")]
        genotype = self.architecture.get("genotype")
        atomic_write_json(self.output / "metrics.json", {
            "epochs": history, "best_epoch": state["best_epoch"], "best_score": state["best_score"],
            "final": history[-1] if history else None, "global_step": state["global_step"],
            "nan_steps": state["nan_steps"], "images_per_second": float(np.mean(speeds)) if speeds else None,
            "seconds": state["seconds"], "train": run.config.to_dict(), "run": self.run_config,
            "genotype": genotype.to_dict() if genotype is not None else None, "arch": self.architecture.get("arch"),
            "selection": {**self.run_config.get("selection", {}), "model_epoch": self.model_epoch(run)},
            "model_benchmarks": self.model_benchmarks, "verification_threshold": self._model_threshold(run),
        })

    def _model_threshold(self, run: TrainRun) -> dict | None:
        """The verification threshold model.pt holds: its epoch's, calibrated on the held-out pairs."""
        epoch = self.model_epoch(run)
        record = next((h for h in run.state["history"] if h.get("epoch") == epoch), {})
        return holdout_threshold(record.get("val") or {})

    def finish(self, run: TrainRun, report_sets: list) -> dict | None:
        """At the end: the report-only benchmark packs scored on model.pt (the last epoch's scores when it holds
        the last epoch), then metrics.json and the report. Returns {"epoch", "results", "seconds"} or None."""
        epoch, history = self.model_epoch(run), run.state["history"]
        if report_sets and epoch is not None:
            last = history[-1] if history else {}
            if epoch == last.get("epoch") and "benchmarks" in last:
                self.model_benchmarks = {"epoch": epoch, "results": last["benchmarks"],
                                         "seconds": last["benchmark_seconds"]}
            else:
                self.model_benchmarks = {"epoch": epoch, **_score_model_pt(self.output / "model.pt", run, report_sets)}
            self.write_metrics(run)
        self.write_report()
        return self.model_benchmarks

    def write_report(self) -> None:
        write_train_report(self.output)


def holdout_threshold(results: dict) -> dict | None:
    """The verification threshold calibrated on the held-out identities' pairs (facerec.deploy.threshold), from
    an epoch's verification results; None when no identities were held out."""
    return (results.get("holdout") or {}).get("verification_threshold")


def _score_model_pt(path: Path, run: TrainRun, sets: list) -> dict:
    """{"results", "seconds"}: ``sets`` scored on the weights of ``path`` in a copy of the run's backbone."""
    tic = time.perf_counter()
    backbone = copy.deepcopy(run.model.backbone)
    backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    results = verify(backbone, sets, run.device, run.config.val_batch_size)
    return {"results": results, "seconds": time.perf_counter() - tic}


def load_state(path: str | Path, run: TrainRun) -> None:
    """Put ``run`` (model, head, optimizer, scheduler, scaler, training state, RNGs) where last.pt left it.

    Every part is checked as it is read: a last.pt of another net, or a damaged one, is a FaceRecError here
    rather than a traceback some steps later.
    """
    expected = "a last.pt resume state of the same model and head"
    ckpt = load_weights_only(path, f"{expected} written by facerec-train", error=FaceRecError)
    for part, module in (("model", run.model.backbone), ("head", run.model.head)):
        problem = state_dict_problem(ckpt.get(part) if isinstance(ckpt, dict) else None, module.state_dict())
        if problem is not None:
            raise FaceRecError(f"{path}: expected {expected} ({part}: {problem})")
    try:
        run.model.backbone.load_state_dict(ckpt["model"])
        run.model.head.load_state_dict(ckpt["head"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        _check_optimizer(run.optimizer)
        state = _checked_state(ckpt["train_state"])
        _load_schedule(run, ckpt["scheduler"], state["global_step"])
        if ckpt["scaler"]:  # empty when saved without AMP (CPU)
            run.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
    except (AttributeError, IndexError, KeyError, OverflowError, RuntimeError, TypeError, ValueError, EOFError,
            pickle.UnpicklingError) as exc:
        raise FaceRecError(f"{path}: expected {expected} ({type(exc).__name__}: {str(exc)[:160]})") from None
    run.state, run.seconds_before = state, state["seconds"]


def _load_schedule(run: TrainRun, saved: dict, global_step: int) -> None:
    """The lr schedule where last.pt left it: at ``global_step``, with the optimizer at that step's lr.

    A last.pt written before the per-step schedule holds a MultiStepLR stepped per epoch (``milestones``), and
    its optimizer the lr of the step before (warm-up and cosine were set before each step): its schedule
    starts again at the saved step, with the lr the uninterrupted run would have had there.
    """
    if "milestones" in saved:
        saved = {**run.scheduler.state_dict(), "last_epoch": global_step, "_step_count": global_step + 1}
        for group in run.optimizer.param_groups:
            group["lr"] = run.lr(global_step)
    fresh = run.scheduler.state_dict()
    odd = sorted(key for key, value in saved.items() if key in fresh and type(value) is not type(fresh[key]))
    if odd:  # LambdaLR takes its entries as they come; a wrong type would fail some steps later
        raise TypeError(f"the scheduler's {', '.join(odd)} of the wrong type")
    run.scheduler.load_state_dict(saved)
    if run.scheduler.last_epoch != global_step:
        raise ValueError(f"the scheduler is at step {run.scheduler.last_epoch!r:.20}, the training at {global_step}")
    base_lrs = run.scheduler.base_lrs
    if len(base_lrs) != len(run.optimizer.param_groups) or not all(_is_number(lr) for lr in base_lrs):
        raise ValueError("the scheduler's base_lrs do not match the optimizer's parameter groups")


def _check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    # Optimizer.load_state_dict checks the parameter counts only: the values must fit what SGD computes with.
    for group in optimizer.param_groups:
        if not all(_is_number(group.get(k)) for k in ("lr", "momentum", "weight_decay")):
            raise ValueError("a parameter group's lr, momentum or weight_decay is not a number")
        for p in group["params"]:
            entry = optimizer.state.get(p, {})
            if not isinstance(entry, dict):
                raise ValueError("a parameter's optimizer state is not a mapping")
            buffer = entry.get("momentum_buffer")
            if buffer is not None and (not isinstance(buffer, torch.Tensor) or buffer.shape != p.shape):
                raise ValueError("a momentum buffer does not match its parameter")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_STATE_CHECKS = {
    "epoch": _is_count, "step_in_epoch": _is_count, "global_step": _is_count, "seconds": _is_number,
    "history": lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v),
    "best_epoch": lambda v: v is None or _is_count(v), "best_score": lambda v: v is None or _is_number(v),
    "nan_steps": lambda v: isinstance(v, list) and all(_is_count(s) for s in v),
    "epoch_loss": lambda v: isinstance(v, list) and len(v) == 2 and _is_number(v[0]) and _is_count(v[1]),
}


def _checked_state(state) -> dict:
    """last.pt's training state (facerec.train.loop's counters and history), each entry of the type it is used as."""
    if not isinstance(state, dict):
        raise TypeError("'train_state' is not a dict")
    for name, check in _STATE_CHECKS.items():
        if name not in state:
            raise KeyError(f"train_state: {name}")
        if not check(state[name]):
            raise ValueError(f"train_state: {name} is {state[name]!r:.40}")
    return dict(state)
