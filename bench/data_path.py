"""Training data path: the JPEG DataLoader vs the decoded cache with on-device augmentation, and both against the
compute-only limit, measured in the same run.

    python bench/data_path.py                                  # 20,000 CASIA-shaped images, CPU
    python bench/data_path.py --device cuda --net iresnet50 --batch-size 512 --steps 30
    python bench/data_path.py --tiny --device cpu              # seconds: the smoke test's size

Builds a synthetic CASIA-shaped pack in a temporary folder (112x112 face-like JPEGs at quality 95, 20 per
identity, written through facerec.data.recordio) and its decoded cache (facerec.data.cache), then times,
in alternating rounds so background load hits all alike, through the trainer's own pieces
(facerec.train.loop._epoch_loader and _step):
  (a) jpeg        FaceDataset + AdaFaceAugment in a DataLoader (--workers), batches normalised on the device
  (b) cache       CachedFaceDataset: uint8 rows gathered, BatchAdaFaceAugment + normalize on the device
  (c) compute     the training step alone on one pre-made normalised batch already on the device
  (b) + step      the full training step fed by (b)
and prints images/s, the data-path ratio (b)/(a) (target >= 3) and the step ratio (b + step)/(c) (target >= 0.9).
Times start at the first batch: DataLoader workers start once per epoch, amortised over thousands of steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from eval_protocols.embed import normalize
from facerec.data.augment import AdaFaceAugment
from facerec.data.batch_augment import BatchAdaFaceAugment
from facerec.data.cache import build_cache, cache_bytes, open_cache
from facerec.data.cached_dataset import CachedFaceDataset
from facerec.data.datasets import FaceDataset, FacePack
from facerec.data.demo import demo_identities
from facerec.data.recordio import write_face_pack
from facerec.model.heads import create_head
from facerec.train.config import TrainConfig
from facerec.train.dist import DistInfo
from facerec.train.loop import _epoch_loader, _start, _step

CASIA_IMAGES, CASIA_IDENTITIES = 490_623, 10_572


def casia_like(num_images: int, per_identity: int, seed: int = 0):
    """Per identity, ``per_identity`` face-like RGB images: a few hundred drawn faces (facerec.data.demo), each
    image one of them shifted, lit and grained differently, so no two JPEGs are alike."""
    rng = np.random.default_rng(seed)
    bases = [faces[0] for faces in demo_identities(min(200, -(-num_images // per_identity)), 1, seed=seed)]
    grain = rng.normal(0, 5, (16, 112, 112, 3)).astype(np.float32)
    for start in range(0, num_images, per_identity):
        base = bases[(start // per_identity) % len(bases)].astype(np.float32) * rng.uniform(0.8, 1.2, 3)
        images = []
        for _ in range(min(per_identity, num_images - start)):
            shifted = np.roll(base, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            image = shifted * rng.uniform(0.85, 1.15) + grain[rng.integers(len(grain))]
            images.append(np.clip(image, 0, 255).astype(np.uint8))
        yield images


def _build_net(name: str):
    if name in ("tiny", "r58"):
        from facerec.model.space import IResNetSpace
        from nas_core.genotype import Genotype

        if name == "r58":  # the shape the paper's small face search found: R-58-256 (28 blocks, C = 32)
            return IResNetSpace(embedding_size=512).build(Genotype.uniform(28, 32))
        return IResNetSpace(embedding_size=128).build(Genotype.uniform(4, 16))
    from facerec.model.backbones import create_backbone

    return create_backbone(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_batches(loader, steps: int, device: torch.device, step=None) -> float:
    """Images/s over ``steps`` batches after the first (the loader's start-up), each put on the device as the
    trainer does and, with ``step``, trained on."""
    count, start = 0, None
    for i, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        if images.dtype == torch.uint8:  # the JPEG path's batches: normalised on the device, as the trainer does
            images = normalize(images)
        if step is not None:
            step(images, labels)
        if i == 0:
            _sync(device)
            start = time.perf_counter()
            continue
        count += labels.shape[0]
        if i == steps:
            break
    _sync(device)
    return count / (time.perf_counter() - start)


METHODS = ("(a) jpeg", "(b) cache", "(c) compute", "(b) + step")


def measure(pack_dir: Path, device: torch.device, *, net: str = "tiny", batch_size: int = 64, steps: int = 30,
            rounds: int = 3, workers: int = TrainConfig.workers, methods=METHODS, on_device: bool = False,
            echo=print) -> dict[str, list[float]]:
    """Images/s of each of ``methods`` (names in METHODS) per round, rounds alternating the order. ``on_device``:
    (b) reads the cache held in the device's memory (--cache-on-device). bench/gpu_check.py uses this too."""
    pack = FacePack(pack_dir)
    cached = CachedFaceDataset(open_cache(pack), pack, transform=BatchAdaFaceAugment(), on_device=on_device)
    cached.hold_on_device(device)
    config = TrainConfig(epochs=1, batch_size=batch_size, workers=workers, checkpoint_every=0, head="cosface",
                         amp=True)
    head = create_head("cosface", _build_net(net).num_features, cached.num_classes)
    run = _start(_build_net(net), head, cached, config, device, DistInfo())
    loader_run = SimpleNamespace(config=config, info=DistInfo(), state={"step_in_epoch": 0}, batch=batch_size,
                                 device=device)
    fixed = next(iter(_epoch_loader(loader_run, cached, 0)))

    def train_step(images, labels):
        _step(run, images, labels)

    jpeg = FaceDataset(pack, transform=AdaFaceAugment(), normalize=False)
    known = {
        "(a) jpeg": lambda epoch: _timed_batches(_epoch_loader(loader_run, jpeg, epoch), steps, device),
        "(b) cache": lambda epoch: _timed_batches(_epoch_loader(loader_run, cached, epoch), steps, device),
        "(c) compute": lambda epoch: _timed_batches([fixed] * (steps + 1), steps, device, train_step),
        "(b) + step": lambda epoch: _timed_batches(_epoch_loader(loader_run, cached, epoch), steps, device,
                                                   train_step),
    }
    chosen = {name: known[name] for name in methods}
    for method in chosen.values():  # warm-up: page cache, kernels, allocator
        method(0)
    rates: dict[str, list[float]] = {name: [] for name in chosen}
    order = list(chosen)
    for round_ in range(rounds):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            rates[name].append(chosen[name](round_ + 1))
        echo(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()) + " images/s")
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--per-identity", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed batches per round and method")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=TrainConfig.workers, help="DataLoader workers of (a)")
    p.add_argument("--net", default="tiny",
                   help="tiny (R-10, C=16), r58 (R-58-256 shape) or a fixed backbone: iresnet18/34/50/100")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a few seconds: 320 images, batch 16, 3 steps, 1 round")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.per_identity, args.batch_size, args.steps, args.rounds = 320, 10, 16, 3, 1
        args.workers = min(args.workers, 1)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        info = write_face_pack(Path(tmp) / "pack", casia_like(args.images, args.per_identity))
        packed = time.perf_counter() - tic
        tic = time.perf_counter()
        build_cache(FacePack(Path(tmp) / "pack"), workers=1, progress=False)
        cached = time.perf_counter() - tic
        print(f"pack: {info['images']} images of {info['identities']} identities (packed in {packed:.1f} s); "
              f"cache built in {cached:.1f} s ({info['images'] / cached:.0f} images/s, 1 thread); CASIA-WebFace's "
              f"cache: {cache_bytes(CASIA_IMAGES, (112, 112)) / 1e9:.1f} GB", flush=True)
        print(f"device {device}, net {args.net}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
              f"DataLoader workers {args.workers}, torch threads {torch.get_num_threads()}", flush=True)
        rates = measure(Path(tmp) / "pack", device, net=args.net, batch_size=args.batch_size, steps=args.steps,
                        rounds=args.rounds, workers=args.workers, echo=lambda line: print(line, flush=True))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"  {name:12s} {value:10.1f} images/s   (rounds: {', '.join(f'{v:.0f}' for v in rates[name])})")
    print(f"data path ratio (b) cache / (a) jpeg: {median['(b) cache'] / median['(a) jpeg']:.2f}x (target >= 3)")
    print(f"training step ratio (b) + step / (c) compute: {median['(b) + step'] / median['(c) compute']:.3f} "
          "(target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
