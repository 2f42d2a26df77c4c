"""A seeded sweep: build the subjects once, run each kind unmutated (its baseline), then N mutated cases
per kind, each in its own copy of the subject, and count exit 0 / exit 2 / failures per kind."""

from __future__ import annotations

import importlib
import importlib.util
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.fuzzing.kinds import KINDS, Kind, Variant
from tools.fuzzing.known import known_issue
from tools.fuzzing.mutations import Mutation
from tools.fuzzing.runner import (
    Invalid,
    Verdict,
    check_outputs,
    failure_of,
    judge_error,
    mutation_text,
    preload,
    remove_case,
    run_child,
)
from tools.fuzzing.subjects import Subjects

# Modules every case needs, imported once by the fork server so each child starts warm.
WARM_MODULES = (
    "facerec.cli.data",
    "facerec.cli.eval",
    "facerec.cli.train",
    "facerec.cli.embed",
    "facerec.cli.import_weights",
    "facerec.data.jobs",  # the commands import their jobs only once their flags parsed
    "facerec.deploy.eval_job",
    "facerec.deploy.embed_job",
    "facerec.deploy.import_job",
    "nas_core.cli.search",
    "nas_core.search_run",
    "nas_core.classify.task",
    "facerec.train.job",
    "nas_core.cli.report",
    "nas_core.report",
    "facerec.train.loop",
    "facerec.deploy.embedding",
    "facerec.model.checkpoint",
    "eval_protocols.verification",
    "eval_protocols.ijb",
    "eval_protocols.tinyface",
    "eval_protocols.report",
    "onnxruntime",
    "sklearn.metrics",
    "torch.utils.tensorboard",
    "matplotlib.pyplot",
    "nas_core.classify.evaluator",
    "nas_core.classify.datasets",
    "nas_core.replay",
    "tools.make_fixtures",
    "torch._dynamo",
    "sklearn.datasets",
    "onnx",
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_ONE_PIXEL_PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    + _png_chunk(b"IEND", b"")
)


def _no_report(folder, *args, **kwargs) -> Path:
    return Path(folder) / "report.html"


def _one_pixel_roc(curves) -> bytes:
    return _ONE_PIXEL_PNG


# The HTML reports drawn at the end of a training or search read only the output folder (metrics.json, tb/,
# the run's own journal), never the mutated input, and take seconds of matplotlib each: not drawn here.
# The IJB ROC plot is drawn from the scores after every input was read: a 1x1 PNG stands in for it.
STUBS: dict[str, Callable] = {
    "facerec.report:write_train_report": _no_report,
    "nas_core.report:write_search_report": _no_report,
    "eval_protocols.report:roc_png": _one_pixel_roc,
}


def warm_up() -> dict[str, Callable]:
    """Have the fork server import the commands; returns the stubs whose modules exist."""
    preload(["tools.fuzzing.runner", *WARM_MODULES])
    return {target: stub for target, stub in STUBS.items() if importlib.util.find_spec(target.split(":")[0])}


@dataclass
class Workspace:
    root: Path
    subjects: Subjects
    stubs: dict[str, Callable]
    baselines: dict[tuple[str, str], dict]


def prepare(root: str | Path | None = None, seed_traces: str | Path | None = None) -> Workspace:
    """Build the subjects (in a child) and the baseline of every kind and variant."""
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facenas-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    stubs = warm_up()
    subjects = Subjects(root / "subjects")
    if not (subjects.root / "done").is_file():
        from tools.fuzzing.runner import Step

        result = run_child(
            [Step("tools.fuzzing.subjects:build", [str(subjects.root), str(seed_traces or "")])],
            root / "build" / "_harness",
            timeout=600,
            stubs=stubs,
        )
        if result.rc != 0 or result.exception:
            raise RuntimeError(
                f"building the fuzz subjects failed (rc {result.rc}):\n{result.exception or ''}"
                f"\n{result.stderr[-3000:]}"
            )
        (subjects.root / "done").write_text("")
    workspace = Workspace(root, subjects, stubs, {})
    for kind in active_kinds(subjects):
        for variant in kind.variants:
            workspace.baselines[(kind.name, variant.label)] = _baseline(workspace, kind, variant)
    return workspace


def active_kinds(subjects: Subjects, names: Iterable[str] | None = None) -> list[Kind]:
    wanted = set(names) if names is not None else None
    return [k for k in KINDS if k.needs(subjects) and (wanted is None or k.name in wanted)]


def _baseline(workspace: Workspace, kind: Kind, variant: Variant) -> dict:
    case = workspace.root / "cases" / f"{kind.name}-{variant.label}-baseline"
    remove_case(case)
    kind.copy(workspace.subjects, case)
    result = run_child(
        variant.steps(workspace.subjects, case),
        case / "_harness",
        timeout=kind.timeout * 3,
        stubs=_stubs(workspace, kind),
    )
    try:
        if result.rc != 0 or failure_of(result):
            raise RuntimeError(
                f"{kind.name} ({variant.label}) baseline: rc {result.rc}, "
                f"{failure_of(result)}\n{result.stderr[-2000:]}"
            )
        return variant.summary(case, result)
    finally:
        remove_case(case)


