"""Training throughput (images/s) of a found backbone vs the fixed IResNet-18, measured in the same run.

    python bench/train_throughput.py                          # R-58-256 shape (28 blocks, C=32, sep3)
    python bench/train_throughput.py --genotype RUN/result.json --batch-size 64 --steps 20 --device cuda

Both nets go through the real trainer (facerec.train.loop.train_model: SGD, AdaFace head, AMP and
channels_last on CUDA) on the same in-memory random 112x112 batches, one short epoch at a time,
alternating, so background load hits both alike. Prints each median images/s and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch.utils.data import TensorDataset

from facerec.model.backbones import create_backbone
from facerec.model.heads import create_head
from facerec.model.space import IResNetSpace
from facerec.train.config import TrainConfig
from facerec.train.loop import train_model
from nas_core.genotype import Genotype

# The shape the paper's small face search found (R-58-256: 28 blocks, stem width 32); ops all sep3 here.
DEFAULT_GENOTYPE = Genotype.uniform(28, 32)


def _images_per_second(build, data: TensorDataset, config: TrainConfig, device: torch.device) -> float:
    backbone = build()
    head = create_head("adaface", 512, int(data.tensors[1].max()) + 1)
    outcome = train_model(backbone, head, data, config, device=device, progress=False, verbose=False)
    return outcome.history[-1]["images_per_second"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--genotype", help="result.json or genotype JSON (default: R-58-256 shape, all sep3)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="training steps per timed epoch")
    p.add_argument("--rounds", type=int, default=3, help="alternating timed epochs per net")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    genotype = Genotype.load(args.genotype) if args.genotype else DEFAULT_GENOTYPE
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * args.steps
    data = TensorDataset(torch.randn(n, 3, 112, 112, generator=g), torch.randint(0, 100, (n,), generator=g))
    config = TrainConfig(epochs=1, batch_size=args.batch_size, workers=0, checkpoint_every=0)
    nets = {f"found {genotype.key()}": lambda: IResNetSpace().build(genotype),
            "iresnet18": lambda: create_backbone("iresnet18")}
    params = {name: sum(p.numel() for p in build().parameters()) for name, build in nets.items()}
    for build in nets.values():  # warm-up (allocator, oneDNN / cuDNN kernel choice)
        _images_per_second(build, data, config, device)
    speeds: dict[str, list[float]] = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, build in nets.items():
            speeds[name].append(_images_per_second(build, data, config, device))
    medians = {name: statistics.median(v) for name, v in speeds.items()}
    print(f"device {device}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds "
          f"(torch threads {torch.get_num_threads()})")
    for name, value in medians.items():
        print(f"  {name:40s} {params[name] / 1e6:7.2f} M params  {value:9.1f} img/s")
    found, baseline = medians.values()
    print(f"ratio found / iresnet18 training throughput: {found / baseline:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
