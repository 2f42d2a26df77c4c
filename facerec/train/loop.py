"""The face trainer (ARCHITECTURE §4 AdaFace recipe): one loop used by `facerec-train` and by the search's
trials (facerec.search.evaluator.FaceEvaluator).

SGD lr 0.1, momentum 0.9, wd 5e-4 with none on BN/bias/PReLU, lr ×0.1 at 12/20/24 of 26 epochs
(scaled to the run's length; one per-step schedule, facerec.train.run.lr_schedule), AMP and channels_last on
CUDA, DDP under torchrun. The pieces: a step
(with the NaN guard: non-finite losses skip the step, too many in a row stop with a FaceRecError), an
epoch, the validation, the run's files (facerec.train.state: OUT/last.pt with the full resume state,
OUT/model.pt, OUT/metrics.json) and the logging sinks (facerec.train.log: log, TensorBoard, progress bar).

Resuming is exact: last.pt is written atomically each epoch and every ``checkpoint_every`` steps, the
batch order depends only on (seed, epoch) and an image's augmentation only on (seed, epoch, index), so
a job killed anywhere and resumed ends with the weights of an uninterrupted run, bit for bit.
SIGTERM or Ctrl-C (with an output folder) stops after the current step and writes last.pt first.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from eval_protocols.embed import normalize
from facerec.errors import FaceRecError
from facerec.train.config import TrainConfig
from facerec.train.diagnostics import epoch_diagnostics
from facerec.train.dist import DistInfo, all_ranks_true, broadcast_object
from facerec.train.log import TrainSinks
from facerec.train.run import FaceModel, TrainRun, lr_schedule
from facerec.train.state import RunFiles, load_state
from facerec.train.validation import VerificationSet, mean_accuracy, verify
from nas_core import faults
from nas_core.train import amp_step, seed_everything


@dataclass
class TrainOutcome:
    history: list[dict]  # one entry per epoch: loss, lr, img/s, seconds, val results, score (+ benchmarks)
    best_epoch: int | None  # 1-based epoch with the best mean verification accuracy
    best_score: float | None  # fraction
    best_state: dict | None  # backbone state_dict of the selected epoch (CPU), when keep_best
    global_step: int
    seconds: float
    nan_steps: list[int] = field(default_factory=list)
    model_epoch: int | None = None  # the epoch OUT/model.pt holds (with an output folder)
    model_benchmarks: dict | None = None  # the report-only .bin packs scored on OUT/model.pt

    @property
    def epoch_scores(self) -> list[float]:
        return [h["score"] for h in self.history if h.get("score") is not None]


class TrainingStopped(Exception):
    """SIGTERM or Ctrl-C stopped a training that has an output folder; its last.pt holds ``global_step``."""

    def __init__(self, signum: int, global_step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {global_step}")
        self.signum, self.global_step = signum, global_step


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BN, bias and PReLU parameters (all the 1-D ones), ARCHITECTURE §4: timm's grouping."""
    from timm.optim import param_groups_weight_decay

    return param_groups_weight_decay(module, weight_decay)


def _start(backbone: nn.Module, head: nn.Module, train_set: Dataset, config: TrainConfig, device: torch.device,
           info: DistInfo) -> TrainRun:
    cuda = device.type == "cuda"
    backbone.to(device)
    head.to(device)
    if cuda:
        backbone.to(memory_format=torch.channels_last)
    model = FaceModel(backbone, head)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) \
        if info.enabled else model
    optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and cuda)
    batch = _per_rank_batch(config, train_set, info)
    steps_per_epoch = len(train_set) // info.world_size // batch
    return TrainRun(model, net, optimizer, lr_schedule(optimizer, config, steps_per_epoch), scaler, config, device,
                    info, batch, steps_per_epoch)


# -- data ---------------------------------------------------------------------------------------------

def _with_fresh_transform(dataset: Dataset) -> Dataset:
    """A view of ``dataset`` with its own copy of the transform: the trainer reseeds the augmentation per
    item, and a transform used in-process (workers=0) would otherwise carry RNG state from run to run
    (making a search trial depend on the trials before it)."""
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