def _stubs(workspace: Workspace, kind: Kind) -> dict[str, Callable]:
    return {target: stub for target, stub in workspace.stubs.items() if target not in kind.unstubbed}


def case_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), index])


def run_case(workspace: Workspace, kind: Kind, index: int, seed: int, keep: bool = False) -> Verdict:
    """Case ``index`` of ``kind`` in the sweep seeded ``seed``: its variant and mutation come from its rng."""
    rng = case_rng(seed, kind.name, index)
    variant = kind.variants[int(rng.integers(len(kind.variants)))]
    return _run(workspace, kind, variant, lambda case: kind.mutate(case, rng), index, keep)


def run_scenario(
    workspace: Workspace,
    kind_name: str,
    mutate: Callable[[Path], Mutation],
    variant: str | None = None,
    keep: bool = False,
) -> Verdict:
    """One hand-written case: ``mutate(case_folder)`` changes the copied subject of ``kind_name``."""
    kind = next(k for k in KINDS if k.name == kind_name)
    chosen = next(v for v in kind.variants if variant is None or v.label == variant)
    return _run(workspace, kind, chosen, mutate, -1, keep)


def _run(
    workspace: Workspace,
    kind: Kind,
    variant: Variant,
    mutate: Callable[[Path], Mutation],
    index: int,
    keep: bool,
) -> Verdict:
    case = workspace.root / "cases" / f"{kind.name}-{index}"
    remove_case(case)
    kind.copy(workspace.subjects, case)
    mutation = mutate(case)
    described = f"[{variant.label}] {mutation_text(mutation, case)}"
    result = run_child(
        variant.steps(workspace.subjects, case),
        case / "_harness",
        timeout=kind.timeout,
        drop_dac=mutation.drop_dac,
        stubs=_stubs(workspace, kind),
    )
    outcome, reason = "failure", failure_of(result)
    if reason is None:
        if result.rc == 2:
            reason = judge_error(result, mutation.target, case)
            outcome = "exit2" if reason is None else "failure"
        else:
            try:
                summary = variant.summary(case, result)
                baseline = workspace.baselines[(kind.name, variant.label)]
                if (mutation.harmless or variant.exact) and summary != baseline:
                    why = "a harmless mutation" if mutation.harmless else "a mutation the reader let through"
                    raise Invalid(f"{why} changed the result: {_difference(summary, baseline)}")
                outcome = "exit0"
            except Invalid as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001  (an unreadable output is a failed case, not a harness crash)
                reason = f"exit 0 but the output does not read back: {type(exc).__name__}: {exc}"
    if outcome != "failure":
        problem = check_outputs(variant.outputs(case), skip=mutation.target)
        if problem:
            outcome, reason = "failure", problem
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    verdict = Verdict(
        kind.name,
        index,
        outcome,
        reason or (error_lines[-1] if error_lines else ""),
        described,
        result.seconds,
        {"case": str(case), "stderr_tail": result.stderr[-1500:], "exception": result.exception},
    )
    if not (keep and outcome == "failure"):
        remove_case(case)
    return verdict


def _difference(a: dict, b: dict) -> str:
    keys = [k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    return "; ".join(f"{k}: {str(a.get(k))[:80]} != {str(b.get(k))[:80]}" for k in keys[:3])


def sweep(
    workspace: Workspace,
    cases_per_kind: int,
    seed: int = 0,
    kinds: Iterable[str] | None = None,
    keep_failures: bool = False,
    on_case: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    verdicts = []
    for kind in active_kinds(workspace.subjects, kinds):
        for index in range(cases_per_kind):
            verdict = run_case(workspace, kind, index, seed, keep=keep_failures)
            verdicts.append(verdict)
            if on_case is not None:
                on_case(verdict)
    return verdicts


_COLUMNS = ("cases", "exit0", "exit2", "failures", "known", "seconds")


def table(verdicts: list[Verdict]) -> list[dict]:
    """One row per kind: cases, exit 0, exit 2, failures (of which known, tools/fuzzing/known.py), seconds."""
    rows: dict[str, dict] = {}
    for v in verdicts:
        row = rows.setdefault(v.kind, {"kind": v.kind, **dict.fromkeys(_COLUMNS, 0)})
        row["cases"] += 1
        row["failures" if v.outcome == "failure" else v.outcome] += 1
        row["known"] += known_issue(v) is not None
        row["seconds"] += v.seconds
    return list(rows.values())


def format_table(rows: list[dict]) -> str:
    total = {"kind": "total", **{k: sum(r[k] for r in rows) for k in _COLUMNS}}
    lines = [
        "| kind | reads | cases | exit 0 | exit 2 | failures | of which known | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    reads = {k.name: k.reads for k in KINDS}
    for r in [*rows, total]:
        lines.append(
            f"| {r['kind']} | {reads.get(r['kind'], '')} | {r['cases']} | {r['exit0']} | {r['exit2']} | "
            f"{r['failures']} | {r['known']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def cleanup(workspace: Workspace) -> None:
    remove_case(workspace.root)
