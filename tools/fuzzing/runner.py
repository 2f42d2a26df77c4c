"""Run one fuzz case: a command's ``main([...])`` in a child process with a deadline, then judge it.

A child isolates what a mutated input may do to the process: a hang (killed at the deadline), an
allocation blow-up (the child's address space is capped), a crash in native code, a permission change
(root drops its DAC override there, so a chmod 000 file is unreadable). Children are forked from a fork
server (``multiprocessing``'s "forkserver"): a fresh single-threaded process that imported the commands
once, so each child starts warm and inherits no thread or lock of the caller (a pytest session's tqdm
monitor, torch's OpenMP team, TensorBoard writers: forking such a process can deadlock the child).

Verdicts: ``exit0`` (the output is complete and well-formed, and equals the unmutated result when the
mutation was harmless), ``exit2`` (stderr is exactly one ``error:`` line naming the mutated file or its
folder: no traceback, no warning, no progress bar residue), else ``failure`` with the reason.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.fuzzing.mutations import Mutation

HARNESS = "_harness"  # per-case folder for the child's stdout, stderr and verdict; never checked as output
MEMORY_HEADROOM = 4 << 30  # address space a child may add to what the warm parent already maps
_TEMP_NAME = re.compile(r"^\..+\.tmp$")  # nas_core.io / RecordWriter temporary names


@dataclass
class Step:
    """One command line: ``target`` is "module:function" (a CLI main), ``argv`` its arguments."""

    target: str
    argv: list[str]


@dataclass
class ChildResult:
    rc: int | None  # the last step's exit code (None: no step finished)
    exception: str | None  # a traceback that escaped a main
    stdout: str
    stderr: str
    signal: int | None = None  # the child died of a signal
    timed_out: bool = False
    seconds: float = 0.0


@dataclass
class Verdict:
    kind: str
    index: int
    outcome: str  # "exit0", "exit2" or "failure"
    reason: str
    mutation: str
    seconds: float
    detail: dict = field(default_factory=dict)


class Invalid(Exception):
    """An exit-0 result that is not complete and well-formed."""


# --- the child ------------------------------------------------------------------------------------


def _drop_dac_override() -> None:
    """Root keeps its uid but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: mode bits then apply to it."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << 1) | (1 << 2)) & 0xFFFFFFFF
    data[0].effective &= keep
    data[0].permitted &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _one_thread() -> None:
    """Cases are tiny: one thread each for torch and OpenCV, set before any op (a child forked from a
    process whose OpenMP team ran would hang on its first parallel op; the fork server never runs one)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)


def resolve(target: str) -> Callable:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _child(steps: list[Step], harness: Path, drop_dac: bool, stubs: dict[str, Callable]) -> None:
    """Runs in the child; never returns (os._exit)."""
    code = 0
    try:
        out = os.open(harness / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(harness / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        limit = _vm_size() + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        _one_thread()
        for target, stub in stubs.items():
            module, name = target.split(":")
            setattr(importlib.import_module(module), name, stub)
        if drop_dac and os.geteuid() == 0:
            _drop_dac_override()
        result: dict[str, Any] = {"rc": None, "exception": None}
        try:
            for step in steps:
                result["rc"] = resolve(step.target)(list(step.argv))
                if result["rc"] != 0:
                    break
        except BaseException:  # noqa: BLE001  (what the harness exists to catch: anything escaping main)
            result["exception"] = traceback.format_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        (harness / "verdict.json").write_text(json.dumps(result, default=str))
    except BaseException:  # noqa: BLE001
        code = 3
        try:
            (harness / "child-error.txt").write_text(traceback.format_exc())
        except BaseException:  # noqa: BLE001
            pass
    os._exit(code)


_SERVER = multiprocessing.get_context("forkserver")


def preload(modules: list[str]) -> None:
    """Modules the fork server imports once before it forks the first child (no effect once it runs)."""
    _SERVER.set_forkserver_preload(modules)


def run_child(
    steps: list[Step],
    harness: Path,
    *,
    timeout: float,
    drop_dac: bool = False,
    stubs: dict[str, Callable] | None = None,
) -> ChildResult:
    """Run ``steps`` in a child of the fork server; wait at most ``timeout`` seconds (then SIGKILL).
    ``stubs`` ("module:name" -> a module-level function) replace functions in the child only."""
    harness.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    child = _SERVER.Process(target=_child, args=(steps, harness, drop_dac, stubs or {}), daemon=True)
    child.start()
    child.join(timeout)
    timed_out = child.is_alive()
    if timed_out:
        child.kill()
        child.join()
    seconds = time.perf_counter() - started
    died = -child.exitcode if child.exitcode is not None and child.exitcode < 0 and not timed_out else None
    child.close()
    verdict_path = harness / "verdict.json"
    verdict = (
        json.loads(verdict_path.read_text()) if verdict_path.is_file() else {"rc": None, "exception": None}
    )
    if not verdict_path.is_file() and (harness / "child-error.txt").is_file():
        verdict["exception"] = "harness: " + (harness / "child-error.txt").read_text()

    def read(name: str) -> str:
        return (harness / name).read_text(errors="replace") if (harness / name).is_file() else ""

    return ChildResult(
        verdict["rc"], verdict["exception"], read("stdout"), read("stderr"), died, timed_out, seconds
    )


# --- judging ----------------------------------------------------------------------------------------


def names_target(line: str, target: Path, root: Path) -> bool:
    """The error line names the mutated path; or a folder holding it (up to ``root``) as a whole path, not
    as the prefix of another file's path; or the file by its name beside a sibling's full path (an error
    about two files that disagree, e.g. "<landmarks file>: expected the names of ijbc_face_tid_mid.txt")."""
    if str(target) in line:
        return True
    if (
        re.search(r"(?<![\w.-])" + re.escape(target.name) + r"(?![\w.-])", line)
        and str(target.parent) in line
    ):
        return True
    folder = target.parent
    while True:
        if re.search(re.escape(str(folder)) + r"(?![\w/.-])", line):
            return True
        if folder == root or folder == folder.parent:
            return False
        folder = folder.parent


def judge_error(result: ChildResult, target: Path, root: Path) -> str | None:
    """None when stderr is exactly one ``error:`` line naming the target (no progress bar residue, no
    warning, no other line before it); else why not."""
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if "Traceback (most recent call last)" in result.stderr:
        return "a traceback on stderr"
    if len(errors) != 1:
        return f"{len(errors)} 'error:' lines on stderr (expected 1)"
    if len(lines) != 1:
        other = next(line for line in lines if line != errors[0])
        return f"{len(lines)} lines on stderr, expected the error line alone; also: {other[:120]!r}"
    if not names_target(errors[0], target, root):
        return f"the error does not name {target}: {errors[0][:200]!r}"
    return None


def temp_files(folder: Path) -> list[Path]:
    """Temporary names an atomic write would leave if it had been interrupted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath).name == HARNESS:
            dirnames.clear()
            continue
        found += [Path(dirpath) / n for n in filenames + dirnames if _TEMP_NAME.match(n)]
    return found