class _EpochItems(Dataset):
    """Item i of ``dataset`` in ``epoch`` with its augmentation drawn from (seed, epoch, i) when the transform
    can be reseeded (facerec.data.augment.AdaFaceAugment): the same draws whichever worker loads the
    item and whatever was loaded before it, so a resumed epoch sees exactly the images it would have."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.entropy = dataset, (seed % 2**64, epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        reseed = getattr(getattr(self.dataset, "transform", None), "reseed", None)
        if reseed is not None:
            reseed((*self.entropy, i))
        return self.dataset[i]


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave Ctrl-C and SIGTERM to the main process, which stops after the current step
    (a worker dying first would break the batch the main process is waiting for)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _epoch_indices(run: TrainRun, dataset: Dataset, epoch: int) -> list[int]:
    """This rank's item order in ``epoch``: a function of (seed, epoch) only."""
    own = getattr(dataset, "epoch_indices", None)  # a decoded cache held on the device: the rank's own share
    indices = own(run.config.seed, epoch, run.info.rank, run.info.world_size) if own is not None else None
    if indices is None:
        sampler = DistributedSampler(dataset, num_replicas=run.info.world_size, rank=run.info.rank, shuffle=True,
                                     seed=run.config.seed, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler)
    return indices


def _epoch_loader(run: TrainRun, dataset: Dataset, epoch: int) -> DataLoader:
    """This rank's batches of ``epoch`` from the saved step on: the order depends only on (seed, epoch), so a
    resumed epoch sees the batches it had not seen yet."""
    config, info = run.config, run.info
    indices = _epoch_indices(run, dataset, epoch)
    indices = indices[run.state["step_in_epoch"] * run.batch : len(indices) // run.batch * run.batch]
    if hasattr(dataset, "device_batches"):  # the decoded cache: gathered, augmented, normalised on the device
        return dataset.device_batches(indices, run.batch, run.device, (config.seed, epoch, info.rank),
                                      first_step=run.state["step_in_epoch"])
    # The loader draws its worker seeds from a generator of its own, not from the global RNG the resume
    # state holds (a resumed epoch makes one loader more than the uninterrupted run did).
    generator = torch.Generator().manual_seed((config.seed * 1_000_003 + epoch) % 2**63)
    return DataLoader(_EpochItems(dataset, config.seed, epoch), batch_size=run.batch, sampler=indices,
                      num_workers=config.workers, pin_memory=run.device.type == "cuda", drop_last=True,
                      generator=generator, worker_init_fn=_ignore_stop_signals)


# -- step, epoch, validation ----------------------------------------------------------------------------

def _step(run: TrainRun, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, bool]:
    """One optimizer step; (loss, stepped). The NaN guard: a loss that is not finite on every rank skips the
    step on all of them (gradients cleared, weights untouched)."""
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    if images.dtype == torch.uint8:  # FaceDataset(normalize=False): ARCHITECTURE §6 input on the device
        images = normalize(images)
    if run.device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.amp):
        logits = run.net(images, labels)
    loss = F.cross_entropy(logits.float(), labels)
    state = run.state
    state["step_in_epoch"] += 1
    state["global_step"] += 1
    finite = all_ranks_true(bool(torch.isfinite(loss)), run.info, run.device)
    stepped = amp_step(loss, run.optimizer, run.scaler, run.model.parameters(), loss_is_finite=finite)
    _advance_schedule(run)
    value = loss.item()
    if stepped:
        run.nan_run = 0
        state["epoch_loss"][0] += value
        state["epoch_loss"][1] += 1
    else:
        run.nan_run += 1
        state["nan_steps"].append(state["global_step"])
    return value, stepped


def _advance_schedule(run: TrainRun) -> None:
    """The lr of the next step. A step skipped by the NaN guard (or by AMP's scaler) advances the schedule too:
    the lr is a function of the global step, which counts it (and a resume restores both)."""
    with warnings.catch_warnings():  # torch's warning assumes an epoch schedule that skipped its first value
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        run.scheduler.step()


