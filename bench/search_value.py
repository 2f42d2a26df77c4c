"""Does the search pay? Found nets against MobileFaceNet and random nets at three latency budgets, on unseen people.

    python bench/search_value.py                          # everything not yet done, most decisive first (journaled)
    python bench/search_value.py --max-trainings 2        # a part: at most 2 new trainings (searches run as needed)
    python bench/search_value.py --only found-mfn-s1      # only these steps (a second process on other steps)
    python bench/search_value.py --table                  # print the table of what is done, draw pareto.png
    python bench/search_value.py --latency                # every net's CPU latency again, in one quiet pass

1. The pack: every person of lfw_train and of raw_faces aligned (`python bench/align_report.py`: Pins and CelebA),
   4,654 people, split by people (seed 0, 20 % unseen) into WORK/train (pack, 3,723 people) and
   WORK/unseen/unseen.bin (12,000 pairs of the 931 unseen people, drawn person by person: make-bin --sampling people).
2. Budgets (onnxruntime CPU latency, batch 1, 1 thread, nas_core.cost): ≤ 1 ms, ≤ 3 ms and MobileFaceNet's own
   (measured here at the bench's embedding size). At each, `facerec-search --max-latency-ms` on WORK/train; its
   fitness and choices use people held out of the search's subset, never the unseen people.
3. Trained with one recipe (TRAIN_FLAGS, chosen by bench/recipe_study.py on held-out training people): at each budget
   the found net (seeds 0, 1, 2) and three random nets of the search space within the budget (seed 0);
   MobileFaceNet (seeds 0, 1, 2) and IResNet-18 (seed 0) as references. Each scored by `facerec-eval --protocol
   unseen` on the 12,000 unseen pairs (10-fold) and exported to ONNX as WORK/onnx/<row>.onnx.
4. One table: params, MFLOPs, latency, accuracy mean ± sd over seeds and its 95 % interval, training CPU-minutes, the
   CPU-minutes of the search that found the net, RI of each found net against its budget's random nets
   (nas_core.baselines.relative_improvement); and WORK/pareto.png, accuracy against latency.

Steps run in ORDER, the most decisive first (found against MobileFaceNet at its latency). Every finished step is a
line of WORK/journal.jsonl (a search resumes with facerec-search --resume, a training with --resume), so the bench
runs in parts over several sessions; WORK/search_value.json holds the table. CPU-minutes are the user + system time
of the command's processes (resource.getrusage of the children).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from tools.lfw_demo import split_sets  # noqa: E402  (tools/ is a folder of scripts)
from tools.shared_data import shared_data  # noqa: E402

EMBEDDING = 128  # for every net
# One recipe for every net (bench/recipe_study.py chose it on held-out training people).
TRAIN_FLAGS = ["--epochs", "4", "--recipe", "auto", "--holdout-ids", "0", "--workers", "0", "--cache",
               "--embedding-size", str(EMBEDDING)]
# The search: macro (Grow depth, Prune width) with the small preset's dynamic trials (E_min 1, +1 epoch per depth
# step, +2 per width step: ~22 trial-epochs for 6 trials) on 350 of the training people, fitness on 150 others;
# widths up to 32 so that MobileFaceNet's budget can be spent. (1,000 people took 4.4 minutes per trial-epoch of
# the widest net on 2 cores: about 3 hours per search.)
SEARCH_FLAGS = ["--size", "small", "--e-min", "1", "--d-min", "4", "--d-max", "8", "--w-min", "4", "--w-max", "32",
                "--w-res", "4", "--max-trials", "6", "--macro-only", "--subset-ids", "500", "--holdout-ids", "150",
                "--embedding-size", str(EMBEDDING), "--workers", "0", "--cache", "--latency-threads", "1"]
BUDGETS = {"mfn": None, "lat3": 3.0, "lat1": 1.0}  # ms; None: MobileFaceNet's own latency, measured here
SEEDS = (0, 1, 2)
RANDOM_NETS = 3
# Most decisive first: found against MobileFaceNet at its latency, seed by seed; then the other budgets' found
# nets, the random nets, the remaining seeds and IResNet-18.
ORDER = ("found-mfn-s0", "mobilefacenet-s0", "found-mfn-s1", "mobilefacenet-s1", "found-mfn-s2", "mobilefacenet-s2",
         "found-lat3-s0", "found-lat1-s0", "random1-mfn-s0", "random1-lat3-s0", "random1-lat1-s0",
         "found-lat3-s1", "found-lat1-s1", "random2-mfn-s0", "random2-lat3-s0", "random2-lat1-s0",
         "found-lat3-s2", "found-lat1-s2", "random3-mfn-s0", "random3-lat3-s0", "random3-lat1-s0", "iresnet18-s0")


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


def cost(model, repeats: int = 20) -> dict:
    """params, MFLOPs and onnxruntime CPU latency (1 thread, batch 1, median of ``repeats``) of a backbone
    (nas_core.cost)."""
    from nas_core.cost import count_mflops, onnx_cpu_latency_ms

    shape = (3, 112, 112)
    return {"params": int(sum(p.numel() for p in model.parameters())), "mflops": count_mflops(model, shape),
            "latency_ms": onnx_cpu_latency_ms(model.eval(), shape, threads=1, repeats=repeats)}


SETS = ("lfw_train", "pins", "celeba")  # the pack's people: lfw_train and raw_faces aligned (bench/align_report.py)
UNSEEN_FRACTION = 0.2
UNSEEN_PAIRS = 12_000  # one point of accuracy is > 3 standard errors (sqrt(0.85 * 0.15 / 12,000) = 0.33 points)


def _prepare(args, work: Path, journal: Journal) -> None:
    if (work / "train" / "train.rec").is_file() and (work / "unseen" / "unseen.bin").is_file():
        return  # the split is seeded: a rebuilt pack (packs are not kept in git) holds the same people
    import shutil

    aligned = Path(args.aligned)
    sources = {"lfw_train": shared_data("lfw_train", args.lfw, "--lfw"),
               "pins": aligned / "pins", "celeba": aligned / "celeba"}
    for name, folder in sources.items():
        if not folder.is_dir():
            raise SystemExit(f"error: {folder}: expected the {name} faces (raw_faces aligned by "
                             "`python bench/align_report.py`, or --aligned)")
    for folder in ("train_images", "unseen_images", "train", "unseen"):
        shutil.rmtree(work / folder, ignore_errors=True)
    train, unseen = split_sets(sources, work, UNSEEN_FRACTION, 0)
    _run(["facerec-data", "pack", str(work / "train_images"), str(work / "train"), "--no-progress"])
    _run(["facerec-data", "make-bin", str(work / "unseen_images"), str(work / "unseen" / "unseen.bin"), "--pairs",
          str(UNSEEN_PAIRS), "--sampling", "people", "--seed", "0", "--no-progress"])
    if "data" not in journal.rows:
        journal.add({"step": "data", "training_people": len(train), "unseen_people": len(unseen),
                     "unseen_pairs": UNSEEN_PAIRS, "sets": list(sources),
                     "people_per_set": {k: {"train": sum(n.startswith(k + "-") for n in train),
                                            "unseen": sum(n.startswith(k + "-") for n in unseen)} for k in sources}})


def budgets(journal: Journal) -> dict[str, float]:
    """{budget name: ms}; MobileFaceNet's own cost is measured once and journaled."""
    if "budget" not in journal.rows:
        from facerec.model.backbones import create_backbone

        # 200 runs: a budget is set once, and a search decides every candidate against it
        journal.add({"step": "budget", "from": "mobilefacenet",
                     **cost(create_backbone("mobilefacenet", embedding_size=EMBEDDING), repeats=200)})
    return {name: journal.rows["budget"]["latency_ms"] if ms is None else ms for name, ms in BUDGETS.items()}


