"""Real in-the-wild faces end to end (LFW people from lfw_train) with the facenas CLIs.

    python tools/lfw_demo.py --work runs/lfw_demo --before   # + the found net trained with AdaFace's recipe

1. split the people of --lfw (seeded): 20 % unseen, the rest for search and training (symlinked folders)
2. facerec-data pack      WORK/train_images -> WORK/train
3. facerec-data make-bin  WORK/unseen_images -> WORK/unseen/unseen.bin (`facerec-eval --protocol unseen`
   scores it by its name with the LFW 10-fold rules; these are LFW people, not the LFW benchmark pairs)
4. facerec-search --size small on WORK/train (CPU-sized settings; fitness on held-out training people)
5. facerec-train of the result on all training people
6. facerec-export -> WORK/model.onnx (onnxruntime parity check)
7. facerec-eval of model.onnx and model.pt on the unseen pairs; raw-pixel cosine (as is and mean-centred)
   on the same pairs with the same 10-fold code (eval_protocols.verification.evaluate_verification);
   collapse diagnostics of the exported model's embeddings of the unseen faces.
8. with --before (or --before-only on a finished WORK): the found genotype trained again with
   `--recipe adaface`, the default before --recipe auto existed, for the same epochs, scored on the same pairs.

Prints every command with its wall time and the machine load; writes WORK/lfw_demo.json. Exit code 1 when
search + train + export take longer than --budget-minutes, when the ONNX model does not beat the better
raw-pixel baseline by --margin points, when its embeddings are collapsed, or when model.pt and model.onnx
disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tools/ is a folder of scripts
from tools.shared_data import shared_data  # noqa: E402

# Search budget sized for 2 shared CPU cores (ARCHITECTURE §3 rules, small preset, smaller numbers): trials
# train on 160 of the training people and score on pairs of 40 others; Grow R-10..R-14, Prune 8 -> 4.
SEARCH_FLAGS = ["--size", "small", "--e-min", "1", "--d-min", "4", "--d-max", "6", "--w-min", "4", "--w-max", "8",
                "--w-res", "2", "--max-trials", "5", "--macro-only", "--subset-ids", "200", "--holdout-ids", "40",
                "--embedding-size", "128", "--workers", "0"]
TRAIN_FLAGS = ["--epochs", "5", "--holdout-ids", "0", "--workers", "0"]


def split_people(source: Path, work: Path, unseen_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the identity folders of ``source`` into (training, unseen) people, symlinked as
    WORK/train_images/<name> and WORK/unseen_images/<name>."""
    return split_sets({"": source}, work, unseen_fraction, seed)