def _train_epoch(run: TrainRun, dataset: Dataset, epoch: int, sinks: TrainSinks, files, stop: _StopRequest
                 ) -> tuple[int, float]:
    """The steps of ``epoch`` from the saved one on; returns (images seen by all ranks, seconds)."""
    loader = _epoch_loader(run, dataset, epoch)
    sinks.start_epoch(run, epoch)
    tic, images = time.perf_counter(), 0
    for batch_images, labels in loader:
        loss, stepped = _step(run, batch_images, labels)
        images += labels.shape[0] * run.info.world_size
        if stepped:
            sinks.step(run, loss, images / max(time.perf_counter() - tic, 1e-9))
        else:
            sinks.skipped(run, loss)
            if run.nan_run >= run.config.max_nan_steps:
                raise FaceRecError(
                    f"training: loss was not finite for {run.nan_run} steps in a row (last at step "
                    f"{run.state['global_step']}); expected finite losses: lower --lr or check the data")
        every = run.config.checkpoint_every
        if files is not None and every and run.state["global_step"] % every == 0 \
                and run.state["step_in_epoch"] < run.steps_per_epoch:
            files.save_last(run)
        faults.step()
        stop.check(run, files)
    sinks.end_steps()
    return images, time.perf_counter() - tic


def _validate(run: TrainRun, val_sets: list[VerificationSet]) -> tuple[dict, float | None]:
    """Verification results of the backbone (scored on the main rank, shared with all) and their mean."""
    results = verify(run.model.backbone, list(val_sets), run.device, run.config.val_batch_size, far=run.config.far) \
        if val_sets and run.info.is_main else {}
    results = broadcast_object(results, run.info)
    return results, mean_accuracy(results) if results else None


def _benchmark(run: TrainRun, report_sets: list[VerificationSet], epoch: int, every: int) -> dict:
    """The .bin packs scored as a report only, every ``every`` epochs and after the last one (none when
    ``every`` is 0): on the main rank, and nothing is decided on them (ARCHITECTURE §4)."""
    due = every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == run.config.epochs)
    if not (report_sets and due and run.info.is_main):
        return {}
    tic = time.perf_counter()
    results = verify(run.model.backbone, list(report_sets), run.device, run.config.val_batch_size)
    return {"benchmarks": results, "benchmark_seconds": time.perf_counter() - tic}


def _diagnose(run: TrainRun, results: dict, train_set: Dataset) -> dict:
    """Collapse numbers of the epoch's embeddings (facerec.train.diagnostics), measured on the main rank."""
    health = epoch_diagnostics(run.model.backbone, results, train_set, run.device, run.config.val_batch_size) \
        if run.info.is_main else None
    return broadcast_object(health, run.info)


def _end_epoch(run: TrainRun, epoch: int, images: int, seconds: float, lr: float, results: dict,
               score: float | None, keep_best: bool) -> tuple[dict, bool]:
    """Record the epoch in the state's history; (record, whether it is the best so far)."""
    state = run.state
    loss_sum, loss_n = state["epoch_loss"]
    record = {"epoch": epoch + 1, "step": state["global_step"], "loss": loss_sum / loss_n if loss_n else float("nan"),
              "lr": lr, "images_per_second": images / max(seconds, 1e-9), "train_seconds": seconds,
              "val": results, "score": score}
    state["history"].append(record)
    state.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss=[0.0, 0])
    is_best = score is not None and (state["best_score"] is None or score > state["best_score"])
    if is_best:
        state["best_epoch"], state["best_score"] = epoch + 1, score
        if keep_best:
            run.best_state = {k: v.detach().to("cpu", copy=True) for k, v in run.model.backbone.state_dict().items()}
    return record, is_best


# -- stopping on SIGTERM / Ctrl-C -------------------------------------------------------------------------

class _StopRequest:
    """Set by SIGTERM or a first Ctrl-C; the step loop then writes last.pt and raises TrainingStopped."""

    def __init__(self):
        self.signum: int | None = None

    def check(self, run: TrainRun, files) -> None:
        # Every rank stops after the same step, or DDP would wait forever for the ones that went on.
        if all_ranks_true(self.signum is None, run.info, run.device):
            return
        if files is not None:
            files.save_last(run)
        raise TrainingStopped(self.signum or signal.SIGTERM, run.state["global_step"])


