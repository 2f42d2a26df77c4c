"""Classification trainer of the paper (ARCHITECTURE §3): SGD momentum 0.9, wd 3e-4, lr 0.025 cosine to 0,
batch 64, grad clip 5, cutout; AMP and channels_last on CUDA; runs on CPU.

The data live in memory as uint8 tensors (nas_core.classify.datasets) and are batched by index, with
augmentation done per batch on the device, so no DataLoader workers are needed.
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas_core import faults
from nas_core.classify.datasets import ClassificationData
from nas_core.errors import NasError
from nas_core.io import atomic_torch_save
from nas_core.safe_pickle import load_weights_only
from nas_core.train_config import TrainConfig


@dataclass
class TrainResult:
    accuracies: dict[str, list[float]]  # split name → accuracy (percent) after each epoch
    train_accuracies: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # learning rate of each epoch
    seconds: float = 0.0  # train + eval time of the epochs run by this call

    def best(self, split: str) -> float:
        return max(self.accuracies[split])

    def last(self, split: str) -> float:
        return self.accuracies[split][-1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states seed_everything sets (torch, CUDA, numpy, random), as a resume state holds them.

    Plain types only: checkpoints load with ``weights_only=True`` (ARCHITECTURE §10, §11).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(device: str | None = None) -> torch.device:
    """``None`` / "auto" → cuda when available, else cpu; an unavailable device is a user error."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise NasError(f"--device {device}: expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NasError(f"--device {device}: expected an available CUDA device; none found")
    return dev


@contextlib.contextmanager
def cpu_threads(device: torch.device | str | None, threads: int | None = None) -> Iterator[None]:
    """Intra-op threads for CPU training, restored afterwards; default 1 on CPU.

    Search trials on CPU are tiny: splitting each op over cores gains little, and OpenMP's spin-waits make
    a 2-thread run 5-10x slower as soon as another process shares the cores (measured here). Parallelism
    belongs at the trial level (nas_core.executor). ``threads`` overrides; CUDA runs are left alone.
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    old = torch.get_num_threads()
    wanted = threads if threads is not None else (1 if dev.type == "cpu" else old)
    torch.set_num_threads(max(1, wanted))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine from the optimizer's lr to 0 over ``epochs`` steps. The trainer steps it after each epoch,
    or before each epoch with ``reference_schedule`` (the reference code's order, ARCHITECTURE §3)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, data: ClassificationData,
                      device: torch.device, batch_size: int = 500, channels_last: bool = False,
                      amp: bool = False) -> float:
    """Top-1 accuracy in percent on uint8 images (normalised here, no augmentation)."""
    model.eval()
    images, labels = images.to(device), labels.to(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(labels), batch_size):
        x = data.normalize(images[start:start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(x)
        correct += (logits.argmax(1) == labels[start:start + batch_size]).sum()
    return 100.0 * int(correct) / max(len(labels), 1)


def _batches(n: int, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """Positions of each batch in this epoch's random order (the order itself moved to the device once)."""
    positions = torch.arange(n, device=device)
    chunks = list(positions.split(batch_size))
    # A last batch of one image breaks BatchNorm in train mode: fold it into the previous batch.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def amp_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             parameters, grad_clip: float | None = None, loss_is_finite: bool = True) -> bool:
    """One optimizer step under a GradScaler (a no-op scaler without AMP), clipping the true gradients.

    ``loss_is_finite=False`` (a NaN guard's verdict, agreed over DDP ranks) skips the step: no backward, the
    gradients cleared. Returns whether the step was taken.
    """
    optimizer.zero_grad(set_to_none=True)
    if not loss_is_finite:
        return False
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return True


