"""Command-line flags generated from dataclass fields, so a setting has one definition: its type, default and
help live on the field and every command that exposes it gets the same flag (no torch; ARCHITECTURE §2).

A field becomes ``--field-name``. Its ``metadata`` says how:

    help      the help text (required: a field without one is not a flag)
    flag      another flag name (``"--batch-size"``)
    choices   allowed values
    metavar   the value's name in ``--help``
    positive  True: an int/float must be > 0
    minimum   an int/float must be >= this
    maximum   an int/float must be <= this; "cpus": the CPUs this process may use (thread counts)
    names     True: a str is a comma-separated list of names, at least one, none empty (``--val-bins a,b``)
    path      a str names an input "file" (regular, readable: never a FIFO or a device), a "folder", a "path"
              (either), or an "output" folder (absent or a folder) (nas_core.command)
    required  True: the flag must be given (a field without a default)
    cli       False: never a flag (set in code only)

Types: ``int``, ``float``, ``str``, ``bool`` (``--x/--no-x``), ``X | None`` (default None: "not given") and
``tuple[int, ...]`` / ``tuple[float, ...]`` (comma-separated; at least one value, none empty). A value that breaks
its field's constraints is refused while the flags are parsed, in one line ``--flag VALUE: what was expected``
(nas_core.command.CommandParser, exit code 2). ``dataclass_from_args`` builds the dataclass back from the parsed
namespace, keeping the class defaults for fields that are not flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from nas_core.command import PATH_KINDS, cpu_count
from nas_core.values import SEED_MAX

__all__ = ["add_dataclass_args", "cpu_threads", "dataclass_from_args", "dataclass_overrides", "flag_fields",
           "name_list", "positive_int", "positive_float", "seed_flag", "setting"]


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its default and, in the metadata, its help text and the other keys above."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def positive_int(text: str) -> int:
    return _number(int, positive=True)(text)


def positive_float(text: str) -> float:
    return _number(float, positive=True)(text)


def _number(kind: type, positive: bool = False, minimum: float | None = None, maximum: Any = None):
    """A parser of one int/float flag value within its declared range (finite; ``maximum`` "cpus": the CPUs)."""
    noun = "an integer" if kind is int else "a number"
    lower = 1 if positive and kind is int else minimum

    def parse(text: str):
        top = cpu_count() if maximum == "cpus" else maximum
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            value = None
        ok = value is not None and value == value and abs(value) != float("inf")
        ok = ok and not (positive and not value > 0) and (lower is None or value >= lower)
        if not (ok and (top is None or value <= top)):
            raise argparse.ArgumentTypeError(f"expected {_range_text(noun, positive, lower, top)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _range_text(noun: str, positive: bool, lower: float | None, top: float | None) -> str:
    if positive and lower in (None, 1):
        noun = noun.replace("an integer", "a positive integer").replace("a number", "a positive number")
        lower = None
    if lower is not None and top is not None:
        return f"{noun} from {lower:g} to {top:g}"
    if lower is not None:
        return f"{noun} >= {lower:g}"
    return f"{noun} <= {top:g}" if top is not None else noun


def _tuple_of(kind: type, item):
    def parse(text: str) -> tuple:
        parts = [part.strip() for part in text.split(",")]
        if not any(parts) or not all(parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of one or more "
                                             f"{'integers' if kind is int else kind.__name__ + 's'}, none empty")
        return tuple(item(part) for part in parts)

    parse.__name__ = f"comma-separated {kind.__name__}s"
    return parse


def cpu_threads(text: str) -> int:
    """A thread count: 1 to the CPUs this process may use."""
    return _number(int, positive=True, maximum="cpus")(text)


def seed_flag(text: str) -> int:
    """A seed: 0 to 2**63 - 1 (what numpy and torch take)."""
    return _number(int, minimum=0, maximum=SEED_MAX)(text)


def name_list(text: str) -> str:
    """A comma-separated list of names (``--val-bins lfw,cfp_fp``): at least one, none empty; kept as text."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts) or not all(parts):
        raise argparse.ArgumentTypeError("expected a comma-separated list of one or more names, none empty")
    return ",".join(parts)


def _value_type(hint: type, meta: Any):
    """The argparse type of one value of a field: its kind and the constraints its metadata declares."""
    if hint is str:
        if meta.get("path"):
            return PATH_KINDS[meta["path"]]
        return name_list if meta.get("names") else str
    return _number(hint, bool(meta.get("positive")), meta.get("minimum"), meta.get("maximum"))


def _resolve(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are flags: those with help text and not ``cli=False``."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help") and f.metadata.get("cli", True)]


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def add_dataclass_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                       include: typing.Iterable[str] | None = None, exclude: typing.Iterable[str] = (),
                       defaults: dict[str, Any] | None = None, help_suffix: dict[str, str] | None = None) -> list[str]:
    """Add a flag for each help-carrying field of the dataclass ``cls`` (``include``/``exclude`` by field name;
    ``defaults`` replaces a field's default on this command only, e.g. None for "the preset's"). Returns the
    field names added, for ``dataclass_overrides``."""
    hints = _resolve(cls)
    wanted = set(include) if include is not None else None
    skipped = set(exclude)
    defaults = defaults or {}
    help_suffix = help_suffix or {}
    added = []
    for f in flag_fields(cls):
        if (wanted is not None and f.name not in wanted) or f.name in skipped:
            continue
        hint, optional = _strip_optional(hints[f.name])
        default = defaults.get(f.name, _default(f))
        meta = f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if meta.get("required"):
            kwargs["required"] = True
        text = meta["help"] + help_suffix.get(f.name, "")
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            kwargs["type"] = _tuple_of(item, _value_type(item, meta))
            kwargs["metavar"] = meta.get("metavar", "A,B,...")
        elif hint in (int, float, str):
            kwargs["type"] = _value_type(hint, meta)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {hint!r}")
        if "choices" in meta:
            kwargs["choices"] = tuple(meta["choices"])
        if "metavar" in meta and "metavar" not in kwargs:
            kwargs["metavar"] = meta["metavar"]
        if default is not None and hint is not bool and "(default" not in text:
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            text += f" (default: {shown})"
        kwargs["help"] = text.replace("%", "%%")
        parser.add_argument(flag_name(f), **kwargs)
        added.append(f.name)
    return added


def dataclass_overrides(args: argparse.Namespace, names: typing.Iterable[str]) -> dict[str, Any]:
    """``{field: value}`` for the flags ``names`` that were given (value not None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """An instance of ``cls`` from the flags ``add_dataclass_args`` added (missing or None: the class default),
    with ``overrides`` on top."""
    values = dataclass_overrides(args, [f.name for f in flag_fields(cls)])
    values.update(overrides)
    return cls(**values)
