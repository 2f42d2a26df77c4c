"""Face reports: the paper's names of IResNet genotypes in search reports (R-58-256), and the report of a
`facerec-train` output folder (OUT/report.html + OUT/report.md), built with nas_core.report's pieces.

The training report reads OUT/metrics.json (one entry per epoch: loss, lr, images/s, verification, the
report-only benchmark packs when they were due; what model.pt was selected on) and the per-step scalars
TensorBoard already holds in OUT/tb (loss, lr, images/s every 10 steps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facerec.errors import FaceRecError
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype
from nas_core.report import (
    Document,
    Facts,
    Figure,
    Note,
    Table,
    figure_png,
    pyplot,
    write_document,
    write_search_report,
)
from nas_core.report.search import hms

_STEP_TAGS = {"loss": "train/loss", "lr": "train/lr", "images_per_second": "train/images_per_second"}


def read_step_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{loss|lr|images_per_second: [(step, value), ...]} from TensorBoard event files; {} when none."""
    if not tb_dir.is_dir() or not any(tb_dir.glob("events.out.tfevents.*")):
        return {}
    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    tags = set(events.Tags().get("scalars", []))
    scalars = {}
    for name, tag in _STEP_TAGS.items():
        if tag in tags:
            by_step = {
                e.step: float(e.value) for e in events.Scalars(tag)
            }  # a resumed run's later write wins
            scalars[name] = sorted(by_step.items())
    return scalars


