"""Where a face training reports (facerec.train.loop): the "facerec" log, TensorBoard scalars under OUT/tb and
a progress bar per epoch with loss, images/s and the job's ETA."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from tqdm import tqdm

from facerec.train.run import TrainRun


class TrainSinks:
    """Where a training reports: the "facerec" log (INFO; DEBUG for search trials), TensorBoard scalars under
    OUT/tb (main rank, with an output folder) and a progress bar per epoch with loss, img/s and ETA."""

    def __init__(self, run: TrainRun, output: Path | None, progress: bool, verbose: bool):
        self.log = logging.getLogger("facerec")
        self.level = logging.INFO if verbose else logging.DEBUG
        self.writer = None
        if output is not None and run.info.is_main:
            # Loaded by runs with an output folder only: search trials never pay for TensorBoard's import.
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tb"))
        self.show_bar = progress and run.info.is_main
        self.bar: tqdm | None = None
        self.total_steps = run.config.epochs * run.steps_per_epoch
        self.started, self.steps = time.perf_counter(), 0

    def start_epoch(self, run: TrainRun, epoch: int) -> None:
        self.bar = tqdm(total=run.steps_per_epoch, initial=run.state["step_in_epoch"], unit="step",
                        desc=f"epoch {epoch + 1}/{run.config.epochs}",
                        disable=None if self.show_bar else True, leave=False,
                        dynamic_ncols=True)

    def step(self, run: TrainRun, loss: float, speed: float) -> None:
        self.steps += 1
        self.bar.update(1)
        step = run.state["global_step"]
        eta = (self.total_steps - step) * (time.perf_counter() - self.started) / self.steps
        self.bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{speed:.0f}", eta=_hms(eta), refresh=False)
        if self.writer is not None and step % 10 == 0:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", run.lr(step - 1), step)
            self.writer.add_scalar("train/images_per_second", speed, step)

    def skipped(self, run: TrainRun, loss: float) -> None:
        self.steps += 1
        self.bar.update(1)
        self.log.warning(f"step {run.state['global_step']}: non-finite loss ({loss}), step skipped "
                         f"({run.nan_run} in a row, stop at {run.config.max_nan_steps})")

    def end_steps(self) -> None:
        self.bar.close()

    def end_epoch(self, run: TrainRun, record: dict, is_best: bool) -> None:
        results, epoch = record["val"], record["epoch"]
        val_text = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in results.items())
        self.log.log(self.level, f"epoch {epoch}/{run.config.epochs} step {record['step']}: loss {record['loss']:.4f}, "
                                 f"lr {record['lr']:.4g}, {record['images_per_second']:.0f} img/s, "
                                 f"{record['train_seconds']:.1f} s"
                     + (f"; {val_text}" + (" (best)" if is_best else "") if results else "")
                     + _embeddings_text(record.get("embeddings")) + _benchmarks_text(record))
        if (record.get("embeddings") or {}).get("warning"):
            self.log.warning(f"epoch {epoch}: {record['embeddings']['warning']} ({record['embeddings']['on']})")
        if self.writer is not None:
            self.writer.add_scalar("epoch/loss", record["loss"], epoch)
            for name, r in results.items():
                self.writer.add_scalar(f"val/{name}/accuracy", r["accuracy"], epoch)
            for name, r in (record.get("benchmarks") or {}).items():
                self.writer.add_scalar(f"benchmark/{name}/accuracy", r["accuracy"], epoch)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _embeddings_text(health: dict | None) -> str:
    """The epoch line's collapse numbers (facerec.train.diagnostics)."""
    if not health:
        return ""
    return (f"; embeddings ({health['on']}): mean-norm {health['mean_norm']:.3f}, "
            f"effective rank {health['effective_rank']:.1f}/{health['dim']}")


def _benchmarks_text(record: dict) -> str:
    """The epoch line's report-only benchmark scores, when they were due this epoch."""
    if not record.get("benchmarks"):
        return ""
    scores = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in record["benchmarks"].items())
    return f"; benchmarks (report only, {record['benchmark_seconds']:.1f} s): {scores}"


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
