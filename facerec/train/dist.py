"""torchrun detection (ARCHITECTURE §8): a process group only when RANK/WORLD_SIZE say so, and one voice:
only the main rank logs, prints and writes files.

Without torchrun there is no process group and no NCCL; every helper here is then a no-op.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nas_core.runlog import log_to
from nas_core.train import resolve_device as resolve_one


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the torchrun process group if launched by torchrun (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def resolve_device(name: str | None, info: DistInfo = DistInfo()) -> torch.device:
    """nas_core's device rule (``auto``/None: a GPU when there is one, else the CPU; a bad or missing device
    is a user error); under torchrun an unindexed GPU is this rank's own."""
    device = resolve_one(name)
    if device.type == "cuda" and device.index is None and info.enabled:
        device = torch.device(f"cuda:{info.local_rank}")
    return device


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s value on every rank (search decisions use rank 0's fitness, ARCHITECTURE §8)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_ranks_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if every rank says True (all ranks must skip a NaN step together or none)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@contextmanager
def main_rank_log(path: str | Path | None, info: DistInfo, logger: str = "facerec") -> Iterator[logging.Logger]:
    """The job's log (``nas_core.runlog.log_to``: ``path`` and the terminal) on the main rank. The other ranks say
    nothing while it is open: their log lines and Python warnings would repeat the main rank's, which
    stands for all of them (the ranks train in step and verify once, on the main rank)."""
    log = logging.getLogger(logger)
    if info.is_main:
        with log_to(path, logger) as log:
            yield log
        return
    silent, propagate = logging.NullHandler(), log.propagate
    log.addHandler(silent)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield log
    finally:
        log.removeHandler(silent)
        log.propagate = propagate
