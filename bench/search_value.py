"""Does the search pay? The found net against MobileFaceNet and random nets of the same budget, on unseen people.

    python bench/search_value.py                          # everything not yet done (journaled; rerun to continue)
    python bench/search_value.py --max-trainings 2        # a part: the search, then at most 2 new trainings
    python bench/search_value.py --only found-s1          # only these steps (a second process on other steps)
    python bench/search_value.py --table                  # print the table of what is done
    python bench/search_value.py --latency                # every net's CPU latency again, in one quiet pass

1. lfw_train split by people as tools/lfw_demo.py does it (seed 0, 20 % unseen): WORK/train (pack) and
   WORK/unseen/unseen.bin (6,000 pairs of the unseen people).
2. MobileFaceNet's cost (params, MFLOPs, onnxruntime CPU latency at batch 1, nas_core.cost) at the bench's
   embedding size sets the budget; `facerec-search` with `--max-params` and `--max-latency-ms` at that budget.
3. Trained with one recipe (`facerec-train --epochs 5 --holdout-ids 0`, the demo's training): the found net and
   MobileFaceNet with seeds 0 and 1, three random nets of the search space within the budget (seed 0), IResNet-18
   once as a reference. Each scored by `facerec-eval --protocol unseen` on the unseen pairs (10-fold).
4. One table: params, MFLOPs, latency, accuracy mean ± sd over seeds, CPU-minutes of training (and of the search),
   RI of the found net against the random nets (nas_core.baselines.relative_improvement). The latency column is
   measured after each training unless `--latency` measured every net again in one interleaved pass (run it
   alone: trainings beside it slow whichever net is timed while they run).

Every finished step is a line of WORK/journal.jsonl (the search is resumed with facerec-search --resume), so the
bench runs in parts; WORK/search_value.json holds the table. CPU-minutes are the user + system time of the
command's processes (resource.getrusage of the children).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from tools.lfw_demo import SEARCH_FLAGS, split_people  # noqa: E402  (tools/ is a folder of scripts)
from tools.shared_data import shared_data  # noqa: E402

EMBEDDING = 128  # the demo's embedding size, for every net
TRAIN_FLAGS = ["--epochs", "5", "--holdout-ids", "0", "--workers", "0", "--embedding-size", str(EMBEDDING)]
# The demo's search, with room to spend the budget: widths up to 16 (W_res 4) and up to 8 trials.
BENCH_SEARCH = [f for f in SEARCH_FLAGS]
BENCH_SEARCH[BENCH_SEARCH.index("--w-max") + 1] = "16"
BENCH_SEARCH[BENCH_SEARCH.index("--w-res") + 1] = "4"
BENCH_SEARCH[BENCH_SEARCH.index("--max-trials") + 1] = "8"
RANDOM_NETS = 3


class Journal:
    """WORK/journal.jsonl: one JSON line per finished step, keyed by its name."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["step"]] = row

    def add(self, row: dict) -> dict:
        self.rows[row["step"]] = row
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        return row


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run a command; (wall seconds, CPU seconds of its processes)."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  ({wall / 60:.1f} min wall, {cpu / 60:.1f} CPU-min)", flush=True)
    return wall, cpu


def cost(model) -> dict:
    """params, MFLOPs and onnxruntime CPU latency (1 thread, batch 1) of a backbone (nas_core.cost)."""
    from nas_core.cost import count_mflops, onnx_cpu_latency_ms

    shape = (3, 112, 112)
    return {"params": int(sum(p.numel() for p in model.parameters())), "mflops": count_mflops(model, shape),
            "latency_ms": onnx_cpu_latency_ms(model.eval(), shape, threads=1)}


def _prepare(args, work: Path, journal: Journal) -> None:
    if (work / "train" / "train.rec").is_file() and (work / "unseen" / "unseen.bin").is_file():
        return  # the split is seeded: a rebuilt pack (packs are not kept in git) holds the same people
    import shutil

    lfw = shared_data("lfw_train", args.lfw, "--lfw")
    for folder in ("train_images", "unseen_images", "train", "unseen"):
        shutil.rmtree(work / folder, ignore_errors=True)
    train, unseen = split_people(lfw, work, 0.2, 0)
    _run(["facerec-data", "pack", str(work / "train_images"), str(work / "train")])
    _run(["facerec-data", "make-bin", str(work / "unseen_images"), str(work / "unseen" / "unseen.bin"), "--pairs",
          "6000", "--seed", "0"])
    if "data" not in journal.rows:
        journal.add({"step": "data", "training_people": len(train), "unseen_people": len(unseen)})


def _budget(journal: Journal) -> dict:
    if "budget" not in journal.rows:
        from facerec.model.backbones import create_backbone

        journal.add({"step": "budget", "from": "mobilefacenet",
                     **cost(create_backbone("mobilefacenet", embedding_size=EMBEDDING))})
    return journal.rows["budget"]


