"""The one user-facing error type of nas_core and the one place a CLI turns it into exit code 2."""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable


class NasError(Exception):
    """Bad input the user can fix (unknown name, missing file, malformed genotype).

    The message reads ``<file or thing>: <what was expected>`` and is printed as one line.
    Packages that build on nas_core subclass it so one ``except`` covers all of them.
    """


def run_cli(body: Callable[[], int], *, hold_native_output: bool = False) -> int:
    """Run a CLI body; user errors become one ``error: ...`` line on stderr and exit code 2.

    What libraries say on their own while the body runs is held back until it ends: Python warnings and,
    with ``hold_native_output``, what native code writes straight to file descriptor 2 (libjpeg's "Premature
    end of JPEG file", onnxruntime's log). A run that ends in a user error prints its one line, with the
    first thing a native library reported folded into it; a run that succeeds shows what was held at its
    end. Commands that decode images or run onnxruntime hold native output; long training and search jobs
    do not (a native diagnostic of a job that dies hours in must reach the terminal at once).
    """
    failure: BaseException | None = None
    with _NativeStderr(hold_native_output) as native, warnings.catch_warnings(record=True) as caught:
        try:
            code = body()
        except NasError as exc:
            failure = exc
        except KeyboardInterrupt:
            code = 130
            if speaks():
                print("error: interrupted", file=sys.stderr)
        except BaseException as exc:  # noqa: BLE001  (a bug: re-raised below, after what was held back)
            failure = exc
    if isinstance(failure, NasError):
        # One line whatever the message holds: a reason quoted from a library may span several.
        message = re.sub(r"\s*[\r\n]+\s*", " ", str(failure).strip())
        said = next((line.strip() for line in native.text.splitlines() if line.strip()), "")
        if speaks():  # under torchrun every rank fails alike: the job says it once (ARCHITECTURE §8)
            print(f"error: {message}" + (f" [a library reported: {said[:120]}]" if said else ""), file=sys.stderr)
        return 2
    sys.stderr.write(native.text)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if failure is not None:
        raise failure
    return code


def speaks() -> bool:
    """Whether this process prints a job's one error line: always, except under torchrun on a rank other than 0
    (torchrun sets RANK and WORLD_SIZE for every process, ARCHITECTURE §8)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


class _NativeStderr:
    """Holds what native code writes to file descriptor 2 while a command runs (``text`` after the block);
    Python's ``sys.stderr`` keeps writing to where fd 2 went before, so progress bars still draw."""

    def __init__(self, active: bool) -> None:
        self.text = ""
        self.active = active
        self._held = self._saved = self._python = None

    def __enter__(self) -> _NativeStderr:
        if not self.active:
            return self
        try:
            sys.stderr.flush()
            replace = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # a captured stream (pytest): fd 2 is not its file
            replace = False
        try:
            self._held = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            if replace:
                self._python = sys.stderr
                sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(self._saved), "w"), encoding=sys.stderr.encoding,
                                              errors="backslashreplace", line_buffering=True)
            os.dup2(self._held.fileno(), 2)
        except OSError:  # no fd 2 to hold (a daemon): nothing is held
            self._restore()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._saved is not None:
            self._held.seek(0)
            self.text = self._held.read().decode(errors="replace")
        self._restore()

    def _restore(self) -> None:
        if self._python is not None:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr, self._python = self._python, None
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
        if self._held is not None:
            self._held.close()
            self._held = None
