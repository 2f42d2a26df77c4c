"""Every option of every console script, read from the parser its command module builds (``build_parser()``,
ARCHITECTURE §2 "cli/"), and the hostile values its declaration calls for.

An option's role comes from the declaration alone: a switch (no value), declared choices, the value type
(``int``, ``positive_int``, ``float``, ``positive_float``, comma-separated ints), a metavar (``N``, ``D,D,...``,
``{fp32,fp16,int8}``, ``RUN``, ``FILE``), the destination's name for paths (``--output``, ``--data``, ``pack``)
and the help's first words where those say "folder" or name a file. ``ROLE_OVERRIDES`` holds the few a
declaration leaves open.
"""

from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_NUMBER_TYPES = {"int": "int", "positive_int": "int", "float": "float", "positive_float": "float",
                 "_report_every": "int"}
_NUMBER_METAVARS = {"N", "MS", "T", "K|auto"}
_FOLDER_METAVARS = {"RUN", "OUT", "PACK", "OUT|RUN"}
_FILE_METAVARS = {"FILE", "FILE.html", "CKPT", "MODEL.onnx", "BIN", "A", "B"}
_OUTPUT_DESTS = {"output", "out", "features_out", "idx"}
_PATH_DESTS = _OUTPUT_DESTS | {
    "data", "data_root", "images", "photos", "image_folder", "pack", "run", "folder", "resume", "calibration",
    "genotype", "model", "checkpoint", "weights", "init", "check_bin", "replay", "features_in", "landmarks",
    "gallery", "a", "b", "rec",
}
_FILE_WORDS = re.compile(r"\bfile\b|checkpoint|\.(npz|json|bin|onnx|pt|pth|ckpt|rec|txt|html)\b|\bA\b|photo\b")
# Text options whose values are names from a list the help gives (a registry or a fixed set, not argparse choices).
_NAMED = {"dataset", "head", "format", "arch", "detector", "protocol", "device", "executor"}
# What a declaration leaves open: (command, destination) -> role.
ROLE_OVERRIDES = {
    ("facerec-gallery enroll", "gallery"): "out_folder",  # a new gallery, or one to add to
    ("facerec-gallery remove", "gallery"): "in_folder",  # changed in place
    ("facerec-embed", "gallery"): "in_file",  # an .npz of facerec-embed --output
    ("facerec-data make-bin", "out"): "out_file",  # the .bin to write
    ("facerec-eval", "output"): "out_file",
    ("facerec-embed", "output"): "out_file",
    ("facerec-embed", "landmarks"): "in_file",  # a landmarks .txt
    ("facerec-eval", "features_in"): "in_file",  # an .npz of --features-out
    ("facerec-data index", "idx"): "out_file",  # the .idx to write
}
ROLES = ("int", "float", "number", "list", "choice", "name", "text", "in_file", "in_folder", "out_file",
         "out_folder", "switch")


def scripts() -> dict[str, str]:
    """pyproject.toml [project.scripts]: console script -> "module:main"."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@dataclass(frozen=True)
class Option:
    command: str  # "facerec-data pack": the script and its subcommand
    flag: str  # "--min-face"; a positional's destination ("photos")
    dest: str
    role: str
    positional: bool
    choices: tuple[str, ...] | None
    default: Any
    many: bool  # nargs "+" (a positional of several paths)
    switch_flags: tuple[str, ...] = ()  # a switch's spellings ("--flip", "--no-flip")

    @property
    def script(self) -> str:
        return self.command.split(" ")[0]

    @property
    def subcommand(self) -> list[str]:
        return self.command.split(" ")[1:]


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple, argparse.ArgumentParser]:
    """(subcommand path, parser) for the parser and every subcommand below it."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, sub in action.choices.items():
            yield from parsers(sub, (*path, name))


def build_parser(script: str) -> argparse.ArgumentParser:
    return importlib.import_module(scripts()[script].split(":")[0]).build_parser()


