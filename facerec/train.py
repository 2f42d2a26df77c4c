"""The face trainer (ARCHITECTURE §4 AdaFace recipe): one loop used by `facerec-train` and by the search's
trials (facerec.search.FaceEvaluator).

SGD lr 0.1, momentum 0.9, wd 5e-4 with none on BN/bias/PReLU, lr ×0.1 at 12/20/24 of 26 epochs
(scaled to the run's length), AMP and channels_last on CUDA, DDP under torchrun. OUT/last.pt holds
the full state (model, head, optimizer, scheduler, scaler, epoch, step, RNG) and is written
atomically each epoch and every ``checkpoint_every`` steps, so a job killed mid-epoch resumes from
the saved step. Non-finite losses skip the step; too many in a row stop with a FaceRecError.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from facerec.data.datasets import normalize_batch
from facerec.dist import DistInfo, all_ranks_true, broadcast_object
from facerec.errors import FaceRecError
from facerec.validation import VerificationSet, mean_accuracy, verify
from nas_core.io import atomic_write_json

ADAFACE_EPOCHS = 26


@dataclass
class TrainConfig:
    epochs: int = ADAFACE_EPOCHS
    batch_size: int = 512  # global: split over torchrun ranks
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (12, 20, 24)  # AdaFace, in epochs of a 26-epoch run
    head: str = "adaface"
    seed: int = 0
    workers: int = 2
    amp: bool = True  # CUDA only
    checkpoint_every: int = 500  # steps between mid-epoch writes of last.pt
    max_nan_steps: int = 5  # this many non-finite losses in a row stop training
    val_batch_size: int = 128

    def lr_milestones(self) -> list[int]:
        """AdaFace's milestones scaled to ``epochs`` (12/20/24 of 26 stay 12/20/24)."""
        scaled = {max(1, round(m * self.epochs / ADAFACE_EPOCHS)) for m in self.milestones}
        return sorted(m for m in scaled if m < self.epochs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "milestones" in known:
            known["milestones"] = tuple(known["milestones"])
        return cls(**known)


@dataclass
class TrainOutcome:
    history: list[dict]  # one entry per epoch: loss, lr, img/s, seconds, val results, score
    best_epoch: int | None  # 1-based epoch with the best mean verification accuracy
    best_score: float | None  # fraction
    best_state: dict | None  # backbone state_dict of the best epoch (CPU), when keep_best
    global_step: int
    seconds: float
    nan_steps: list[int] = field(default_factory=list)

    @property
    def epoch_scores(self) -> list[float]:
        return [h["score"] for h in self.history if h.get("score") is not None]


class _FaceModel(nn.Module):
    """Backbone + margin head as one module, so DDP syncs both; the head runs in float32."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(images)
        with torch.autocast(images.device.type, enabled=False):
            return self.head(embeddings.float(), labels)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BN, bias and PReLU parameters (all the 1-D ones), ARCHITECTURE §4."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    # Plain types only: checkpoints load with weights_only=True (facerec.checkpoint).
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _with_fresh_transform(dataset: Dataset) -> Dataset:
    """A view of ``dataset`` whose augmentation RNG starts afresh from this run's seed: a transform
    used in-process (workers=0) keeps its RNG across runs, which would make a search trial depend on
    the trials before it."""
    if getattr(dataset, "transform", None) is None:
        return dataset
    view = copy.copy(dataset)
    view.transform = copy.deepcopy(dataset.transform)
    return view


def _per_rank_batch(config: TrainConfig, dataset: Dataset, info: DistInfo) -> int:
    per_rank_images = len(dataset) // info.world_size
    batch = min(max(1, config.batch_size // info.world_size), per_rank_images)
    if batch < 2:  # BatchNorm needs two samples per batch
        raise FaceRecError(f"training data: expected at least {2 * info.world_size} images, got {len(dataset)}")
    return batch


def _epoch_loader(dataset: Dataset, config: TrainConfig, info: DistInfo, epoch: int, start_step: int,
                  batch: int, device: torch.device) -> DataLoader:
    """This rank's batches of ``epoch`` from ``start_step`` on: the order depends only on (seed, epoch),
    so a resumed epoch sees the batches it had not seen yet."""
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    indices = indices[start_step * batch : len(indices) // batch * batch]
    return DataLoader(dataset, batch_size=batch, sampler=indices, num_workers=config.workers,
                      pin_memory=device.type == "cuda", drop_last=True)


def _plain_scheduler_state(scheduler) -> dict:
    state = scheduler.state_dict()
    state["milestones"] = {int(k): int(v) for k, v in state["milestones"].items()}  # a Counter: not weights_only-safe
    return state


def _save_state(path: Path, model: _FaceModel, optimizer, scheduler, scaler, state: dict, meta: dict) -> None:
    from facerec.checkpoint import save_checkpoint

    save_checkpoint(path, backbone=model.backbone, **meta, head=model.head.state_dict(),
                    optimizer=optimizer.state_dict(), scheduler=_plain_scheduler_state(scheduler),
                    scaler=scaler.state_dict(), train_state=dict(state), rng=_rng_state())


def _load_state(path: str | Path, model: _FaceModel, optimizer, scheduler, scaler) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.backbone.load_state_dict(ckpt["model"])
        model.head.load_state_dict(ckpt["head"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scheduler.milestones = Counter(scheduler.milestones)  # MultiStepLR looks up missing epochs as 0
        if ckpt["scaler"]:  # empty when saved without AMP (CPU)
            scaler.load_state_dict(ckpt["scaler"])
        state = dict(ckpt["train_state"])
    except FileNotFoundError as exc:
        raise FaceRecError(f"{path}: expected a last.pt written by facerec-train (file not found)") from exc
    except (KeyError, RuntimeError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise FaceRecError(f"{path}: expected a last.pt resume state of the same model and head ({exc})") from exc
    _set_rng_state(ckpt["rng"])
    return state


def _write_metrics(output: Path, state: dict, config: TrainConfig, meta: dict, run_config: dict) -> None:
    history = state["history"]
    speeds = [h["images_per_second"] for h in history if h.get("images_per_second")]
    metrics = {
        "epochs": history,
        "best_epoch": state["best_epoch"],
        "best_score": state["best_score"],
        "final": history[-1] if history else None,
        "global_step": state["global_step"],
        "nan_steps": state["nan_steps"],
        "images_per_second": float(np.mean(speeds)) if speeds else None,
        "seconds": state["seconds"],
        "train": config.to_dict(),
        "run": run_config,
        "genotype": meta.get("genotype").to_dict() if meta.get("genotype") is not None else None,
        "arch": meta.get("arch"),
    }
    atomic_write_json(output / "metrics.json", metrics)


def train_model(backbone: nn.Module, head: nn.Module, train_set: Dataset, config: TrainConfig, *,
                device: torch.device | str = "cpu", val_sets: list[VerificationSet] = (),
                info: DistInfo = DistInfo(), output: str | Path | None = None, resume: str | Path | None = None,
                meta: dict | None = None, run_config: dict | None = None, keep_best: bool = False,
                progress: bool = True, verbose: bool = True) -> TrainOutcome:
    """Train ``backbone`` with margin ``head`` on ``train_set`` (items: normalised CHW tensor, label).

    With ``output`` it writes last.pt (resume state), model.pt (best epoch, or last without val sets),
    metrics.json, TensorBoard scalars under tb/ and, at the end, report.html + report.md; ``meta``
    (genotype / arch / space) goes into every checkpoint so it rebuilds its model alone. Without
    ``output`` (search trials) it writes nothing.
    """
    log = logging.getLogger("facerec")
    level = logging.INFO if verbose else logging.DEBUG
    device = torch.device(device)
    meta, run_config = dict(meta or {}), dict(run_config or {})
    output = Path(output) if output is not None else None
    seed_everything(config.seed)
    train_set = _with_fresh_transform(train_set)
    cuda = device.type == "cuda"
    backbone.to(device)
    head.to(device)
    if cuda:
        backbone.to(memory_format=torch.channels_last)
    model = _FaceModel(backbone, head)
    net = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.lr_milestones(), gamma=0.1)
    amp = config.amp and cuda
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    batch = _per_rank_batch(config, train_set, info)
    steps_per_epoch = len(train_set) // info.world_size // batch
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "best_epoch": None,
                             "best_score": None, "nan_steps": [], "seconds": 0.0, "epoch_loss": [0.0, 0]}
    if resume is not None:
        state = _load_state(resume, model, optimizer, scheduler, scaler)
        log.info(f"resumed from {resume}: epoch {state['epoch'] + 1}, step {state['global_step']} "
                 f"({state['step_in_epoch']}/{steps_per_epoch} of the epoch done)")
    writer = None
    if output is not None and info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output / "tb"))
    best_state = None
    nan_run = 0
    total_steps = config.epochs * steps_per_epoch
    job_start, job_steps = time.perf_counter(), 0

    seconds_before = state["seconds"]

    def save_last() -> None:
        state["seconds"] = seconds_before + time.perf_counter() - job_start
        if output is not None and info.is_main:
            _save_state(output / "last.pt", model, optimizer, scheduler, scaler, state, meta)

    try:
        for epoch in range(state["epoch"], config.epochs):
            start_step = state["step_in_epoch"]
            loader = _epoch_loader(train_set, config, info, epoch, start_step, batch, device)
            bar = tqdm(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not (progress and info.is_main), leave=False, dynamic_ncols=True, unit="step")
            epoch_start, epoch_images = time.perf_counter(), 0
            for images, labels in loader:
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                if images.dtype == torch.uint8:  # FaceDataset(normalize=False): ARCHITECTURE §6 input on the device
                    images = normalize_batch(images)
                if cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    logits = net(images, labels)
                loss = F.cross_entropy(logits.float(), labels)
                state["step_in_epoch"] += 1
                state["global_step"] += 1
                job_steps += 1
                epoch_images += images.shape[0] * info.world_size
                if not all_ranks_true(bool(torch.isfinite(loss)), info, device):
                    optimizer.zero_grad(set_to_none=True)
                    nan_run += 1
                    state["nan_steps"].append(state["global_step"])
                    log.warning(f"step {state['global_step']}: non-finite loss ({loss.item()}), step skipped "
                                f"({nan_run} in a row, stop at {config.max_nan_steps})")
                    if nan_run >= config.max_nan_steps:
                        raise FaceRecError(
                            f"training: loss was not finite for {nan_run} steps in a row (last at step "
                            f"{state['global_step']}); expected finite losses: lower --lr or check the data")
                    bar.update(1)
                    continue
                nan_run = 0
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_value = loss.item()
                state["epoch_loss"][0] += loss_value
                state["epoch_loss"][1] += 1
                bar.update(1)
                elapsed = time.perf_counter() - epoch_start
                speed = epoch_images / max(elapsed, 1e-9)
                eta = (total_steps - state["global_step"]) * (time.perf_counter() - job_start) / job_steps
                bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{speed:.0f}", eta=_hms(eta), refresh=False)
                if writer is not None and state["global_step"] % 10 == 0:
                    writer.add_scalar("train/loss", loss_value, state["global_step"])
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], state["global_step"])
                    writer.add_scalar("train/images_per_second", speed, state["global_step"])
                if (config.checkpoint_every and state["global_step"] % config.checkpoint_every == 0
                        and state["step_in_epoch"] < steps_per_epoch):
                    save_last()
            bar.close()
            train_seconds = time.perf_counter() - epoch_start
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            results = verify(model.backbone, list(val_sets), device, config.val_batch_size) \
                if val_sets and info.is_main else {}
            results = broadcast_object(results, info)
            score = mean_accuracy(results) if results else None
            loss_sum, loss_n = state["epoch_loss"]
            record = {"epoch": epoch + 1, "step": state["global_step"],
                      "loss": loss_sum / loss_n if loss_n else float("nan"), "lr": lr,
                      "images_per_second": epoch_images / max(train_seconds, 1e-9),
                      "train_seconds": train_seconds, "val": results, "score": score}
            state["history"].append(record)
            state.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss=[0.0, 0])
            is_best = score is not None and (state["best_score"] is None or score > state["best_score"])
            if is_best:
                state["best_epoch"], state["best_score"] = epoch + 1, score
                if keep_best:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.backbone.state_dict().items()}
            val_text = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in results.items())
            log.log(level, f"epoch {epoch + 1}/{config.epochs} step {state['global_step']}: loss {record['loss']:.4f}, "
                           f"lr {lr:.4g}, {epoch_images / max(train_seconds, 1e-9):.0f} img/s, {train_seconds:.1f} s"
                           + (f"; {val_text}" + (" (best)" if is_best else "") if results else ""))
            if writer is not None:
                writer.add_scalar("epoch/loss", record["loss"], epoch + 1)
                for name, r in results.items():
                    writer.add_scalar(f"val/{name}/accuracy", r["accuracy"], epoch + 1)
            if output is not None and info.is_main:
                if is_best or (score is None and state["best_score"] is None):
                    from facerec.checkpoint import save_checkpoint

                    save_checkpoint(output / "model.pt", backbone=model.backbone, **meta,
                                    config={**run_config, "train": config.to_dict()},
                                    epoch=epoch + 1, val=results)
                save_last()
                _write_metrics(output, state, config, meta, run_config)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:  # the main rank of a run with an output folder: OUT/report.html
        from facerec.report import write_train_report

        write_train_report(output)
    state["seconds"] = seconds_before + time.perf_counter() - job_start
    if keep_best and best_state is None:  # no verification sets: the last weights are the result
        best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.backbone.state_dict().items()})
    return TrainOutcome(state["history"], state["best_epoch"], state["best_score"], best_state,
                        state["global_step"], state["seconds"], list(state["nan_steps"]))


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