def split_sets(sources: dict[str, Path], work: Path, unseen_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded people-disjoint split of every person of every set into (training, unseen) people, symlinked as
    WORK/train_images/<set>-<person> and WORK/unseen_images/<set>-<person> (sets are separate label spaces; a
    set named "" adds no prefix)."""
    from facerec.data.images import read_image_folder

    names = [(f"{name}-{person}" if name else person, folder / person) for name, folder in sources.items()
             for person, _ in read_image_folder(folder)]
    order = np.random.default_rng(seed).permutation(len(names))
    count = round(unseen_fraction * len(names))
    unseen = sorted(names[i] for i in order[:count])
    train = sorted(names[i] for i in order[count:])
    for folder, chosen in (("train_images", train), ("unseen_images", unseen)):
        (work / folder).mkdir(parents=True)
        for name, path in chosen:
            (work / folder / name).symlink_to(path.resolve())
    return [n for n, _ in train], [n for n, _ in unseen]


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _run(cmd: list[str], timings: dict[str, float], loads: dict[str, str], name: str) -> str:
    print(f"$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    timings[name] = time.perf_counter() - start
    loads[name] = _load()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    print(f"  ({timings[name]:.1f} s; load average after: {loads[name]})", flush=True)
    return proc.stdout


def raw_pixel_baselines(bin_path: Path) -> dict[str, dict]:
    """10-fold accuracy of cosine similarity on raw pixel vectors, as they are and mean-centred (the mean
    image of the pack's distinct faces subtracted): the baselines a face model must beat."""
    from eval_protocols.bins import load_bin
    from eval_protocols.verification import evaluate_verification

    images, issame = load_bin(bin_path)
    pixels = images.reshape(len(images), -1).astype(np.float64)
    mean = np.unique(pixels, axis=0).mean(axis=0)
    return {"raw_pixels": evaluate_verification(pixels, issame),
            "raw_pixels_centred": evaluate_verification(pixels - mean, issame)}


def embedding_collapse(features: Path, dim_hint: int | None = None) -> dict:
    """Collapse diagnostics (facerec.train.diagnostics) of the distinct unseen faces' embeddings saved by
    ``facerec-eval --features-out``."""
    from facerec.train.diagnostics import collapse_stats, collapse_warning

    with np.load(features, allow_pickle=False) as data:
        embeddings = np.unique(data["unseen.embeddings"], axis=0)
    stats = collapse_stats(embeddings)
    return {**stats, "warning": collapse_warning(stats, dim_hint or embeddings.shape[1])}


def search_command(args: argparse.Namespace, work: Path) -> list[str]:
    """The facerec-search step; --max-params N is its deployment budget (no candidate over it is trained)."""
    budget = ["--max-params", str(args.max_params)] if args.max_params is not None else []
    return ["facerec-search", "--data", str(work / "train"), "--output", str(work / "search"), *SEARCH_FLAGS,
            "--recipe", args.recipe, "--device", args.device, "--seed", str(args.seed), "--no-progress", *budget]


def _positive_count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not (value >= 1 and value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def _pipeline(args: argparse.Namespace, work: Path, t: dict, loads: dict) -> dict:
    bin_path = work / "unseen" / "unseen.bin"
    dev = ["--device", args.device]
    recipe = ["--recipe", args.recipe]
    _run(["facerec-data", "pack", str(work / "train_images"), str(work / "train")], t, loads, "pack")
    _run(["facerec-data", "make-bin", str(work / "unseen_images"), str(bin_path), "--pairs", str(args.pairs),
          "--seed", str(args.seed)], t, loads, "make-bin")
    _run(search_command(args, work), t, loads, "search")
    _run(["facerec-train", "--genotype", str(work / "search" / "result.json"), "--data", str(work / "train"),
          "--output", str(work / "model"), *TRAIN_FLAGS, *recipe, *dev, "--seed", str(args.seed), "--no-progress"],
         t, loads, "train")
    _run(["facerec-export", "--checkpoint", str(work / "model" / "model.pt"), "--output", str(work / "model.onnx")],
         t, loads, "export")
    scores = {}
    for name, model in (("onnx", work / "model.onnx"), ("pt", work / "model" / "model.pt")):
        out = work / f"eval_{name}.json"
        _run(["facerec-eval", "--model", str(model), "--data", str(work / "unseen"), "--protocol", "unseen",
              "--output", str(out), "--features-out", str(work / f"features_{name}.npz"), *dev], t, loads,
             f"eval_{name}")
        scores[name] = json.loads(out.read_text())["results"]["unseen"]
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", help="image folder, one sub-folder per person (default: lfw_train in the shared data "
                   "folder, tools/shared_data.py)")
    p.add_argument("--work", default="runs/lfw_demo", help="working folder (recreated)")
    p.add_argument("--unseen-fraction", type=float, default=0.2, help="people held out of search and training")
    p.add_argument("--pairs", type=int, default=6000, help="verification pairs of the unseen people")
    p.add_argument("--recipe", default="auto", help="facerec-search/-train --recipe (auto, small, adaface)")
    p.add_argument("--seed", type=int, default=0, help="the split, the pairs, the search and the training")
    p.add_argument("--budget-minutes", type=float, default=40.0, help="limit for search + train + export")
    p.add_argument("--margin", type=float, default=10.0, help="points the model must beat raw pixels by")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-params", type=_positive_count, metavar="N",
                   help="deployment budget of the search: no candidate over N parameters is trained")
    p.add_argument("--before", action="store_true",
                   help="also train the found genotype with --recipe adaface (the recipe before --recipe auto), "
                        "same epochs, and score it on the same pairs (not counted in the budget)")
    p.add_argument("--before-only", action="store_true", help="only that, on the WORK folder of an earlier run")
    p.add_argument("--before-batch-size", type=int, help="batch of the --before training (default: AdaFace's 512)")
    args = p.parse_args(argv)

    work = Path(args.work)
    if args.before_only:
        summary = json.loads((work / "lfw_demo.json").read_text())
    else:
        lfw = shared_data("lfw_train", args.lfw, "--lfw")
        if work.exists():
            shutil.rmtree(work)
        train, unseen = split_people(lfw, work, args.unseen_fraction, args.seed)
        t: dict[str, float] = {}
        loads: dict[str, str] = {"start": _load()}
        scores = _pipeline(args, work, t, loads)
        summary = _summary(args, work, t, loads, scores, len(train), len(unseen))
    if args.before or args.before_only:
        summary["before"] = _before(args, work)
    (work / "lfw_demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return _verdict(args, summary)


def _before(args, work: Path) -> dict:
    """The found genotype trained with AdaFace's recipe (the default before --recipe), scored on the same pairs."""
    t: dict[str, float] = {}
    loads: dict[str, str] = {}
    batch = ["--batch-size", str(args.before_batch_size)] if args.before_batch_size else []
    flags = ["--recipe", "adaface", *batch, *TRAIN_FLAGS]
    shutil.rmtree(work / "before", ignore_errors=True)
    _run(["facerec-train", "--genotype", str(work / "search" / "result.json"), "--data", str(work / "train"),
          "--output", str(work / "before"), *flags, "--device", args.device, "--seed", str(args.seed),
          "--no-progress"], t, loads, "train")
    _run(["facerec-eval", "--model", str(work / "before" / "model.pt"), "--data", str(work / "unseen"), "--protocol",
          "unseen", "--output", str(work / "eval_before.json"), "--features-out", str(work / "features_before.npz"),
          "--device", args.device], t, loads, "eval")
    score = json.loads((work / "eval_before.json").read_text())["results"]["unseen"]
    return {"train_flags": flags, "seconds": t, "load_average": loads,
            **{k: score[k] for k in ("accuracy", "std", "threshold")},
            "collapse": embedding_collapse(work / "features_before.npz")}


def _summary(args, work: Path, t: dict, loads: dict, scores: dict, people: int, unseen: int) -> dict:
    raw = raw_pixel_baselines(work / "unseen" / "unseen.bin")
    result = json.loads((work / "search" / "result.json").read_text())
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    keep = ("accuracy", "std", "threshold")
    return {
        "recipe": args.recipe, "seed": args.seed, "training_people": people, "unseen_people": unseen,
        "genotype": result["genotype"], "params": result["params"], "search_fitness": result["fitness"],
        "budget": result.get("budget"), "cost": result.get("cost"),
        "train_recipe": (metrics.get("train") or {}).get("recipe"),
        "seconds": t, "load_average": loads, "search_train_export_seconds": t["search"] + t["train"] + t["export"],
        "unseen_pairs": int(scores["onnx"]["pairs"]),
        "onnx": {k: scores["onnx"][k] for k in keep}, "pt": {k: scores["pt"][k] for k in keep},
        **{name: {k: r[k] for k in keep} for name, r in raw.items()},
        "collapse": embedding_collapse(work / "features_onnx.npz"),
    }


def _verdict(args, summary: dict) -> int:
    chain = summary["search_train_export_seconds"]
    t = summary["seconds"]
    print(f"\nfound {summary['genotype']} ({summary['params']:,} params), search fitness "
          f"{summary['search_fitness']:.2f}%")
    print(f"search {t['search']:.0f} s + train {t['train']:.0f} s + export {t['export']:.0f} s = {chain / 60:.1f} min "
          f"(load average at the end: {summary['load_average']['export']})")
    print(f"{summary['unseen_people']} unseen people, {summary['unseen_pairs']} pairs, 10-fold accuracy:")
    for name in ("onnx", "pt", "raw_pixels", "raw_pixels_centred", "before"):
        if name in summary:
            print(f"  {name:18s} {summary[name]['accuracy'] * 100:6.2f} ± {summary[name]['std'] * 100:.2f} %")
    if "before" in summary:
        print(f"  (before: the found net trained with {' '.join(summary['before']['train_flags'])}; its embeddings: "
              f"mean-norm {summary['before']['collapse']['mean_norm']:.3f})")
    collapse = summary["collapse"]
    print(f"embeddings of the unseen faces: mean-norm {collapse['mean_norm']:.3f}, effective rank "
          f"{collapse['effective_rank']:.1f}")
    best_raw = max(summary["raw_pixels"]["accuracy"], summary["raw_pixels_centred"]["accuracy"])
    failures = []
    if chain > args.budget_minutes * 60:
        failures.append(f"search + train + export took {chain / 60:.1f} min > {args.budget_minutes} min")
    if summary["onnx"]["accuracy"] < best_raw + args.margin / 100:
        failures.append(f"the exported model is not {args.margin:g} points above raw pixels "
                        f"({summary['onnx']['accuracy'] * 100:.2f} vs {best_raw * 100:.2f} %)")
    if collapse["warning"]:
        failures.append(collapse["warning"])
    if abs(summary["onnx"]["accuracy"] - summary["pt"]["accuracy"]) > 1e-9:
        failures.append("model.pt and model.onnx give different accuracies")
    for line in failures:
        print(f"FAIL: {line}")
    print("OK" if not failures else "FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