@contextlib.contextmanager
def _stop_on_signals(enabled: bool) -> Iterator[_StopRequest]:
    """While training with an output folder, SIGTERM or Ctrl-C asks for a stop after the current step (so
    last.pt holds a whole step); a second Ctrl-C interrupts at once."""
    request = _StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum, frame):
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signum = signum

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, handle)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


# -- the loop ---------------------------------------------------------------------------------------------

def train_model(backbone: nn.Module, head: nn.Module, train_set: Dataset, config: TrainConfig, *,
                device: torch.device | str = "cpu", val_sets: list[VerificationSet] = (),
                info: DistInfo = DistInfo(), output: str | Path | None = None, resume: str | Path | None = None,
                architecture: dict | None = None, run_config: dict | None = None, keep_best: bool = False,
                select: str = "best", report_sets: list[VerificationSet] = (), report_every: int = 0,
                progress: bool = True, verbose: bool = True) -> TrainOutcome:
    """Train ``backbone`` with margin ``head`` on ``train_set`` (items: normalised CHW tensor, label).

    ``val_sets`` are scored after every epoch; ``select`` "best" keeps the epoch with the best mean accuracy on
    them (the last one without val sets), "last" the last epoch. ``report_sets`` are scored as a report only,
    every ``report_every`` epochs and after the last one (0: never), and on model.pt at the end.
    With ``output`` it writes last.pt (resume state), model.pt (the selected epoch),
    metrics.json, TensorBoard scalars under tb/ and, at the end, report.html + report.md; ``architecture``
    (genotype / arch / space) goes into every checkpoint so it rebuilds its model alone; SIGTERM or
    Ctrl-C then raises TrainingStopped once last.pt holds the last step. Without ``output`` (search
    trials) it writes nothing.
    """
    output = Path(output) if output is not None else None
    seed_everything(config.seed)
    train_set = _with_fresh_transform(train_set)
    run = _start(backbone, head, train_set, config, torch.device(device), info)
    if hasattr(train_set, "hold_on_device"):  # --cache-on-device
        train_set.hold_on_device(run.device, info.rank, info.world_size)
    if resume is not None:
        load_state(resume, run)
        logging.getLogger("facerec").info(
            f"resumed from {resume}: epoch {run.state['epoch'] + 1}, step {run.state['global_step']} "
            f"({run.state['step_in_epoch']}/{run.steps_per_epoch} of the epoch done)")
    files = RunFiles(output, architecture, run_config, select) if output is not None and info.is_main else None
    sinks = TrainSinks(run, output, progress, verbose)
    try:
        with _stop_on_signals(enabled=output is not None) as stop:
            for epoch in range(run.state["epoch"], config.epochs):
                images, seconds = _train_epoch(run, train_set, epoch, sinks, files, stop)
                lr = run.lr(run.state["global_step"] - 1)  # of the epoch's last step
                results, score = _validate(run, list(val_sets))
                record, is_best = _end_epoch(run, epoch, images, seconds, lr, results, score, keep_best)
                record["embeddings"] = _diagnose(run, results, train_set)
                record.update(_benchmark(run, list(report_sets), epoch, report_every))
                sinks.end_epoch(run, record, is_best)
                if files is not None:
                    files.end_epoch(run, is_best, results)
                if epoch + 1 < config.epochs:
                    stop.check(run, files=None)  # last.pt was just written
    finally:
        sinks.close()
    model_benchmarks = files.finish(run, list(report_sets) if report_every > 0 else []) if files is not None \
        else None
    if keep_best and (run.best_state is None or select == "last"):  # the last weights are the result
        run.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in backbone.state_dict().items()})
    return TrainOutcome(run.state["history"], run.state["best_epoch"], run.state["best_score"], run.best_state,
                        run.state["global_step"], run.seconds(), list(run.state["nan_steps"]),
                        files.model_epoch(run) if files is not None else None, model_benchmarks)