def _search(args, work: Path, journal: Journal, budget: dict) -> dict:
    if "search" in journal.rows:
        return journal.rows["search"]
    run = work / "search"
    flags = (["--resume", str(run)] if (run / "settings.json").is_file() else
             ["--data", str(work / "train"), "--output", str(run), *BENCH_SEARCH, "--max-params",
              str(budget["params"]), "--max-latency-ms", f"{budget['latency_ms']:.4f}", "--latency-threads", "1",
              "--seed", "0"])
    wall, cpu = _run(["facerec-search", *flags, "--device", "cpu", "--no-progress"])
    result = json.loads((run / "result.json").read_text())
    return journal.add({"step": "search", "genotype": result["genotype"], "fitness": result["fitness"],
                        "trials": result["num_trials"], "wall_seconds": wall, "cpu_seconds": cpu})


def _nets(journal: Journal, budget: dict) -> list[tuple[str, list[str], list[int]]]:
    """(name, facerec-train model flags, seeds) of every net the bench trains."""
    from facerec.model.space import IResNetSpace
    from nas_core.baselines import sample_genotypes
    from nas_core.settings import settings_for

    found = journal.rows["search"]["genotype"]
    nets = [("found", ["--genotype", json.dumps(found)], [0, 1]),
            ("mobilefacenet", ["--arch", "mobilefacenet"], [0, 1])]
    if "random" not in journal.rows:  # within the budget, drawn once and journaled
        space = IResNetSpace(embedding_size=EMBEDDING)
        settings = settings_for("small", **_search_settings())
        chosen, seed = [], 0
        while len(chosen) < RANDOM_NETS:
            for g in sample_genotypes(settings, 1, seed):
                c = cost(space.build(g))
                if c["params"] <= budget["params"] and c["latency_ms"] <= budget["latency_ms"]:
                    chosen.append({"genotype": g.to_dict(), **c})
            seed += 1
        journal.add({"step": "random", "nets": chosen, "draws": seed})
    for i, net in enumerate(journal.rows["random"]["nets"]):
        nets.append((f"random{i + 1}", ["--genotype", json.dumps(net["genotype"])], [0]))
    nets.append(("iresnet18", ["--arch", "iresnet18"], [0]))
    return nets


def _search_settings() -> dict:
    """The search space's bounds among BENCH_SEARCH's flags (what the random nets are drawn from)."""
    names = ("--d-min", "--d-max", "--w-min", "--w-max", "--w-res", "--e-min")
    return {k.lstrip("-").replace("-", "_"): int(BENCH_SEARCH[BENCH_SEARCH.index(k) + 1]) for k in names}


def _train(work: Path, journal: Journal, name: str, model_flags: list[str], seed: int) -> dict:
    out = work / "models" / f"{name}-s{seed}"
    genotype_file = out.with_suffix(".genotype.json")
    flags = list(model_flags)
    if flags[0] == "--genotype":  # facerec-train takes a file
        out.parent.mkdir(parents=True, exist_ok=True)
        genotype_file.write_text(flags[1])
        flags[1] = str(genotype_file)
    # A training killed part-way resumes from its last.pt; its CPU-minutes then count only the finishing part.
    resumed = (out / "last.pt").is_file()
    if not resumed:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    wall, cpu = _run(["facerec-train", *flags, "--data", str(work / "train"), "--output", str(out), *TRAIN_FLAGS,
                      "--seed", str(seed), "--device", "cpu", "--no-progress", *(["--resume", str(out)] if resumed else [])])
    score_file = out / "eval.json"
    _run(["facerec-eval", "--model", str(out / "model.pt"), "--data", str(work / "unseen"), "--protocol", "unseen",
          "--output", str(score_file), "--device", "cpu"])
    score = json.loads(score_file.read_text())["results"]["unseen"]
    from facerec.model.checkpoint import load_backbone

    return journal.add({"step": f"{name}-s{seed}", "net": name, "seed": seed, "accuracy": score["accuracy"],
                        "std": score["std"], "train_wall_seconds": wall, "train_cpu_seconds": cpu, "resumed": resumed,
                        **cost(load_backbone(out / "model.pt")[0])})


def _latency(journal: Journal, repeats: int) -> dict:
    """Every net's CPU latency again, in one quiet pass: onnxruntime, 1 thread, batch 1, the nets' runs
    interleaved (nas_core.cost.median_ms) so that any load slows them alike. The figures taken after each
    training were measured while other jobs ran; run this alone. Weights do not change latency, so each net
    is built fresh from its genotype or arch."""
    from facerec.model.backbones import create_backbone
    from facerec.model.space import IResNetSpace
    from nas_core.cost import median_ms, onnx_cpu_runner
    from nas_core.genotype import Genotype

    space = IResNetSpace(embedding_size=EMBEDDING)
    runs = {}
    for name, flags, _ in _nets(journal, journal.rows["budget"]):
        model = (space.build(Genotype.from_dict(json.loads(flags[1]))) if flags[0] == "--genotype"
                 else create_backbone(flags[1], embedding_size=EMBEDDING))
        runs[name] = onnx_cpu_runner(model.eval(), (3, 112, 112), threads=1)
    print(f"latency: {len(runs)} nets interleaved, {repeats} rounds", flush=True)
    return journal.add({"step": "latency", "threads": 1, "repeats": repeats, "ms": median_ms(runs, repeats, 5)})