def _search(work: Path, journal: Journal, name: str, ms: float) -> dict:
    step = f"search-{name}"
    if step in journal.rows:
        return journal.rows[step]
    run = work / "search" / name
    flags = (["--resume", str(run)] if (run / "settings.json").is_file() else
             ["--data", str(work / "train"), "--output", str(run), *SEARCH_FLAGS, "--max-latency-ms", f"{ms:.4f}",
              "--seed", "0"])
    wall, cpu = _run(["facerec-search", *flags, "--device", "cpu", "--no-progress"])
    result = json.loads((run / "result.json").read_text())
    return journal.add({"step": step, "budget_ms": ms, "genotype": result["genotype"], "fitness": result["fitness"],
                        "trials": result["num_trials"], "wall_seconds": wall, "cpu_seconds": cpu})


def _random(journal: Journal, name: str, ms: float) -> list[dict]:
    """RANDOM_NETS genotypes of the search space within the budget, drawn once (seeded) and journaled."""
    step = f"random-{name}"
    if step not in journal.rows:
        from facerec.model.space import IResNetSpace
        from nas_core.baselines import sample_genotypes
        from nas_core.settings import settings_for

        space = IResNetSpace(embedding_size=EMBEDDING)
        settings = settings_for("small", **_search_settings())
        chosen, seed = [], 0
        while len(chosen) < RANDOM_NETS:
            for g in sample_genotypes(settings, 1, seed):
                c = cost(space.build(g))
                if c["latency_ms"] <= ms:
                    chosen.append({"genotype": g.to_dict(), **c})
            seed += 1
        journal.add({"step": step, "budget_ms": ms, "nets": chosen, "draws": seed})
    return journal.rows[step]["nets"]


