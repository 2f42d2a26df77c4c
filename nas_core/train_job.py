"""nas-train's job (ARCHITECTURE §3, §7): from the parsed flags of nas_core.cli.train to a run folder holding the
trained classifier (model.pt), its metrics and log, and the per-epoch checkpoint a resume continues from."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nas_core.checkpoint import save_checkpoint
from nas_core.classify.datasets import load_dataset
from nas_core.classify.evaluator import create_classifier_space
from nas_core.config_args import dataclass_from_args
from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.io import atomic_write_json, output_folder
from nas_core.runlog import log_to, progress_bar
from nas_core.search import space_spec
from nas_core.train import TrainConfig, cpu_threads, resolve_device, seed_everything, train_classifier


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


def run(args: argparse.Namespace) -> int:
    """nas-train with the flags of nas_core.cli.train.build_parser; the exit code."""
    genotype = load_final_genotype(args.genotype, args.final_width)
    # Final training uses the whole training set and reports test accuracy (ARCHITECTURE §3). Loaded before the
    # output folder is made, so bad data leaves nothing behind.
    data = load_dataset(args.dataset, args.data_root, val_fraction=0.0)
    out = _output(args, genotype)
    device = resolve_device(args.device)
    with log_to(out / "train.log") as log, cpu_threads(device, args.threads):
        space = create_classifier_space(data)
        config = dataclass_from_args(TrainConfig, args)
        params = space.count_params(genotype)
        log.info("training %s (%s params) on %s for %d epochs on %s", genotype.key(), f"{params:,}", args.dataset,
                 args.epochs, device)
        seed_everything(args.seed)
        model = space.build(genotype)
        tic = time.perf_counter()
        with progress_bar(total=args.epochs, unit="epoch", desc="train", disable=args.no_progress) as bar:
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




def _output(args: argparse.Namespace, genotype: Genotype) -> Path:
    """The run folder: a new one (--output, default out/<dataset>-<genotype>), or the one --resume continues."""
    if args.resume is None:
        return output_folder(Path(args.output or f"out/{args.dataset}-{genotype.key()}"), "checkpoint.pt")
    out = Path(args.resume)
    if args.output is not None and Path(args.output).resolve() != out.resolve():
        raise NasError(f"--output {args.output}: expected the folder --resume continues ({out}), or no --output")
    if not (out / "checkpoint.pt").is_file():
        raise NasError(f"{out / 'checkpoint.pt'}: expected a checkpoint to resume; file not found")
    return out