@dataclass
class _Run:
    """What one classification training carries from epoch to epoch (and into its checkpoint)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    device: torch.device
    amp: bool
    channels_last: bool


def train_classifier(model: nn.Module, data: ClassificationData, config: TrainConfig, *, seed: int,
                     device: torch.device | str | None = None, eval_splits: Sequence[str] = ("val", "test"),
                     checkpoint: str | Path | None = None,
                     on_epoch: Callable[[int, TrainResult], None] | None = None) -> TrainResult:
    """Train ``model`` for ``config.epochs`` epochs; accuracy on each split of ``eval_splits`` after each epoch.

    Data order and augmentation come from a generator seeded with ``seed`` (the caller seeds the model's
    initialisation with ``seed_everything`` before building it). With ``checkpoint``, the state is saved
    atomically after every epoch and an existing checkpoint is resumed from.
    """
    if config.epochs < 1:
        raise NasError(f"epochs: expected a positive number, got {config.epochs}")
    run = _start(model, config, seed, device)
    splits = [s for s in eval_splits if len(data.split(s)[1]) > 0]
    result = TrainResult({s: [] for s in splits})
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start_epoch, result = _load_checkpoint(Path(checkpoint), run, config)
    images, labels = data.train_images.to(run.device), data.train_labels.to(run.device)
    for epoch in range(start_epoch, config.epochs):
        tic = time.perf_counter()
        if config.reference_schedule:
            with warnings.catch_warnings():  # stepping before optimizer.step() is the point here
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                run.scheduler.step()
        result.lrs.append(run.optimizer.param_groups[0]["lr"])
        loss, accuracy = _train_epoch(run, data, images, labels, config)
        result.train_losses.append(loss)
        result.train_accuracies.append(accuracy)
        for split in splits:
            x_eval, y_eval = data.split(split)
            result.accuracies[split].append(evaluate_accuracy(
                run.model, x_eval, y_eval, data, run.device, config.eval_batch_size, run.channels_last, run.amp))
        if not config.reference_schedule:
            run.scheduler.step()
        result.seconds += time.perf_counter() - tic
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), epoch + 1, run, result, config)
        if on_epoch is not None:
            on_epoch(epoch, result)
    return result


def _start(model: nn.Module, config: TrainConfig, seed: int, device: torch.device | str | None) -> _Run:
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    cuda = device.type == "cuda"
    amp, channels_last = config.amp and cuda, config.channels_last and cuda
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    return _Run(model, optimizer, cosine_schedule(optimizer, config.epochs), torch.amp.GradScaler("cuda", enabled=amp),
                torch.Generator().manual_seed(seed), device, amp, channels_last)


def _train_epoch(run: _Run, data: ClassificationData, images: torch.Tensor, labels: torch.Tensor,
                 config: TrainConfig) -> tuple[float, float]:
    """One pass over the training set (on the device) in a seeded order; returns (mean loss, accuracy %)."""
    run.model.train()
    criterion = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    order = torch.randperm(len(labels), generator=run.gen).to(run.device)
    draws = data.draw_augment(len(labels), run.gen, run.device)
    for pos in _batches(len(labels), config.batch_size, run.device):
        idx = order[pos]
        x = data.augment_batch(images[idx], {k: v[pos] for k, v in draws.items()})
        y = labels[idx]
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=run.device.type, dtype=torch.float16, enabled=run.amp):
            logits = run.model(x)
            loss = criterion(logits, y)
        amp_step(loss, run.optimizer, run.scaler, run.model.parameters(), config.grad_clip)
        faults.step()
        # Accumulate on the device: no per-step host sync.
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.argmax(1) == y).sum()
    return float(loss_sum) / len(labels), 100.0 * int(correct) / len(labels)


def _save_checkpoint(path: Path, epochs_done: int, run: _Run, result: TrainResult, config: TrainConfig) -> None:
    atomic_torch_save(path, {
        "epochs_done": epochs_done, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "generator": run.gen.get_state(), "result": asdict(result),
        "config": config.to_dict(),
    })


def _load_checkpoint(path: Path, run: _Run, config: TrainConfig) -> tuple[int, TrainResult]:
    expected = f"{path}: expected a training checkpoint of this model"
    state = load_weights_only(path, "a training checkpoint of this model")
    if not isinstance(state, dict) or state.get("config") != config.to_dict():
        # A different schedule length or batch size would silently change the run being resumed.
        found = state.get("config") if isinstance(state, dict) else None
        raise NasError(f"{path}: expected the same training settings as the checkpointed run ({found})")
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.scaler.load_state_dict(state["scaler"])
        run.gen.set_state(state["generator"])
        return int(state["epochs_done"]), TrainResult(**state["result"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise NasError(f"{expected} ({type(exc).__name__}: {str(exc)[:120]})") from None
