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

from nas_core.command import CommandParser, input_file, input_folder, output_folder, run_command
from nas_core.config_args import add_dataclass_args, cpu_threads, seed_flag
from nas_core.train_config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="nas-train", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", required=True, type=input_file,
                        help="RUN/result.json of nas-search (or a genotype JSON)")
    parser.add_argument("--dataset", required=True, help="the dataset to train on: cifar10, cifar100, mnist, "
                                                         "fashionmnist, kmnist, emnist or digits (built in)")
    parser.add_argument("--data-root", type=input_folder,
                        help="folder holding the dataset files (never downloaded)")
    parser.add_argument("--final-width", choices=("found", "macro"), default="found",
                        help="found: the width the search returned (W_f); macro: W_m as in the paper "
                             "(default: found)")
    parser.add_argument("--output", metavar="OUT", type=output_folder,
                        help="run folder (default: out/<dataset>-<genotype>; with --resume: the resumed one)")
    parser.add_argument("--resume", metavar="OUT", type=input_folder,
                        help="continue the run in OUT from its OUT/checkpoint.pt (the same training settings)")
    add_dataclass_args(parser, TrainConfig)
    parser.add_argument("--device", default="auto", help="auto (default: cuda when there is one, else cpu), cpu, "
                                                         "cuda, cuda:N")
    parser.add_argument("--seed", type=seed_flag, default=0, help="seed of the initial weights, the batch order and the "
                                                            "augmentation (default: 0)")
    parser.add_argument("--threads", type=cpu_threads, help="CPU threads (default 1 on CPU: the paper's nets gain "
                                                             "little from more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, _train)


def _train(args: argparse.Namespace) -> int:
    # The one deliberate lazy import of the command: training loads torch, --help does not.
    from nas_core import train_job

    return train_job.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