def _search_settings() -> dict:
    """The search space's bounds among SEARCH_FLAGS (what the random nets are drawn from)."""
    names = ("--d-min", "--d-max", "--w-min", "--w-max", "--w-res", "--e-min")
    return {k.lstrip("-").replace("-", "_"): int(SEARCH_FLAGS[SEARCH_FLAGS.index(k) + 1]) for k in names}


def parse_step(step: str) -> tuple[str, str | None, int]:
    """'found-mfn-s0' -> ('found-mfn', 'mfn', 0); 'mobilefacenet-s1' -> ('mobilefacenet', None, 1)."""
    net, seed = step.rsplit("-s", 1)
    budget = net.split("-", 1)[1] if "-" in net else None
    return net, budget, int(seed)


def _model_flags(work: Path, journal: Journal, step: str) -> tuple[list[str], float | None]:
    """facerec-train's model flags for a step (running the search or drawing the random nets it needs) and the
    CPU-seconds of the search that produced the net (None for the references and random nets)."""
    net, budget, _ = parse_step(step)
    if budget is None:
        return ["--arch", net], None
    ms = budgets(journal)[budget]
    if net.startswith("found"):
        search = _search(work, journal, budget, ms)
        return ["--genotype", json.dumps(search["genotype"])], search["cpu_seconds"]
    index = int(net.split("-")[0].removeprefix("random")) - 1
    return ["--genotype", json.dumps(_random(journal, budget, ms)[index]["genotype"])], None


def _train(work: Path, journal: Journal, step: str) -> dict:
    net, budget, seed = parse_step(step)
    flags, search_cpu = _model_flags(work, journal, step)
    out = work / "models" / step
    if flags[0] == "--genotype":  # facerec-train takes a file
        genotype_file = out.with_suffix(".genotype.json")
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
    (work / "onnx").mkdir(exist_ok=True)
    _run(["facerec-export", "--model", str(out / "model.pt"), "--output", str(work / "onnx" / f"{step}.onnx")])
    score = json.loads(score_file.read_text())["results"]["unseen"]
    from facerec.model.checkpoint import load_backbone

    return journal.add({"step": step, "net": net, "budget": budget, "seed": seed, "accuracy": score["accuracy"],
                        "std": score["std"], "train_wall_seconds": wall, "train_cpu_seconds": cpu, "resumed": resumed,
                        "search_cpu_seconds": search_cpu, **cost(load_backbone(out / "model.pt")[0])})


def _latency(journal: Journal, repeats: int) -> dict:
    """Every trained net's CPU latency again, in one quiet pass: onnxruntime, 1 thread, batch 1, the nets' runs
    interleaved (nas_core.cost.median_ms) so that any load slows them alike. The figures taken after each
    training were measured while other jobs ran; run this alone. Weights do not change latency, so each net
    is built fresh from its genotype or arch."""
    from facerec.model.backbones import create_backbone
    from facerec.model.space import IResNetSpace
    from nas_core.cost import median_ms, onnx_cpu_runner
    from nas_core.genotype import Genotype

    space = IResNetSpace(embedding_size=EMBEDDING)
    runs = {}
    for row in journal.rows.values():
        if "net" in row and row["net"] not in runs:
            flags, _ = _model_flags(Path("."), journal, row["step"])
            model = (space.build(Genotype.from_dict(json.loads(flags[1]))) if flags[0] == "--genotype"
                     else create_backbone(flags[1], embedding_size=EMBEDDING))
            runs[row["net"]] = onnx_cpu_runner(model.eval(), (3, 112, 112), threads=1)
    print(f"latency: {len(runs)} nets interleaved, {repeats} rounds", flush=True)
    return journal.add({"step": "latency", "threads": 1, "repeats": repeats, "ms": median_ms(runs, repeats, 5)})


