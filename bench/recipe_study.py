"""Which training recipe for the 3,723-person pack? Chosen on people held out of training, never on the test people.

    python bench/recipe_study.py              # every variant not yet done (journaled; rerun to continue)
    python bench/recipe_study.py --only batch32
    python bench/recipe_study.py --table      # the table of what is done

The pack is bench/search_value.py's WORK/train (lfw_train + raw_faces aligned, 3,723 training people; build it
with `python bench/search_value.py --max-trainings 0`). Every variant trains one net, NET (bench/search_value's
found net of the lfw_train study, d6-w12, 654k parameters: cheap enough for a 2-core machine), for EPOCHS epochs
from seed 0 with `--holdout-ids 372`: 10 % of the training people never trained on, whose 3,000 pairs (drawn
person by person) score every epoch. The unseen people of the bench's test are not in the pack at all.

One factor changes at a time, from the small recipe as it stood (batch 128, lr 0.1 cosine with 1 warm-up epoch,
CosFace s = √2·ln(C − 1), m 0.35; no weight decay on norms and biases):
- batch128 against batch32: the plain PyTorch script's batch (4x the steps at the same lr). batch32 won (+1.6
  points, AUC 0.9405 against 0.9338, in half the CPU time), so the small recipe now takes batch 32
  (facerec.train.recipe.small_batch_size) and the next variant starts from it;
- batch32-no-augment: without AdaFace's crop, low-resolution, photometric and flip augmentations.

Each variant is a line of WORK/journal.jsonl; a killed training resumes from its last.pt. WORK/recipe_study.json
holds the table: held-out accuracy at the last epoch and at the best, the pairs' AUC, CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO)]
from search_value import EMBEDDING, Journal, _run  # noqa: E402  (bench/ is a folder of scripts)

EPOCHS = 4
HOLDOUT = 372  # 10 % of the pack's 3,723 training people
NET = {"depth": 6, "width": 12, "ops": ["sep"] * 6, "kernels": [3] * 6}
VARIANTS = {
    "batch128": ["--recipe", "small", "--batch-size", "128"],
    "batch32": ["--recipe", "small", "--batch-size", "32"],
    "batch32-no-augment": ["--recipe", "small", "--batch-size", "32", "--no-augment"],
}


def _train(work: Path, journal: Journal, name: str) -> dict:
    out = work / "recipe" / name
    genotype = work / "recipe" / "net.genotype.json"
    genotype.parent.mkdir(parents=True, exist_ok=True)
    genotype.write_text(json.dumps(NET))
    finished = _epochs_done(out) == EPOCHS
    resumed = not finished and (out / "last.pt").is_file()  # killed part-way: resume from its last.pt
    if not finished and not resumed:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    cpu = 0.0
    if not finished:
        _, cpu = _run(["facerec-train", "--genotype", str(genotype), "--data", str(work / "train"), "--output", str(out),
                       *VARIANTS[name], "--epochs", str(EPOCHS), "--holdout-ids", str(HOLDOUT), "--seed", "0",
                       "--device", "cpu", "--workers", "0", "--embedding-size", str(EMBEDDING), "--cache",
                       "--no-progress", *(["--resume", str(out)] if resumed else [])])
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = [{"epoch": e["epoch"], "accuracy": e["val"]["holdout"]["accuracy"], "auc": e["val"]["holdout"]["auc"],
               "loss": e["loss"]} for e in metrics["epochs"]]
    return journal.add({"step": name, "flags": VARIANTS[name], "recipe": metrics["train"].get("recipe"),
                        "epochs": epochs, "last": epochs[-1], "best": max(epochs, key=lambda e: e["accuracy"]),
                        "train_seconds": metrics["seconds"], "cpu_seconds": cpu or None, "resumed": resumed,
                        "pairs": metrics["selection"]["on"]["sets"]["holdout"]})


def _epochs_done(out: Path) -> int:
    """Epochs a training in ``out`` has finished (its metrics.json), 0 when none."""
    try:
        return len(json.loads((out / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def table(journal: Journal) -> dict:
    rows = [journal.rows[name] for name in VARIANTS if name in journal.rows]
    return {"epochs": EPOCHS, "holdout_ids": HOLDOUT, "net": NET, "rows": rows}


def markdown(result: dict) -> str:
    """README's table, printed from the study's JSON (tests check README against it)."""
    lines = ["| variant | flags | held-out accuracy, last epoch (%) | best epoch (%) | AUC, last | accuracy by epoch (%) "
             "| train minutes |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        by_epoch = " / ".join(f"{100 * e['accuracy']:.1f}" for e in r["epochs"])
        lines.append(f"| {r['step']} | `{' '.join(r['flags'])}` | {100 * r['last']['accuracy']:.2f} | "
                     f"{100 * r['best']['accuracy']:.2f} (epoch {r['best']['epoch']}) | {r['last']['auc']:.4f} | "
                     f"{by_epoch} | {r['train_seconds'] / 60:.0f} |")
    if result["rows"]:
        pairs = result["rows"][0]["pairs"]
        lines += ["", f"{pairs:,} pairs of {result['holdout_ids']} held-out training people: one score's standard "
                  f"error is about {100 * (0.85 * 0.15 / pairs) ** 0.5:.1f} points."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(REPO / "bench" / "results" / "search_value_4k"),
                   help="bench/search_value.py's working folder (its WORK/train pack)")
    p.add_argument("--only", type=lambda t: set(t.split(",")), default=set(), help="only these variants")
    p.add_argument("--table", action="store_true", help="only print the table of the journaled results")
    args = p.parse_args(argv)
    if args.only - set(VARIANTS):
        p.error(f"--only: unknown variant(s) {', '.join(sorted(args.only - set(VARIANTS)))}; expected some of "
                f"{', '.join(VARIANTS)}")
    work = Path(args.work)
    if not args.table and not (work / "train" / "train.rec").is_file():
        p.error(f"--work {work}: expected its train/ pack; build it with `python bench/search_value.py "
                "--max-trainings 0`")
    journal = Journal(work / "recipe_journal.jsonl")
    if not args.table:
        for name in VARIANTS:
            if name not in journal.rows and (not args.only or name in args.only):
                _train(work, journal, name)
    result = table(journal)
    (work / "recipe_study.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