def check_output_file(path: Path) -> str | None:
    """None when a file a command wrote is complete by its format; else what is wrong."""
    suffix = path.suffix
    try:
        if suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".jsonl":
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError:
                        return f"{path}: line {number} is not JSON"
        elif suffix == ".pt":
            import torch

            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "model" not in ckpt:
                return f"{path}: not a checkpoint dict"
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    data[key]
        elif suffix == ".png":
            data = path.read_bytes()
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")):
                return f"{path}: not a complete PNG"
    except Exception as exc:  # noqa: BLE001  (any reader error means the file is not complete)
        return f"{path}: {type(exc).__name__}: {str(exc)[:120]}"
    return None


def check_outputs(folders: list[Path], skip: Path) -> str | None:
    """Every file under ``folders`` (but the mutated ``skip``) complete; no temporary file left."""
    for folder in folders:
        if not folder.exists():
            continue
        left = temp_files(folder)
        if left:
            return f"temporary file left: {left[0]}"
        for dirpath, dirnames, filenames in os.walk(folder):
            here = Path(dirpath)
            if here.name == HARNESS or here == skip or skip in here.parents:
                dirnames.clear()
                continue
            for name in filenames:
                path = here / name
                if path != skip:
                    problem = check_output_file(path)
                    if problem:
                        return f"half-written output: {problem}"
    return None


def restore_permissions(folder: Path) -> None:
    """Undo chmod 000 mutations so the case folder can be removed."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
    if folder.exists():
        folder.chmod(0o755)


def remove_case(folder: Path) -> None:
    if folder.exists():
        restore_permissions(folder)
        shutil.rmtree(folder, ignore_errors=True)


def failure_of(result: ChildResult) -> str | None:
    """The reason a child run is a failure before its outputs are even looked at."""
    if result.timed_out:
        return f"hang: no exit within {result.seconds:.0f} s"
    if result.signal is not None:
        return f"died of signal {signal.Signals(result.signal).name}"
    if result.exception is not None:
        last = [line for line in result.exception.strip().splitlines() if line.strip()]
        return f"exception escaped main: {last[-1][:200] if last else '?'}"
    if result.rc not in (0, 2):
        return f"exit code {result.rc} (expected 0 or 2)"
    return None


def mutation_text(mutation: Mutation | None, root: Path) -> str:
    if mutation is None:
        return "none"
    try:
        where = mutation.target.relative_to(root)
    except ValueError:
        where = mutation.target
    return f"{mutation.name} {where}: {mutation.detail}"