def table(journal: Journal) -> dict:
    """Rows per net (mean ± sd over seeds) and the RI of the found net against the random nets."""
    from nas_core.baselines import relative_improvement

    by_net: dict[str, list[dict]] = {}
    for row in journal.rows.values():
        if "net" in row:
            by_net.setdefault(row["net"], []).append(row)
    quiet = journal.rows.get("latency", {}).get("ms", {})
    rows = []
    for net, runs in by_net.items():
        accs = [100 * r["accuracy"] for r in runs]
        rows.append({"net": net, "seeds": len(runs), "params": runs[0]["params"], "mflops": runs[0]["mflops"],
                     "latency_ms": quiet.get(net, runs[0]["latency_ms"]), "accuracy": statistics.mean(accs),
                     "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "train_cpu_minutes": statistics.mean(r["train_cpu_seconds"] for r in runs) / 60})
    result = {"rows": rows, "latency": "one quiet interleaved pass (--latency)" if quiet else "after each training"}
    found = next((r for r in rows if r["net"] == "found"), None)
    randoms = [r["accuracy"] for r in rows if r["net"].startswith("random")]
    if found and randoms:
        result["ri"] = relative_improvement(found["accuracy"], randoms)
        result["found_above_every_random"] = found["accuracy"] > max(randoms)
    if "search" in journal.rows:
        result["search_cpu_minutes"] = journal.rows["search"]["cpu_seconds"] / 60
    return result


def _print(result: dict, budget: dict | None) -> None:
    if budget:
        print(f"budget (MobileFaceNet, {EMBEDDING}-d): {budget['params']:,} params, {budget['mflops']:.1f} MFLOPs, "
              f"{budget['latency_ms']:.2f} ms")
    print("| net | seeds | params | MFLOPs | CPU latency (ms, batch 1) | unseen-people accuracy (%) | train CPU-min |")
    print("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['net']} | {r['seeds']} | {r['params']:,} | {r['mflops']:.1f} | {r['latency_ms']:.2f} | "
              f"{r['accuracy']:.2f} ± {r['sd']:.2f} | {r['train_cpu_minutes']:.1f} |")
    print(f"latency measured {result['latency']}")
    if "search_cpu_minutes" in result:
        print(f"search: {result['search_cpu_minutes']:.1f} CPU-min")
    if "ri" in result:
        print(f"RI of the found net against the random nets: {result['ri']:+.2f}% "
              f"(above every random net: {result['found_above_every_random']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", help="lfw_train image folder, one sub-folder per person (default: lfw_train in the "
                   "shared data folder, tools/shared_data.py); read only while WORK has no packs")
    p.add_argument("--work", default=str(REPO / "bench" / "results" / "search_value"),
                   help="working folder: journal, packs, search, models")
    p.add_argument("--max-trainings", type=int, help="stop after N new trainings (run the bench in parts)")
    p.add_argument("--only", type=lambda t: set(t.split(",")), default=set(),
                   help="train only these steps (e.g. found-s1,mobilefacenet-s1): two processes on disjoint steps "
                        "share one journal")
    p.add_argument("--table", action="store_true", help="only print the table of the journaled results")
    p.add_argument("--latency", type=int, metavar="ROUNDS", nargs="?", const=50,
                   help="measure every net's CPU latency again in one interleaved pass (default 50 rounds) and use "
                        "it in the table; run it alone on the machine")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    journal = Journal(work / "journal.jsonl")
    if args.latency is not None:
        if args.latency < 1 or "budget" not in journal.rows or "random" not in journal.rows:
            print(f"error: {work}: --latency expected ROUNDS >= 1 and a bench that has run its search", file=sys.stderr)
            return 2
        _latency(journal, args.latency)
    elif not args.table:
        _prepare(args, work, journal)
        budget = _budget(journal)
        _search(args, work, journal, budget)
        trained = 0
        nets = _nets(journal, budget)
        # Seed 0 of every net before any second seed: a part of the bench then compares all nets once.
        steps = sorted(((seed, i, name, flags) for i, (name, flags, seeds) in enumerate(nets) for seed in seeds))
        for seed, _, name, flags in steps:
            step = f"{name}-s{seed}"
            if step in journal.rows or (args.only and step not in args.only):
                continue
            if args.max_trainings is not None and trained >= args.max_trainings:
                break
            _train(work, journal, name, flags, seed)
            trained += 1
    result = table(journal)
    (work / "search_value.json").write_text(json.dumps(result, indent=2) + "\n")
    _print(result, journal.rows.get("budget"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
