"""Fault injection for the kill/resume tests: die at an exact point, as SIGKILL would (tests only).

    FACENAS_FAIL_AFTER_STEPS=N    after this process's N-th training step (nas_core.train, facerec.train.loop)
    FACENAS_FAIL_AFTER_TRIALS=N   after this process's N-th journal append (a finished trial)
    FACENAS_FAIL_IN_WRITE=N       in this process's N-th atomic write (nas_core.io), after its temporary
                                  file is written and fsynced, before the rename; NAME:N counts only the
                                  writes of files named NAME (e.g. last.pt:2)
    FACENAS_SIGNAL_AFTER_STEPS=N  raise SIGTERM in this process after its N-th training step (N:INT: SIGINT),
                                  to test the trainer's stop-and-save path at an exact step

A kill is ``os._exit(137)``: no cleanup, no ``finally``, no atexit, no buffered output flushed; 137 is
what a shell reports for a SIGKILLed process. Counts are per process, so a resumed run (without the
variable) runs to the end. With the variables unset each point costs one environment look-up.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

KILLED_STATUS = 137
_counts: Counter = Counter()


def _due(variable: str, counter: str) -> bool:
    """Count one event of ``counter``; True when it is the one ``variable`` names."""
    value = os.environ.get(variable)
    if not value:
        return False
    _counts[counter] += 1
    return _counts[counter] == int(value.split(":")[0])


def _die(what: str) -> None:
    # A raw write (nothing buffered is flushed) to the terminal's stderr: sys.stderr's file, which is not fd 2
    # while run_cli holds native output back (nas_core.errors).
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 2
    os.write(fd, f"fault injection: killed {what}\n".encode())
    os._exit(KILLED_STATUS)


def step() -> None:
    """A training step just finished (optimizer stepped, or a non-finite loss skipped)."""
    if _due("FACENAS_FAIL_AFTER_STEPS", "steps"):
        _die(f"after step {_counts['steps']}")
    if _due("FACENAS_SIGNAL_AFTER_STEPS", "signal steps"):
        name = os.environ["FACENAS_SIGNAL_AFTER_STEPS"].partition(":")[2] or "TERM"
        signal.raise_signal(signal.Signals["SIG" + name])  # runs the Python handler before returning


def trial() -> None:
    """A finished trial was just appended to the journal."""
    if _due("FACENAS_FAIL_AFTER_TRIALS", "trials"):
        _die(f"after trial {_counts['trials']}")


def in_write(path: Path) -> None:
    """The temporary file of an atomic write of ``path`` is complete; the rename comes next."""
    value = os.environ.get("FACENAS_FAIL_IN_WRITE")
    if not value:
        return
    name, _, _ = value.rpartition(":")
    if name and name != path.name:
        return
    _counts["writes"] += 1
    if _counts["writes"] == int(value.rpartition(":")[2]):
        _die(f"writing {path} (temporary file written, not renamed)")