T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # Student's t, two-sided 95 %, by degrees of freedom


def interval(accs: list[float], pairs: int) -> tuple[float, float]:
    """95 % interval of a net's accuracy (%): over seeds (Student's t) when there are several, else the binomial
    interval of one score on ``pairs`` test pairs (normal approximation), which ignores seed-to-seed spread."""
    mean = statistics.mean(accs)
    if len(accs) > 1:
        half = T_975[len(accs) - 1] * statistics.stdev(accs) / math.sqrt(len(accs))
    else:
        half = 1.96 * math.sqrt(mean * (100 - mean) / pairs)
    return mean - half, mean + half


def table(journal: Journal) -> dict:
    """Rows per net (mean ± sd over seeds, 95 % interval) and each budget's RI of the found net against its
    random nets."""
    from nas_core.baselines import relative_improvement

    by_net: dict[str, list[dict]] = {}
    for row in journal.rows.values():
        if "net" in row:
            by_net.setdefault(row["net"], []).append(row)
    quiet = journal.rows.get("latency", {}).get("ms", {})
    pairs = journal.rows.get("data", {}).get("unseen_pairs", 12_000)
    rows = []
    for net, runs in by_net.items():
        accs = [100 * r["accuracy"] for r in runs]
        search = runs[0].get("search_cpu_seconds")
        rows.append({"net": net, "budget": runs[0]["budget"], "seeds": len(runs), "params": runs[0]["params"],
                     "mflops": runs[0]["mflops"], "latency_ms": quiet.get(net, runs[0]["latency_ms"]),
                     "accuracy": statistics.mean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "ci95": interval(accs, pairs),
                     "train_cpu_minutes": statistics.mean(r["train_cpu_seconds"] for r in runs) / 60,
                     "search_cpu_minutes": None if search is None else search / 60})
    rows.sort(key=lambda r: (list(BUDGETS).index(r["budget"]) if r["budget"] else len(BUDGETS), r["net"]))
    shown = budgets(journal) if "budget" in journal.rows else {}
    if "mobilefacenet" in quiet and "mfn" in shown:  # MobileFaceNet's own latency, as the quiet pass measured it
        shown["mfn"] = quiet["mobilefacenet"]
    result = {"rows": rows, "latency": "one quiet interleaved pass (--latency)" if quiet else "after each training",
              "budgets_ms": shown, "unseen_pairs": pairs, "ri": {},
              # what each search was given (measured when it started, on a machine that may have been busy)
              "search_budgets_ms": {k.removeprefix("search-"): r["budget_ms"] for k, r in journal.rows.items()
                                    if k.startswith("search-")}}
    for budget in BUDGETS:
        found = next((r for r in rows if r["net"] == f"found-{budget}"), None)
        randoms = [r["accuracy"] for r in rows if r["net"].startswith("random") and r["budget"] == budget]
        if found and randoms:
            result["ri"][budget] = {"ri": relative_improvement(found["accuracy"], randoms), "randoms": len(randoms),
                                    "found_above_every_random": found["accuracy"] > max(randoms)}
    return result


