"""The one path every console script runs through (ARCHITECTURE §7 "Validate, then act").

``run_command(parser, argv, act, check=...)`` parses the flags, checks them, and only then acts:

1. parse: ``CommandParser`` turns every flag error, argparse's own included (an unknown flag, a missing value, a
   choice not offered, a type that does not parse), into one NasError ``--flag VALUE: what was expected``; the
   constraints a flag declares (nas_core.config_args: range, non-empty list, choices, path kind) are checked here;
2. check: the command's own checks of what depends on several flags or on the files they name (a resume against
   its run, a run folder's kind and fingerprint, nas_core.run_folder); no file is created, locked or written;
3. act: the job, imported lazily (torch), which may assume its flags are sound.

All of it runs inside ``nas_core.errors.run_cli``, so every violation is one ``error:`` line, exit code 2, printed
once under torchrun. Dependency-free: ``--help`` and a flag error never import torch.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas_core.errors import NasError, run_cli
from nas_core.io import file_problem, special_kind

__all__ = ["CommandParser", "FlagError", "cpu_count", "input_file", "input_folder", "input_path", "output_folder",
           "run_command", "shown_value"]


class FlagError(NasError):
    """A flag's value is not what the command expects: ``--flag VALUE: what was expected``."""

    def __init__(self, flag: str, value: Any, expected: str):
        self.flag, self.value = flag, value
        super().__init__(f"{flag} {shown_value(value)}: {expected}" if value is not None else f"{flag}: {expected}")


def shown_value(value: Any) -> str:
    """A flag value as the user typed it: bare when it reads unambiguously, else quoted; long ones cut short."""
    text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    if len(text) > 160:  # a path stays whole; a 400-digit number does not
        text = text[:40] + "..."
    return text if text and not re.search(r"[\s'\"]", text) else repr(text)


def cpu_count() -> int:
    """The CPUs this process may run on: the bound of every thread-count flag (ARCHITECTURE §7)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# -- path kinds (checked with stat, never by opening: a FIFO or a device would block or never end) -------------

def _stat(text: str, what: str) -> os.stat_result:
    try:
        return os.stat(text)
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"expected {what} (not found)") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"expected {what} ({exc.strerror})") from None


def input_file(text: str) -> str:
    """An existing, readable regular file (a FIFO, a device or a folder is refused without opening it)."""
    problem = file_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"expected a readable regular file ({problem})")
    return text


def input_folder(text: str) -> str:
    """An existing, readable folder."""
    mode = _stat(text, "an existing folder").st_mode
    if not stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"expected a folder, got {'a file' if stat.S_ISREG(mode) else special_kind(mode)}")
    if not os.access(text, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError("expected a readable folder (permission denied)")
    return text


def input_path(text: str) -> str:
    """An existing folder or regular file (e.g. ``--resume OUT`` or ``--resume OUT/last.pt``)."""
    mode = _stat(text, "an existing file or folder").st_mode
    return input_folder(text) if stat.S_ISDIR(mode) else input_file(text)


def output_folder(text: str) -> str:
    """A folder to write into: absent (made later, by the job) or a folder; never a file, nor under one."""
    path = Path(text)
    for place in (path, *path.parents):
        try:
            mode = os.stat(place).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"expected a folder to write into ({exc.strerror})") from None
        if not stat.S_ISDIR(mode):
            what = "a file" if stat.S_ISREG(mode) else special_kind(mode)
            raise argparse.ArgumentTypeError(f"expected a folder to write into, got {what}" if place == path else
                                             f"expected a folder to write into ({place} is {what})")
        break
    return text


PATH_KINDS: dict[str, Callable[[str], str]] = {"file": input_file, "folder": input_folder, "path": input_path,
                                                "output": output_folder}


# -- the parser --------------------------------------------------------------------------------------------------

_EXPECTED_TYPE = {"int": "an integer", "float": "a number"}


class CommandParser(argparse.ArgumentParser):
    """argparse with one error path: every error is a FlagError (one line, no usage), and it remembers which
    flags the command line gave (``given``: their dests), for strict resumes (nas_core.run_folder)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.given: set[str] = set()

    def parse_known_args(self, args=None, namespace=None):
        self.given = set()
        parsed, rest = super().parse_known_args(args, namespace)
        parsed.given = self.all_given()
        return parsed, rest

    def all_given(self) -> set[str]:
        """The dests given on the command line, in this parser and its subcommands."""
        given = set(self.given)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    given |= getattr(sub, "given", set()) if isinstance(sub, CommandParser) else set()
        return given

    def _get_values(self, action, arg_strings):
        if action.option_strings:
            self.given.add(action.dest)
        return super()._get_values(action, arg_strings)

    def _get_value(self, action, arg_string):
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            expected = exc.message
            if not expected.startswith("expected"):  # argparse's own: "invalid int value: 'x'"
                name = getattr(action.type, "__name__", "")
                expected = f"expected {_EXPECTED_TYPE.get(name, 'a valid ' + (name or 'value'))}"
            raise FlagError(_name(action), arg_string, expected) from None

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            raise FlagError(_name(action), value, "expected one of " + ", ".join(map(str, action.choices)))

    def error(self, message: str):
        raise NasError(_one_line(message, self.prog))


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar if isinstance(action.metavar, str) else action.dest


_ARGPARSE = (  # argparse's own messages, said in ours (ARCHITECTURE §7: "--flag VALUE: what was expected")
    (r"the following arguments are required: (.*)", lambda m, p: f"{m[1].split(', ')[0]}: expected a value "
                                                                  f"(required by {p})"),
    (r"unrecognized arguments: (\S+).*", lambda m, p: f"{m[1]}: expected a flag of {p} (see {p} --help)"),
    (r"argument (\S+): expected (.*)", lambda m, p: f"{m[1].split('/')[-1]}: expected {m[2]}"),
    (r"argument (\S+): not allowed with argument (\S+)",
     lambda m, p: f"{m[1].split('/')[-1]}: expected either {m[1].split('/')[-1]} or {m[2].split('/')[-1]}, not both"),
    (r"argument (\S+): ignored explicit argument (.*)",
     lambda m, p: f"{m[1].split('/')[-1]} {m[2].strip(chr(39))}: expected no value (a switch)"),
    (r"ambiguous option: (\S+) could match (.*)", lambda m, p: f"{m[1]}: expected one flag; it could be {m[2]}"),
)


def _one_line(message: str, prog: str) -> str:
    for pattern, say in _ARGPARSE:
        match = re.fullmatch(pattern, message.strip(), flags=re.S)
        if match:
            return say(match, prog)
    return f"{prog}: {message}"


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, act: Callable[[argparse.Namespace], int],
                *, check: Callable[[argparse.Namespace], None] | None = None, hold_native_output: bool = False) -> int:
    """Parse ``argv`` with ``parser`` (a CommandParser), run ``check`` (nothing created, locked or written), then
    ``act``; inside run_cli, so every user error is one line and exit code 2 (module docstring)."""

    def body() -> int:
        args = parser.parse_args(argv)
        if check is not None:
            check(args)
        return act(args)

    return run_cli(body, hold_native_output=hold_native_output)
