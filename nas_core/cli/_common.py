"""What the nas-* commands share: data and run flags, fresh output folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas_core.config_args import positive_int
from nas_core.errors import NasError

positive = positive_int  # the name the nas-* and facerec-study parsers import: one rule for a positive count

# The names nas_core.classify.datasets registers (a torch module; tests/test_cli_parsers.py keeps the two equal),
# stated here so that --help imports nothing heavy.
DATASET_NAMES = ("cifar10", "cifar100", "digits", "emnist", "fashionmnist", "kmnist", "mnist")


def add_data_args(parser: argparse.ArgumentParser, default_dataset: str | None = "digits") -> None:
    default = f" (default: {default_dataset})" if default_dataset else ""
    parser.add_argument("--dataset", default=default_dataset, required=default_dataset is None,
                        help=f"one of {', '.join(DATASET_NAMES)}{default}")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files (never downloaded)")


def add_split_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="held-out stratified share of the training set used for ranking (default 0.1)")
    parser.add_argument("--rank-on", choices=("val", "test"), default="val",
                        help="rank trials on the validation split (default) or on test like the paper")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=positive, default=64, help="training batch size (default 64, as the "
                                                                        "paper)")
    parser.add_argument("--reference-schedule", action="store_true",
                        help="step the cosine schedule before each epoch like the reference code")
    parser.add_argument("--device", default="auto", help="where training runs: auto (cuda when there is one, else "
                                                         "cpu), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="run seed: every random choice of the run derives from "
                                                            "it (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per trial (default 1 on CPU: tiny trials gain nothing from more)")


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    """Where a search's trials run (ARCHITECTURE §8); not a setting of the run: a resume may change them."""
    parser.add_argument("--parallel", type=positive, default=1, metavar="N",
                        help="train N trials at once: the asked one and those the search may ask next "
                             "(same result as N=1; default 1: one trial at a time in this process)")
    parser.add_argument("--executor", choices=("process", "ray"), default="process",
                        help="with --parallel N: N local processes (one per GPU, or a CPU thread share each) "
                             "or N Ray tasks (pip install 'facenas[ray]')")
    parser.add_argument("--ray-address", default=None,
                        help="with --executor ray: join this running cluster (e.g. auto); default: start a local one")


# Algorithm 1 settings a user may override on the command line; each flag's type and meaning come from
# SearchSettings (nas_core.search), so every search command declares them the same way.
SEARCH_SETTING_FLAGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res", "micro_epochs", "max_trials")
_SETTING_HELP = {
    "e_min": "epochs of the first trial (E_min)", "d_min": "first depth tried (D_min)",
    "d_max": "largest depth (D_max)", "w_min": "smallest width Prune tries (W_min)",
    "w_max": "width of the macro search (W_max)", "w_res": "width step of Prune (W_res)",
    "micro_epochs": "epochs of a micro trial", "max_trials": "stop after N trials (best so far)",
    "seed": "run seed (trial seeds derive from it)",
}


def add_search_setting_args(parser: argparse.ArgumentParser, names=SEARCH_SETTING_FLAGS) -> None:
    """``--e-min`` ... for each SearchSettings field in ``names``: positive ints, default None (the preset's)."""
    for name in names:
        kind = int if name == "seed" else positive
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"{_SETTING_HELP[name]}; default: the preset's")


def search_setting_overrides(args: argparse.Namespace, names=SEARCH_SETTING_FLAGS) -> dict:
    """The SearchSettings overrides the flags of ``add_search_setting_args`` carry (None = not given)."""
    return {name: getattr(args, name) for name in names}


def add_budget_args(parser: argparse.ArgumentParser) -> None:
    """Deployment budgets of a search (nas_core.cost): a candidate over any of them is never trained.
    Values are read as text and checked in ``budget_overrides``, so a bad one is one ``error:`` line."""
    group = parser.add_argument_group("deployment budgets (a candidate over any is never trained)")
    group.add_argument("--max-params", metavar="N", help="at most N parameters (e.g. 2e6)")
    group.add_argument("--max-mflops", metavar="N", help="at most N MFLOPs (million multiply-accumulates of the "
                                                         "conv/linear layers, batch 1, at the space's input size)")
    group.add_argument("--max-latency-ms", metavar="MS", help="at most MS milliseconds per image: median of "
                                                              "onnxruntime CPU runs at batch 1 (needs onnxruntime)")
    group.add_argument("--latency-threads", metavar="T", help="onnxruntime threads of the latency measurement "
                                                              "(default 1)")


def budget_overrides(args: argparse.Namespace) -> dict:
    """The SearchSettings budget fields the flags of ``add_budget_args`` carry (None = not given); a bad value
    (not a number, ≤ 0; a latency budget without onnxruntime) is a NasError naming the flag."""
    # Called once the flags are parsed; nas_core.cost imports torch, which this parser module never does.
    from nas_core.cost import parse_budget_value, require_onnxruntime

    values = {"max_params": parse_budget_value("--max-params", args.max_params, integer=True),
              "max_mflops": parse_budget_value("--max-mflops", args.max_mflops),
              "max_latency_ms": parse_budget_value("--max-latency-ms", args.max_latency_ms),
              "latency_threads": parse_budget_value("--latency-threads", args.latency_threads, integer=True)}
    if values["max_latency_ms"] is not None:
        require_onnxruntime("--max-latency-ms")
    return values


def output_folder(path: str | Path, resumable_file: str) -> Path:
    """A fresh output folder: refuse to mix a new run into an old one (use --resume for that)."""
    path = Path(path)
    if (path / resumable_file).exists():
        raise NasError(f"{path}: expected a new output folder; it holds {resumable_file} from an earlier run "
                       "(continue it with --resume or choose another --output)")
    path.mkdir(parents=True, exist_ok=True)
    return path