def pareto_plot(result: dict, path: Path) -> None:
    """Accuracy (mean, 95 % interval) against CPU latency: found nets joined as a front, references, random nets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"found": ("C0", "o", "found (3 seeds)"), "random": ("C7", "x", "random in budget (1 seed)"),
              "mobilefacenet": ("C3", "s", "MobileFaceNet"), "iresnet18": ("C2", "D", "IResNet-18")}
    shown = set()
    for kind, (colour, marker, label) in styles.items():
        rows = sorted((r for r in result["rows"] if r["net"].startswith(kind)), key=lambda r: r["latency_ms"])
        for r in rows:
            low, high = r["ci95"]
            ax.errorbar(r["latency_ms"], r["accuracy"], yerr=[[r["accuracy"] - low], [high - r["accuracy"]]],
                        color=colour, marker=marker, linestyle="none", capsize=3,
                        label=None if kind in shown else label)
            shown.add(kind)
        if kind == "found" and len(rows) > 1:
            ax.plot([r["latency_ms"] for r in rows], [r["accuracy"] for r in rows], color=colour, alpha=0.5)
    for ms in result["budgets_ms"].values():
        ax.axvline(ms, color="0.8", linestyle=":", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("CPU latency, ms (onnxruntime, batch 1, 1 thread; log scale)")
    ax.set_ylabel(f"accuracy on {result['unseen_pairs']:,} unseen-people pairs (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    """README's table and notes, printed from the bench's JSON (tests check README against it)."""
    budgets_ms = result["budgets_ms"]
    lines = ["| net | budget | seeds | params | MFLOPs | CPU latency (ms) | unseen-people accuracy (%) | 95 % interval "
             "| train CPU-min | search CPU-min |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        budget = f"≤ {budgets_ms[r['budget']]:.2f} ms" if r["budget"] else "reference"
        search = "" if r["search_cpu_minutes"] is None else f"{r['search_cpu_minutes']:.0f}"
        lines.append(f"| {r['net']} | {budget} | {r['seeds']} | {r['params']:,} | {r['mflops']:.1f} | "
                     f"{r['latency_ms']:.2f} | {r['accuracy']:.2f} ± {r['sd']:.2f} | {r['ci95'][0]:.2f}–{r['ci95'][1]:.2f} "
                     f"| {r['train_cpu_minutes']:.0f} | {search} |")
    lines += ["", f"Latency measured {result['latency']}; accuracy mean ± sd over seeds; the interval is Student's t "
              f"over seeds, or with one seed the binomial interval on {result['unseen_pairs']:,} pairs."]
    for budget, ri in result["ri"].items():
        lines.append(f"RI of found-{budget} against its {ri['randoms']} random nets: {ri['ri']:+.2f} % "
                     f"(above every one: {ri['found_above_every_random']}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", help="lfw_train image folder, one sub-folder per person (default: lfw_train in the "
                   "shared data folder, tools/shared_data.py); read only while WORK has no packs")
    p.add_argument("--aligned", default=str(REPO / "runs" / "raw_faces_aligned"),
                   help="raw_faces aligned by `python bench/align_report.py` (pins/ and celeba/; default "
                        "runs/raw_faces_aligned); read only while WORK has no packs")
    p.add_argument("--work", default=str(REPO / "bench" / "results" / "search_value_4k"),
                   help="working folder: journal, packs, searches, models, ONNX files")
    p.add_argument("--max-trainings", type=int, help="stop after N new trainings (run the bench in parts)")
    p.add_argument("--only", type=lambda t: set(t.split(",")), default=set(),
                   help="train only these steps (e.g. found-mfn-s1,mobilefacenet-s1): two processes on disjoint "
                        "steps share one journal")
    p.add_argument("--table", action="store_true", help="only print the table of the journaled results")
    p.add_argument("--latency", type=int, metavar="ROUNDS", nargs="?", const=50,
                   help="measure every trained net's CPU latency again in one interleaved pass (default 50 rounds) "
                        "and use it in the table; run it alone on the machine")
    args = p.parse_args(argv)
    if args.only - set(ORDER):
        p.error(f"--only: unknown step(s) {', '.join(sorted(args.only - set(ORDER)))}; expected some of "
                f"{', '.join(ORDER)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    journal = Journal(work / "journal.jsonl")
    if args.latency is not None:
        if args.latency < 1 or not any("net" in r for r in journal.rows.values()):
            print(f"error: {work}: --latency expected ROUNDS >= 1 and a bench with trained nets", file=sys.stderr)
            return 2
        _latency(journal, args.latency)
    elif not args.table:
        _prepare(args, work, journal)
        budgets(journal)
        trained = 0
        for step in ORDER:
            if step in journal.rows or (args.only and step not in args.only):
                continue
            if args.max_trainings is not None and trained >= args.max_trainings:
                break
            _train(work, journal, step)
            trained += 1
    result = table(journal)
    (work / "search_value.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["rows"]:
        pareto_plot(result, work / "pareto.png")
    if result["budgets_ms"]:
        print("budgets: " + ", ".join(f"{k} ≤ {v:.2f} ms" for k, v in result["budgets_ms"].items()))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
