"""Evaluation report: the JSON contract of ARCHITECTURE §7, a markdown table, and IJB ROC curves."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from eval_protocols.protocols import PROTOCOL_ORDER
from nas_core.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def build_report(model: str, protocol: str, results: dict[str, dict]) -> dict:
    """``{"model", "protocol", "results": {NAME: {...}}}`` with every rate a fraction in [0, 1]."""
    ordered = {name: results[name] for name in sorted(results, key=_order)}
    return {"model": str(model), "protocol": protocol, "results": ordered}


def _order(name: str) -> tuple[int, str]:
    return (PROTOCOL_ORDER.index(name) if name in PROTOCOL_ORDER else len(PROTOCOL_ORDER), name)


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f}"


def markdown_table(report: dict) -> str:
    """One markdown table per protocol family, percentages with two decimals."""
    results = report["results"]
    verification = {k: v for k, v in results.items() if "accuracy" in v}
    ijb = {k: v for k, v in results.items() if "tar_at_far" in v}
    tiny = {k: v for k, v in results.items() if "rank20" in v}
    blocks = []
    if verification:
        rows = ["| set | accuracy % | std % | threshold | pairs |", "|---|---|---|---|---|"]
        rows += [f"| {k} | {_pct(v['accuracy'])} | {_pct(v['std'])} | {v['threshold']:.3f} | {v['pairs']} |"
                 for k, v in verification.items()]
        blocks.append("\n".join(rows))
    if ijb:
        fars = list(next(iter(ijb.values()))["tar_at_far"])
        head = "| set | " + " | ".join(f"TAR@{f}" for f in fars) + " | AUC % | rank-1 % | rank-5 % | rank-10 % | templates | pairs |"
        rows = [head, "|" + "---|" * (len(fars) + 7)]
        for k, v in ijb.items():
            ident = v.get("identification", {})
            ranks = " | ".join(_pct(ident[r]) if r in ident else "-" for r in ("rank1", "rank5", "rank10"))
            tars = " | ".join(_pct(v["tar_at_far"][f]) for f in fars)
            rows.append(f"| {k} | {tars} | {_pct(v['auc'])} | {ranks} | {v['templates']} | {v['pairs']} |")
        blocks.append("\n".join(rows))
    if tiny:
        rows = ["| set | rank-1 % | rank-5 % | rank-20 % | probes | gallery |", "|---|---|---|---|---|---|"]
        rows += [f"| {k} | {_pct(v['rank1'])} | {_pct(v['rank5'])} | {_pct(v['rank20'])} | {v['probes']} | {v['gallery']} |"
                 for k, v in tiny.items()]
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """ROC curves on a log FPR axis (InsightFace's IJB plot: FPR 1e-6..1e-1, TPR 0.3..1)."""
    # A bare Figure draws with Agg whatever pyplot's backend is, and leaves pyplot's state alone.
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, lw=1, label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-6, 1e-1)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("False Positive Rate")
    ax.set_ylabel("True Positive Rate")
    ax.set_title("ROC on IJB (1:1)")
    ax.grid(linestyle="--", linewidth=0.5)
    ax.legend(loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def write_report(
    output: str | Path, report: dict, curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    log_text: str | None = None,
) -> list[Path]:
    """Write the JSON, ``<stem>_roc.png`` beside it when there are IJB curves, and ``<stem>.log``."""
    output = Path(output)
    written = [output]
    png_bytes = roc_png(curves) if curves else None  # render first: a plotting failure writes nothing
    atomic_write_json(output, report)
    if png_bytes is not None:
        png = output.with_name(f"{output.stem}_roc.png")
        atomic_write_bytes(png, png_bytes)
        written.append(png)
    if log_text is not None:
        log = output.with_name(f"{output.stem}.log")
        atomic_write_text(log, log_text)
        written.append(log)
    return written
