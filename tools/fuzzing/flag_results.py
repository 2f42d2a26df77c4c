"""The flag fuzzer's verdicts as a JSON document (bench/results/flag_fuzz.json: no machine path, the case folder
is ``<case>``, the inputs ``<subjects>`` and ``<runs>``) and the table bench/fuzz_report.py --flags prints from it
(README "Reliability" shows that table; tests/test_flag_fuzz.py checks they agree)."""

from __future__ import annotations

import re

from tools.fuzzing.flag_sweep import FlagVerdict

_COUNTS = ("cases", "exit0", "exit2", "failures")


def cause(reason: str) -> str:
    """A failure's cause, its reason without the case's detail: what the failures are grouped by."""
    if reason.startswith("exception escaped main"):
        kind = re.match(r"exception escaped main: ([\w.]+)", reason)
        return f"exception escaped main ({kind[1] if kind else '?'})"
    if reason.startswith("hang"):
        return "hang (no exit before the deadline)"
    for prefix in ("the error names the value, not the flag", "the error names neither the flag"):
        if reason.startswith(prefix):
            return prefix + ("" if "value, not" in prefix else " nor its value")
    if reason.startswith("exit 0:"):
        return reason.split(" (")[0]
    return reason.split(":")[0]


def document(verdicts: list[FlagVerdict], *, command: str, date: str, seconds: float) -> dict:
    rows: dict[str, dict] = {}
    commands: dict[str, dict] = {}
    causes: dict[str, int] = {}
    for v in verdicts:
        for table, key in ((rows, v.case.kind), (commands, v.case.command + (" (resume)" if v.case.resume else ""))):
            row = table.setdefault(key, dict.fromkeys(_COUNTS, 0))
            row["cases"] += 1
            row["failures" if v.outcome == "failure" else v.outcome] += 1
        if v.outcome == "failure":
            causes[cause(v.reason)] = causes.get(cause(v.reason), 0) + 1
    return {
        "command": command,
        "date": date,
        "seconds": round(seconds),
        "cases": len(verdicts),
        "commands": len({v.case.command for v in verdicts}),
        "options": len({(v.case.command, v.case.flag) for v in verdicts if not v.case.resume}),
        "kinds": rows,
        "per_command": commands,
        "causes": dict(sorted(causes.items(), key=lambda item: -item[1])),
        "failures": [failure_entry(v) for v in verdicts if v.outcome == "failure"],
    }


def failure_entry(v: FlagVerdict) -> dict:
    return {"command": v.case.command, "flag": v.case.flag, "kind": v.case.kind, "value": v.value,
            "resume": v.case.resume, "rc": v.rc, "cause": cause(v.reason), "reason": v.reason[:300],
            "argv": v.detail.get("argv"), "stderr_tail": (v.detail.get("stderr_tail") or "")[-300:]}


def table(doc: dict) -> str:
    """The counts per kind of value, then the totals and the failures' causes."""
    lines = ["| value | cases | exit 0 | exit 2 | failures |", "|---|---:|---:|---:|---:|"]
    for kind, row in doc["kinds"].items():
        lines.append(f"| {kind} | {row['cases']} | {row['exit0']} | {row['exit2']} | {row['failures']} |")
    total = {k: sum(row[k] for row in doc["kinds"].values()) for k in _COUNTS}
    lines.append(f"| total | {total['cases']} | {total['exit0']} | {total['exit2']} | {total['failures']} |")
    lines.append("")
    lines.append(f"{doc['cases']} cases ({len(doc['kinds'])} kinds of value) over {doc['options']} options of "
                 f"{doc['commands']} commands and subcommands; {total['failures']} failures")
    for name, count in doc["causes"].items():
        lines.append(f"- {count}: {name}")
    return "\n".join(lines)


def failure_lines(doc: dict) -> list[str]:
    return [f"FAILURE: {f['command']}{' (resume)' if f['resume'] else ''} {f['flag']} {f['kind']} = {f['value']}"
            f"\n    -> {f['reason']}" for f in doc["failures"]]