def _read_metrics(output: Path) -> dict[str, Any]:
    path = output / "metrics.json"
    if not path.is_file():
        raise FaceRecError(
            f"{path}: expected the metrics.json a facerec-train run writes after each epoch; file not found"
        )
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FaceRecError(f"{path}: expected the JSON metrics of a facerec-train run ({exc})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("epochs"), list):
        raise FaceRecError(f"{path}: expected a metrics object with a list of 'epochs'")
    return metrics


def _model_name(metrics: dict[str, Any]) -> str:
    if isinstance(metrics.get("genotype"), dict):
        genotype = Genotype.from_dict(metrics["genotype"])
        return f"{IResNetSpace.paper_name(genotype)} ({genotype.key()})"
    return str(metrics.get("arch") or "?")


def _model_epoch(metrics: dict[str, Any]) -> int | None:
    """The epoch model.pt holds (metrics of runs before --select: the best epoch, else the last)."""
    chosen = (metrics.get("selection") or {}).get("model_epoch")
    if chosen is None:
        chosen = metrics.get("best_epoch")
    epochs = metrics["epochs"]
    return chosen if chosen is not None else (epochs[-1].get("epoch") if epochs else None)


def _sets_text(sets: dict | None) -> str:
    return ", ".join(f"{k}: {v} pairs" for k, v in (sets or {}).items()) or "none"


def _selection_text(metrics: dict[str, Any]) -> str:
    selection = metrics.get("selection") or {}
    on = selection.get("on") or {}
    if not selection.get("select"):
        return f"epoch {_model_epoch(metrics)}"
    if selection["select"] == "last":
        return f"epoch {_model_epoch(metrics)}: the last epoch (--select last)"
    where = f"pairs of {on.get('identities')} held-out identities" if on.get("kind") == "holdout" else \
        "the benchmark .bin packs (--select bins: scores reported on them are optimistic)"
    return f"epoch {_model_epoch(metrics)}: the best mean accuracy on {where} (--select {selection['select']})"


def _header(output: Path, metrics: dict[str, Any]) -> Facts:
    train, run, epochs = metrics.get("train") or {}, metrics.get("run") or {}, metrics["epochs"]
    planned = train.get("epochs")
    status = (
        "finished"
        if planned is not None and len(epochs) >= planned
        else f"partial: {len(epochs)} of {planned} epochs (still training, or stopped; --resume continues it)"
    )
    speed = metrics.get("images_per_second")
    best = metrics.get("best_epoch")
    return Facts(
        "Training",
        [
            ("status", status),
            ("output folder", str(output)),
            ("model", _model_name(metrics)),
            ("params", f"{run['params']:,}" if isinstance(run.get("params"), int) else "?"),
            (
                "data",
                f"{run.get('data', '?')}: {run.get('train_images', '?')} images of "
                f"{run.get('train_identities', '?')} identities",
            ),
            ("model.pt", _selection_text(metrics)),
            ("verification every epoch", _sets_text(run.get("val_sets"))),
            ("benchmark packs (a report, not a choice)", _sets_text(run.get("report_sets"))
             + (f"; every {run['report_every']} epoch(s), after the last one and on model.pt"
                if run.get("report_sets") else "")),
            ("head", str(run.get("head", train.get("head", "?")))),
            ("train settings", ", ".join(f"{k} {v}" for k, v in train.items())),
            ("steps", str(metrics.get("global_step", "?"))),
            ("time", hms(metrics.get("seconds"))),
            ("images/s (mean over epochs)", f"{speed:,.0f}" if isinstance(speed, int | float) else "?"),
            (
                "best epoch (mean verification accuracy)",
                f"{best} ({metrics['best_score']:.4f})"
                if best is not None and metrics.get("best_score") is not None
                else "none (no verification sets)",
            ),
            ("non-finite loss steps skipped", str(len(metrics.get("nan_steps") or []))),
        ],
    )


def _training_figure(metrics: dict[str, Any], steps: dict[str, list[tuple[int, float]]]) -> bytes:
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True)
    epochs = metrics["epochs"]
    for ax, key, label in zip(
        axes, ("loss", "lr", "images_per_second"), ("loss", "learning rate", "images/s")
    ):
        if steps.get(key):
            ax.plot(*zip(*steps[key]), linewidth=0.9, color="#1f77b4", label="every 10 steps")
        points = [(e["step"], e[key]) for e in epochs if isinstance(e.get(key), int | float)]
        if points:
            ax.plot(*zip(*points), marker="o", linewidth=1.2, color="#d62728", label="per epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if epochs and all((e.get("lr") or 0) > 0 for e in epochs):  # step decays (x0.1) read best on a log axis
        axes[1].set_yscale("log")
    axes[-1].set_xlabel("step")
    return figure_png(fig)


def _verification_figure(metrics: dict[str, Any]) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    epochs = metrics["epochs"]
    names = sorted({name for e in epochs for name in (e.get("val") or {})})
    for name in names:
        points = [
            (e["epoch"], 100 * e["val"][name]["accuracy"]) for e in epochs if name in (e.get("val") or {})
        ]
        ax.plot(*zip(*points), marker="o", label=name)
    for name in sorted({name for e in epochs for name in (e.get("benchmarks") or {})}):
        points = [(e["epoch"], 100 * e["benchmarks"][name]["accuracy"]) for e in epochs
                  if name in (e.get("benchmarks") or {})]
        ax.plot(*zip(*points), marker="s", linestyle=":", label=f"{name} (report only)")
    scores = [(e["epoch"], 100 * e["score"]) for e in epochs if e.get("score") is not None]
    if len(names) > 1 and scores:
        ax.plot(*zip(*scores), color="black", linestyle="--", label="mean (fitness)")
    chosen = _model_epoch(metrics)
    score = next((e.get("score") for e in epochs if e.get("epoch") == chosen), None)
    if chosen is not None and score is not None:
        ax.scatter(chosen, 100 * score, marker="*", s=260, color="gold", edgecolors="black", zorder=4,
                   label=f"model.pt: epoch {chosen}")
    if not names:
        ax.set_title("no verification sets in this run", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("10-fold accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, loc="best")
    return figure_png(fig)


def _epoch_table(metrics: dict[str, Any]) -> Table:
    epochs = metrics["epochs"]
    names = sorted({name for e in epochs for name in (e.get("val") or {})})
    benchmarks = sorted({name for e in epochs for name in (e.get("benchmarks") or {})})
    rows = [
        [
            e.get("epoch"),
            e.get("step"),
            round(e["loss"], 4) if isinstance(e.get("loss"), float) else e.get("loss"),
            float(f"{e['lr']:.4g}") if isinstance(e.get("lr"), float) else e.get("lr"),
            round(e.get("images_per_second") or 0.0, 1),
            round(e.get("train_seconds") or 0.0, 1),
            *[round(100 * e["val"][n]["accuracy"], 2) if n in (e.get("val") or {}) else "" for n in names],
            "" if e.get("score") is None else round(100 * e["score"], 2),
            *[round(100 * e["benchmarks"][n]["accuracy"], 2) if n in (e.get("benchmarks") or {}) else ""
              for n in benchmarks],
        ]
        for e in epochs
    ]
    return Table(
        "Epochs",
        ["epoch", "step", "loss", "lr", "images/s", "seconds", *[f"{n} (%)" for n in names], "mean (%)",
         *[f"{n} (%, report only)" for n in benchmarks]],
        rows,
        table_id="epochs",
    )


def _checkpoint_table(metrics: dict[str, Any]) -> Table:
    """The final model.pt: its epoch's verification and the report-only benchmark packs scored on it."""
    epochs = metrics["epochs"]
    chosen = _model_epoch(metrics)
    entry = next((e for e in epochs if e.get("epoch") == chosen), epochs[-1] if epochs else {})
    benchmarks = (metrics.get("model_benchmarks") or {}).get("results") or {}
    rows = [
        [
            name + role,
            round(100 * r["accuracy"], 2),
            round(100 * r.get("std", 0.0), 2),
            round(r["threshold"], 3) if isinstance(r.get("threshold"), float) else r.get("threshold"),
            r.get("pairs"),
        ]
        for results, role in ((entry.get("val") or {}, ""), (benchmarks, " (report only)"))
        for name, r in sorted(results.items())
    ]
    title = f"Final checkpoint model.pt ({_selection_text(metrics)})"
    return Table(title, ["set", "accuracy (%)", "std (%)", "threshold", "pairs"], rows, table_id="checkpoint")


def build_train_document(output: str | Path) -> Document:
    output = Path(output)
    metrics = _read_metrics(output)
    steps = read_step_scalars(output / "tb")
    document = Document(f"Training report: {output.name}", [_header(output, metrics)])
    if not steps:
        document.blocks.append(
            Note(
                "No per-step TensorBoard scalars in tb/ (they are written every 10 steps): "
                "the curves show one point per epoch."
            )
        )
    document.blocks += [
        Figure(
            "training",
            "Loss, learning rate and throughput",
            _training_figure(metrics, steps),
            "Blue: TensorBoard's per-step scalars (every 10 steps); red: the epoch means of metrics.json.",
        ),
        Figure(
            "verification",
            "Verification accuracy per epoch",
            _verification_figure(metrics),
            "10-fold accuracy on each verification set after every epoch; dotted: the benchmark packs "
            "scored as a report only (never a choice); the star is the epoch saved as model.pt.",
        ),
        _checkpoint_table(metrics),
        _epoch_table(metrics),
    ]
    if not (output / "model.pt").is_file():
        document.blocks.insert(1, Note(f"{output / 'model.pt'} is missing.", warning=True))
    return document


def write_train_report(output: str | Path) -> Path:
    """Write OUT/report.html and OUT/report.md (+ PNGs) for a facerec-train output folder."""
    return write_document(build_train_document(output), Path(output) / "report.html")


def write_folder_report(folder: str | Path, output: str | Path | None = None) -> Path:
    """facerec-report: the report of a facerec-train output (metrics.json) or of a search run (journal.jsonl),
    at ``output`` (default FOLDER/report.html); returns its path (the markdown twin lies beside it)."""
    folder = Path(folder)
    if (folder / "journal.jsonl").is_file() or not (folder / "metrics.json").is_file():
        return write_search_report(folder, output)  # a missing journal is reported as such
    return write_document(build_train_document(folder), output or folder / "report.html")
