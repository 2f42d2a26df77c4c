"""nas-train: train a found classifier on the whole training set and report its last-epoch test accuracy.

    nas-train --genotype runs/c10/result.json --dataset cifar10 --data-root data --epochs 600 --output out/c10
    nas-train --genotype runs/c10/result.json --dataset cifar10 --data-root data --epochs 600 --output out/c10 --resume

ARCHITECTURE §3: trains the genotype the search returned (W_f); ``--final-width macro`` trains the macro width W_m
with the micro ops/kernels, as the paper's final models did. Writes OUT/model.pt (weights + genotype + config),
OUT/metrics.json, OUT/train.log; OUT/checkpoint.pt after every epoch for --resume.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nas_core.checkpoint import save_checkpoint
from nas_core.cli._common import add_data_args, add_run_args, output_folder, positive
from nas_core.errors import NasError, run_cli
from nas_core.genotype import Genotype
from nas_core.io import atomic_write_json
from nas_core.runlog import log_to, progress_bar


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", required=True, help="RUN/result.json of nas-search (or a genotype JSON)")
    add_data_args(parser, default_dataset=None)
    parser.add_argument("--epochs", type=positive, required=True, help="training epochs (paper: 600)")
    parser.add_argument("--final-width", choices=("found", "macro"), default="found",
                        help="found: the width the search returned (W_f); macro: W_m as in the paper")
    parser.add_argument("--output", default=None, help="output folder (default out/<dataset>-<genotype>)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    add_run_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _train(args))


def load_final_genotype(path: str | Path, final_width: str = "found") -> Genotype:
    """The genotype to train from a result.json; ``macro`` swaps in the macro width W_m."""
    genotype = Genotype.load(path)
    if final_width == "found":
        return genotype
    data = json.loads(Path(path).read_text())
    macro = data.get("macro_genotype") if isinstance(data, dict) else None
    width = macro.get("width") if isinstance(macro, dict) else None
    if width is None and isinstance(data, dict):
        width = data.get("macro_width") or (data.get("result") or {}).get("macro_width")
    if not isinstance(width, int) or width < 1:
        raise NasError(f"{path}: expected 'macro_genotype' with a width for --final-width macro")
    return genotype.with_width(width)


def _train(args: argparse.Namespace) -> int:
    from nas_core.classify.datasets import load_dataset
    from nas_core.classify.evaluator import create_classifier_space
    from nas_core.search import space_spec
    from nas_core.train import TrainConfig, cpu_threads, resolve_device, seed_everything, train_classifier

    genotype = load_final_genotype(args.genotype, args.final_width)
    # Final training uses the whole training set and reports test accuracy (ARCHITECTURE §3). Loaded before the
    # output folder is made, so bad data leaves nothing behind.
    data = load_dataset(args.dataset, args.data_root, val_fraction=0.0)
    default_out = f"out/{args.dataset}-{genotype.key()}"
    out = Path(args.output or default_out)
    if not args.resume:
        out = output_folder(out, "checkpoint.pt")
    elif not (out / "checkpoint.pt").is_file():
        raise NasError(f"{out / 'checkpoint.pt'}: expected a checkpoint to resume; file not found")
    device = resolve_device(args.device)
    with log_to(out / "train.log") as log, cpu_threads(device, args.threads):
        space = create_classifier_space(data)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             reference_schedule=args.reference_schedule)
        params = space.count_params(genotype)
        log.info("training %s (%s params) on %s for %d epochs on %s", genotype.key(), f"{params:,}", args.dataset,
                 args.epochs, device)
        seed_everything(args.seed)
        model = space.build(genotype)
        tic = time.perf_counter()
        with progress_bar(total=args.epochs, unit="epoch", desc="train") as bar:
            def on_epoch(epoch: int, result) -> None:
                bar.n = epoch + 1
                bar.refresh()
                log.info("epoch %d: train %.2f%% loss %.4f test %.2f%%", epoch + 1, result.train_accuracies[-1],
                         result.train_losses[-1], result.accuracies["test"][-1])

            result = train_classifier(model, data, config, seed=args.seed, device=device, eval_splits=("test",),
                                      checkpoint=out / "checkpoint.pt", on_epoch=on_epoch)
        run_config = {"space": space_spec(space), "dataset": args.dataset, "data_root": args.data_root,
                      "train": config.to_dict(), "seed": args.seed, "final_width": args.final_width,
                      "source": str(args.genotype)}
        # The project's one checkpoint schema: genotype + space rebuild the model with no other input.
        spec = space_spec(space)
        save_checkpoint(out / "model.pt", state_dict=model.state_dict(), genotype=genotype,
                        space={"name": spec["name"], **spec["task"]}, config=run_config)
        metrics = {"genotype": genotype.to_dict(), "params": params, "epochs": args.epochs,
                   "test_accuracy": result.last("test"), "best_test_accuracy": result.best("test"),
                   "test_accuracies": result.accuracies["test"], "train_accuracies": result.train_accuracies,
                   "train_seconds": result.seconds, "wall_seconds": time.perf_counter() - tic,
                   "config": run_config}
        atomic_write_json(out / "metrics.json", metrics)
        log.info("test accuracy (last epoch) %.2f%%, %s params; wrote %s and %s", result.last("test"),
                 f"{params:,}", out / "model.pt", out / "metrics.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
