"""The flag fuzzer: every option of every console script given each hostile value its declaration calls for
(tools/fuzzing/flag_values.py) in an otherwise valid tiny command line (tools/fuzzing/flag_commands.py), and
every resumable command resumed with each of its flags changed. Each case runs in a child with a deadline
(tools/fuzzing/runner.py), in its own case folder (the child's working directory).

Verdicts, as the file fuzzer's (ARCHITECTURE §7): ``exit0`` (a value that may be valid, and every file written is
complete), ``exit2`` (stderr exactly one ``error:`` line naming the flag, and nothing written: the case folder and
the shared inputs as they were), else ``failure`` with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools.fuzzing import flag_values
from tools.fuzzing.flag_cases import FlagCase, options_by_flag
from tools.fuzzing.flag_commands import BASES, RESUMES, Base, copy_inputs, fill
from tools.fuzzing.flag_values import Option
from tools.fuzzing.runner import (
    HARNESS,
    Step,
    check_outputs,
    failure_of,
    preload,
    remove_case,
    resolve,
    run_child,
)

# Every command module and the jobs they import once their flags are parsed: the fork server imports them
# once, so a case that gets past its flags starts warm.
WARM_MODULES = (
    "tools.fuzzing.runner", "nas_core.cli.search", "nas_core.cli.train", "nas_core.cli.study", "nas_core.cli.report",
    "facerec.cli.search", "facerec.cli.train", "facerec.cli.export", "facerec.cli.eval", "facerec.cli.data",
    "facerec.cli.import_weights", "facerec.cli.embed", "facerec.cli.gallery", "facerec.cli.verify",
    "facerec.cli.report", "facerec.cli.study", "nas_core.search_run", "nas_core.classify.task", "facerec.train.job",
    "facerec.train.loop", "facerec.data.jobs", "facerec.deploy.eval_job", "facerec.deploy.embed_job",
    "facerec.deploy.import_job", "facerec.deploy.export_job", "facerec.deploy.gallery_job",
    "facerec.deploy.verify_job", "facerec.search.task", "facerec.search.study", "nas_core.classify.study",
    "nas_core.report", "facerec.report", "onnxruntime", "onnx", "sklearn.metrics", "matplotlib.pyplot",
    "torch.utils.tensorboard", "torch._dynamo", "tools.make_fixtures",
)
RESUME_TIMEOUT = 90.0  # seconds; a tiny run's resume takes 1 to 5 on a busy core
_LOCK = ".facenas.lock"


@dataclass
class FlagVerdict:
    case: FlagCase
    outcome: str  # "exit0", "exit2" or "failure"
    reason: str
    value: str  # what was typed, machine paths replaced by <case> and <subjects>
    seconds: float
    rc: int | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class FlagWorkspace:
    root: Path
    subjects: Path
    runs: Path
    inputs: dict[str, tuple]  # snapshot of the shared inputs


def in_folder(argv: list[str]) -> int:
    """Child step: run ``argv[1]`` ("module:main") on ``argv[2:]`` in the folder ``argv[0]``; argparse's exit
    (SystemExit) is its exit code, as a console script's would be."""
    os.chdir(argv[0])
    try:
        return resolve(argv[1])(argv[2:])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def prepare(root: str | Path | None = None) -> FlagWorkspace:
    """The subjects (tools/fuzzing/subjects.py) and the runs the resume cases continue, each built in a child."""
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="facenas-flags-"))
    root.mkdir(parents=True, exist_ok=True)
    preload(list(WARM_MODULES))
    subjects, runs = root / "subjects", root / "runs"
    for done, step in ((subjects / "done", Step("tools.fuzzing.subjects:build", [str(subjects), ""])),
                       (runs / "done", Step("tools.fuzzing.flag_commands:build_runs", [str(subjects), str(runs)]))):
        if done.is_file():
            continue
        result = run_child([step], root / "build" / done.parent.name / HARNESS, timeout=900)
        if result.rc != 0 or result.exception:
            raise RuntimeError(f"{step.target} failed (rc {result.rc}):\n{result.exception or ''}"
                               f"\n{result.stderr[-3000:]}")
        done.write_text("")
    return FlagWorkspace(root, subjects, runs, {**snapshot(subjects), **snapshot(runs)})