def options(script: str) -> list[Option]:
    """Every option and positional of ``script`` and of its subcommands (help and hidden aliases left out)."""
    found = []
    for path, parser in parsers(build_parser(script)):
        command = " ".join((script, *path))
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            positional = not action.option_strings
            flag = action.dest if positional else max(action.option_strings, key=len)
            if action.nargs == 0:
                flag = action.option_strings[0]
            role = ROLE_OVERRIDES.get((command, action.dest)) or role_of(action)
            choices = tuple(action.choices) if action.choices else _metavar_choices(action)
            found.append(Option(command, flag, action.dest, role, positional, choices, action.default,
                                action.nargs == "+", tuple(action.option_strings) if role == "switch" else ()))
    return found


def all_options() -> list[Option]:
    return [option for script in scripts() for option in options(script)]


def _metavar_choices(action: argparse.Action) -> tuple[str, ...] | None:
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar.startswith("{") and metavar.endswith("}"):
        return tuple(metavar[1:-1].split(","))
    return None


def role_of(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "switch"
    if action.choices or _metavar_choices(action):
        return "choice"
    type_name = getattr(action.type, "__name__", None)
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if type_name in _NUMBER_TYPES:
        return _NUMBER_TYPES[type_name]
    if type_name == "comma-separated ints" or "," in metavar or metavar == "NAMES" or "comma-separated" in (
            action.help or ""):
        return "list"
    if metavar in _NUMBER_METAVARS or _is_number(action.default):
        return "number"
    if action.dest in _PATH_DESTS or type_name == "Path":
        return _path_role(action, metavar)
    return "name" if action.dest in _NAMED else "text"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _path_role(action: argparse.Action, metavar: str) -> str:
    side = "out" if action.dest in _OUTPUT_DESTS else "in"
    head = (action.help or "").split(":")[0].split(";")[0]
    if metavar in _FOLDER_METAVARS:
        kind = "folder"
    elif metavar in _FILE_METAVARS:
        kind = "file"
    elif "folder" in head or "directory" in head:
        kind = "folder"
    else:
        kind = "file" if _FILE_WORDS.search(head) else "folder"
    return f"{side}_{kind}"


@dataclass(frozen=True)
class Hostile:
    """One hostile value: ``value`` as typed, or, for a path made in the case folder, ``made`` (its kind).
    ``valid``: False when no command may accept it (exit 0 is a failure); None when it may be a valid value."""

    kind: str
    value: str | None = None
    made: str | None = None
    valid: bool | None = False


_NUMBER_VALUES = (Hostile("zero", "0", valid=None), Hostile("minus-one", "-1", valid=None), Hostile("nan", "nan"),
                  Hostile("inf", "inf"), Hostile("1e999", "1e999"), Hostile("empty", ""),
                  Hostile("text", "abc"))
_PATH_VALUES = {
    "in_file": ("fifo", "directory", "devnull", "unreadable", "empty"),
    "in_folder": ("file", "fifo", "devnull", "unreadable_folder", "empty"),
    "out_file": ("directory", "fifo", "devnull", "under_file", "empty"),
    "out_folder": ("file", "fifo", "devnull", "under_file", "empty"),
}
# Output paths a user may well mean: writing to /dev/null discards the result.
_MAYBE_VALID = {("out_file", "devnull")}


def hostile_values(option: Option) -> list[Hostile]:
    """The hostile values of ``option``'s role (none for a switch: it takes no value)."""
    role = option.role
    if role in ("int", "float", "number"):
        return list(_NUMBER_VALUES)
    if role == "list":
        return [Hostile("empty", ""), Hostile("comma", ",")]
    if role in ("choice", "name"):
        return [Hostile("unknown-choice", "no-such-choice"), Hostile("empty", "")]
    if role == "text":
        return [Hostile("empty", "", valid=None)]
    if role in _PATH_VALUES:
        return [Hostile(kind, made=kind, valid=None if (role, kind) in _MAYBE_VALID else False)
                for kind in _PATH_VALUES[role]]
    return []
