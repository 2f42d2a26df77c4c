"""nas-train: train a found classifier on the whole training set and report its last-epoch test accuracy.

    nas-train --genotype runs/c10/result.json --dataset cifar10 --data-root data --epochs 600 --output out/c10
    nas-train --genotype runs/c10/result.json --dataset cifar10 --data-root data --epochs 600 --resume out/c10

ARCHITECTURE §3: trains the genotype the search returned (W_f); ``--final-width macro`` trains the macro width W_m
with the micro ops/kernels, as the paper's final models did. Writes OUT/model.pt (weights + genotype + config),
OUT/metrics.json, OUT/train.log; OUT/checkpoint.pt after every epoch, which `--resume OUT` continues from (with
the same training settings, or exit 2).
"""

from __future__ import annotations

import argparse

from nas_core.config_args import add_dataclass_args, positive_int
from nas_core.errors import run_cli
from nas_core.train_config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", required=True, help="RUN/result.json of nas-search (or a genotype JSON)")
    parser.add_argument("--dataset", required=True, help="the dataset to train on: cifar10, cifar100, mnist, "
                                                         "fashionmnist, kmnist, emnist or digits (built in)")
    parser.add_argument("--data-root", help="folder holding the dataset files (never downloaded)")
    parser.add_argument("--final-width", choices=("found", "macro"), default="found",
                        help="found: the width the search returned (W_f); macro: W_m as in the paper "
                             "(default: found)")
    parser.add_argument("--output", metavar="OUT", help="run folder (default: out/<dataset>-<genotype>; with "
                                                        "--resume: the resumed one)")
    parser.add_argument("--resume", metavar="OUT", help="continue the run in OUT from its OUT/checkpoint.pt "
                                                        "(the same training settings)")
    add_dataclass_args(parser, TrainConfig)
    parser.add_argument("--device", default="auto", help="auto (default: cuda when there is one, else cpu), cpu, "
                                                         "cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batch order and the "
                                                            "augmentation (default: 0)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default 1 on CPU: the paper's nets gain "
                                                             "little from more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The one deliberate lazy import of the command: training loads torch, --help does not.
    from nas_core import train_job

    return run_cli(lambda: train_job.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