def snapshot(folder: Path) -> dict[str, tuple]:
    """path -> (kind, size, mtime, mode) of everything under ``folder`` but the harness and lock files (a lock is
    an flock, nas_core/runlock.py: taking it writes nothing)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != HARNESS]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if name == _LOCK:
                continue
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            # A folder's own size and time change with a transient entry (a lock taken and dropped, a temporary
            # file renamed away): its lasting entries are compared one by one instead.
            changes = (0, 0) if kind == stat.S_IFDIR else (info.st_size, info.st_mtime_ns)
            seen[str(path)] = (kind, *changes, stat.S_IMODE(info.st_mode))
    return seen


# --- one case -------------------------------------------------------------------------------------------


def materialize(case: FlagCase, folder: Path, source: str | None) -> str:
    """Make the hostile path of ``case`` in the case folder; returns it as typed. ``source``: the valid value it
    stands in for (an unreadable copy of it is a file or folder that is only unreadable)."""
    made = case.made
    if made == "empty":
        return ""
    path = folder / {"fifo": "a-fifo", "directory": "a-folder", "devnull": "null", "file": "a-file",
                     "under_file": "a-file/out", "unreadable": "unreadable", "unreadable_folder": "unreadable",
                     "copy": "changed-copy"}[made]
    if made == "fifo":
        os.mkfifo(path)
    elif made == "directory":
        path.mkdir()
    elif made == "devnull":
        # A null device of our own: a command that writes beside its output (a temporary name, then a rename)
        # must not reach the real /dev (the cases may run as root).
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    elif made in ("file", "under_file"):
        (folder / "a-file").write_text("not a folder\n")
    elif made in ("unreadable", "unreadable_folder", "copy"):
        _copy_or_make(Path(source) if source else None, path, folder=made == "unreadable_folder")
        if made != "copy":
            path.chmod(0)
    return str(path)


def _copy_or_make(source: Path | None, path: Path, folder: bool) -> None:
    if source is not None and source.is_dir():
        shutil.copytree(source, path, symlinks=True)
    elif source is not None and source.is_file():
        shutil.copyfile(source, path)
    elif folder:
        path.mkdir()
    else:
        path.write_bytes(b"facenas flag fuzzer\n")


def command_line(case: FlagCase, ws: FlagWorkspace, folder: Path) -> tuple[list[str], str]:
    """(argv, the value as typed) of ``case`` run in ``folder``."""
    option = options_by_flag().get((case.command, case.flag)) or _switch_option(case.command, case.flag)
    base = BASES[case.command]
    filled = [fill(t, ws.subjects, ws.runs) for t in (RESUMES[case.command][1] if case.resume else base.flags)]
    positionals = {} if case.resume else {k: fill(v, ws.subjects, ws.runs) for k, v in base.positionals.items()}
    source = _value_of(option, filled, positionals, ws, case)
    value = materialize(case, folder, source) if case.made else case.value
    if option.positional:
        positionals[option.dest] = value
    tokens = _without(filled, option)
    if option.role == "switch":
        tokens.append(case.flag)
    elif not option.positional:
        tokens.append(f"{case.flag}={value}")
    return [*option.subcommand, *positionals.values(), *tokens], value


def _switch_option(command: str, flag: str) -> Option:
    return next(o for (c, _), o in options_by_flag().items() if c == command and flag in o.switch_flags)


def _value_of(option: Option, tokens: list[str], positionals: dict, ws: FlagWorkspace, case: FlagCase) -> str | None:
    if case.resume and case.made == "copy":
        return fill(case.value, ws.subjects, ws.runs)
    if option.positional:
        return positionals.get(option.dest)
    return tokens[tokens.index(option.flag) + 1] if option.flag in tokens else None


def _without(tokens: list[str], option: Option) -> list[str]:
    """``tokens`` less every occurrence of ``option`` (and its value)."""
    spellings = set(option.switch_flags) if option.role == "switch" else {option.flag}
    kept, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in spellings:
            skip = option.role != "switch"
        else:
            kept.append(token)
    return kept


def run_case(ws: FlagWorkspace, case: FlagCase, index: int, keep: bool = False) -> FlagVerdict:
    folder = ws.root / "cases" / f"{index}"
    remove_case(folder)
    folder.mkdir(parents=True)
    base = BASES[case.command]
    if case.resume:
        copy_inputs(Base(copies={"run": RESUMES[case.command][0]}), folder, ws.subjects, ws.runs)
    else:
        copy_inputs(base, folder, ws.subjects, ws.runs)
    argv, value = command_line(case, ws, folder)
    before = snapshot(folder)
    target = flag_values.scripts()[case.command.split(" ")[0]]
    result = run_child([Step("tools.fuzzing.flag_sweep:in_folder", [str(folder), target, *argv])],
                       folder / HARNESS, timeout=RESUME_TIMEOUT if case.resume else base.timeout,
                       drop_dac=case.made in ("unreadable", "unreadable_folder"))
    outcome, reason = judge(case, result, before, ws, folder, value)
    detail = {"argv": [scrub(a, ws, folder) for a in argv], "stderr_tail": scrub(result.stderr[-1500:], ws, folder),
              "exception": scrub(result.exception or "", ws, folder) or None}
    verdict = FlagVerdict(case, outcome, scrub(reason, ws, folder), scrub(_typed(case, value), ws, folder),
                          result.seconds, result.rc, detail)
    if not (keep and outcome == "failure"):
        remove_case(folder)
    return verdict


def _typed(case: FlagCase, value: str) -> str:
    return repr(value) if case.made is None or value == "" else value


def scrub(text: str, ws: FlagWorkspace, folder: Path) -> str:
    """Machine paths as placeholders: <case> (the case folder), <subjects>, <runs>, <workspace>, <repo>, <python>
    (a warning's source file)."""
    places = ((folder, "<case>"), (ws.subjects, "<subjects>"), (ws.runs, "<runs>"), (ws.root, "<workspace>"),
              (flag_values.ROOT, "<repo>"), (sys.prefix, "<python>"), (sys.base_prefix, "<python>"))
    for path, name in places:
        text = text.replace(str(path), name)
    return text


def judge(case: FlagCase, result, before: dict, ws: FlagWorkspace, folder: Path, value: str) -> tuple[str, str]:
    """(outcome, reason) of a finished child; a failure's reason starts with its cause (``cause: detail``)."""
    inputs = _written(ws.inputs, _inputs_now(ws), "a shared input")  # after every case, whatever it did
    if inputs is not None:
        _refresh_inputs(ws)
    reason = failure_of(result)
    if reason is not None:
        return "failure", reason
    if result.rc == 2:
        problem = judge_flag_error(result.stderr, case, value)
        written = _written(before, snapshot(folder), "the case folder") or inputs
        if problem is None and written is not None:
            problem = f"exit 2 but {written}"
        return ("exit2", _error_line(result.stderr)) if problem is None else ("failure", problem)
    if inputs is not None:
        return "failure", f"exit 0 but {inputs}"
    if case.valid is False:
        what = "a resume accepted a changed setting" if case.resume else "accepted an invalid value"
        return "failure", f"exit 0: {what} (nothing refused it)"
    problem = check_outputs([folder], skip=Path(value) if value else folder / "nothing")
    return ("exit0", "") if problem is None else ("failure", f"exit 0 but {problem}")


def _inputs_now(ws: FlagWorkspace) -> dict[str, tuple]:
    return {**snapshot(ws.subjects), **snapshot(ws.runs)}


def _refresh_inputs(ws: FlagWorkspace) -> None:
    ws.inputs = _inputs_now(ws)


def _error_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith("error:")), "")


