"""facerec-train: train a searched genotype or a fixed IResNet with the AdaFace recipe (ARCHITECTURE §4, §7).

    facerec-train --genotype RUN/result.json --data faces_webface_112x112 --epochs 26 --output OUT
    torchrun --nproc_per_node 8 -m facerec.cli.train --arch iresnet50 --data ... --output OUT
    facerec-train --init r50.pt --data faces_webface_112x112 --output OUT   # fine-tune a facerec-import'ed net

Writes OUT/model.pt (the selected epoch: weights + genotype/arch + config), OUT/last.pt (full resume state,
every epoch and every --checkpoint-every steps), OUT/metrics.json, OUT/train.log, OUT/tb/.
With no --data it trains on the built-in synthetic demo set with a CPU-sized budget.

model.pt is selected on pairs of identities held out of the training pack (10 % by default), or is the last
epoch with --holdout-ids 0 or --select last (as arcface_torch); on the .bin benchmark packs only with --select
bins. The .bin packs in --data are otherwise scored as a report only: every few epochs (--report-every) and on
model.pt at the end. metrics.json ("selection") and the log say what model.pt was selected on.

A new run needs a new or empty OUT; `--resume OUT` continues one (the same --epochs, --batch-size, --data
... or exit 2 naming the flag that changed) and ends with the weights of an uninterrupted run. One process
writes into OUT at a time (OUT/.facenas.lock). SIGTERM or Ctrl-C stops after the current step, writes
last.pt and prints how to resume.
"""

from __future__ import annotations

import argparse
import sys

from facerec.data.options import CacheOptions
from facerec.train.config import DEMO_DEFAULTS, TrainConfig
from facerec.train.recipe import add_recipe_args
from nas_core.command import CommandParser, input_file, input_folder, input_path, output_folder, run_command
from nas_core.config_args import add_dataclass_args, name_list


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="facerec-train", description=__doc__.split("\n\n")[0])
    model = p.add_mutually_exclusive_group()
    model.add_argument("--genotype", type=input_file, help="RUN/result.json (or a genotype JSON) from facerec-search")
    model.add_argument("--arch", help="a fixed backbone: iresnet18, iresnet34, iresnet50, iresnet100, "
                                      "mobilefacenet, mobilefacenet_large")
    p.add_argument("--data", type=input_folder, help="face pack folder (train.rec/.idx/property [+ .bin packs]); "
                                  "omitted: the built-in synthetic demo set")
    p.add_argument("--output", required=True, metavar="OUT", type=output_folder,
                   help="run folder: a new or empty one, or the one --resume continues")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="OUT", type=input_path, help="continue the run in OUT (or from OUT/last.pt) at its saved "
                                                       "step, with the same settings")
    start.add_argument("--init", type=input_file, help="a facenas checkpoint (e.g. from facerec-import) whose weights start a new "
                                      "run: epoch 0, fresh optimizer; its net unless --genotype/--arch is given")
    add_dataclass_args(p, TrainConfig, include=("epochs",), defaults={"epochs": None},
                       help_suffix={"epochs": f" (default: {TrainConfig.epochs}; demo {DEMO_DEFAULTS['epochs']})"})
    add_recipe_args(p, demo=DEMO_DEFAULTS)
    p.add_argument("--embedding-size", type=_count(1), help="embedding size (default: a --genotype net's search's, else 512)")
    p.add_argument("--dropout", type=_dropout, default=0.0, help="dropout before the embedding FC (arcface_torch: 0.4 "
                                                              "for small sets; default: 0)")
    p.add_argument("--device", default="auto", help="auto (default: a GPU when there is one, else the CPU), cpu, "
                                                    "cuda, cuda:1 ...; under torchrun each rank its own GPU")
    add_dataclass_args(p, TrainConfig, include=("seed", "workers", "checkpoint_every", "max_nan_steps", "far"),
                       defaults={"workers": None},
                       help_suffix={"workers": f" (default: {TrainConfig.workers}; demo {DEMO_DEFAULTS['workers']})"})
    p.add_argument("--select", choices=["holdout", "last", "bins"],
                   help="what model.pt is: holdout, the epoch best on the held-out identities' pairs (default "
                        "when identities are held out); last, the last epoch (default with --holdout-ids 0); "
                        "bins, the epoch best on the .bin packs (the paper's protocol: scores reported on them "
                        "are then optimistic)")
    p.add_argument("--holdout-ids", type=_count(0), help="hold out N identities and verify on their pairs each epoch "
                                                   "(default 10%%; 0 with --select last or bins)")
    p.add_argument("--val-bins", type=name_list, help="comma-separated .bin packs in --data to score (default: all found there): "
                                      "a report only, or what --select bins selects on")
    p.add_argument("--report-every", type=_report_every, default="auto", metavar="K|auto",
                   help="epochs between scorings of the .bin packs as a report (never a choice); always after "
                        "the last epoch and on model.pt. auto (default): as rarely as keeps them near 10%% of "
                        "the training time; 0: never")
    p.add_argument("--subset-ids", type=_count(2), help="train on N identities only (seeded choice)")
    p.add_argument("--no-augment", action="store_true", help="turn off the AdaFace augmentations")
    add_dataclass_args(p, CacheOptions)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _report_every(text: str) -> str | int:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("expected auto or a number of epochs >= 0")
    return value


def _count(least: int):
    """An integer flag of at least ``least`` (an embedding size, a number of identities)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}")
        return value

    return parse


def _dropout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError("expected a dropout probability in [0, 1)")
    return value


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: _train(args, argv), check=_check)


def _check(args: argparse.Namespace) -> None:
    # The one deliberate lazy import of the command: the job loads torch, --help and a flag error do not. Its
    # check reads the data, the genotype and a resumed run's last.pt before anything is locked or written.
    from facerec.train import job

    job.check(args)


def _train(args: argparse.Namespace, argv: list[str] | None) -> int:
    from facerec.train import job

    args.argv = argv  # the command line, for the log
    return job.run(args)


if __name__ == "__main__":
    sys.exit(main())