def judge_flag_error(stderr: str, case: FlagCase, value: str) -> str | None:
    """None when stderr is exactly one ``error:`` line naming the flag (a positional: its name or the value
    given); else why not, as ``cause: detail``."""
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip()]
    if "Traceback (most recent call last)" in stderr:
        return "traceback on stderr"
    if any(line.startswith("usage:") for line in lines):
        said = next((line for line in lines if ": error: " in line), lines[-1] if lines else "")
        return f"argparse's usage and message, not one error line: {said[:160]!r}"
    errors = [line for line in lines if line.startswith("error:")]
    if len(errors) != 1 or len(lines) != 1:
        other = next((line for line in lines if not line.startswith("error:")), "")
        return f"{len(lines)} lines on stderr, {len(errors)} 'error:' lines: {other[:160]!r}"
    option = options_by_flag().get((case.command, case.flag)) or _switch_option(case.command, case.flag)
    if option.role == "switch":  # either spelling names it (--no-cache: "expected --cache True")
        names = list(option.switch_flags)
    elif not option.positional:
        names = [case.flag]
    else:  # a positional is named by the path given (its own name only when that is empty: "pack", "photos")
        names = [value] if value else [option.dest] if len(option.dest) > 1 else []
    if not any(n and re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])", errors[0]) for n in names):
        if value and value in errors[0]:
            return f"the error names the value, not the flag {case.flag}: {errors[0][:200]!r}"
        return f"the error names neither the flag {case.flag} nor its value: {errors[0][:200]!r}"
    return None


def _written(before: dict, after: dict, where: str) -> str | None:
    """What changed between two snapshots, as ``cause: detail``; None when nothing did."""
    created = sorted(set(after) - set(before))
    if created:
        return f"wrote in {where}: created {created[0]}"
    changed = sorted(p for p in before if p not in after or after[p] != before[p])
    if changed:
        return f"wrote in {where}: changed or removed {changed[0]}"
    return None
