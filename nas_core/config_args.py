"""Command-line flags generated from dataclass fields, so a setting has one definition: its type, default and
help live on the field and every command that exposes it gets the same flag (no torch; ARCHITECTURE §2).

A field becomes ``--field-name``. Its ``metadata`` says how:

    help      the help text (required: a field without one is not a flag)
    flag      another flag name (``"--batch-size"``)
    choices   allowed values
    metavar   the value's name in ``--help``
    positive  True: an int/float must be > 0 (``argparse`` error: one line, exit 2)
    required  True: the flag must be given (a field without a default)
    cli       False: never a flag (set in code only)

Types: ``int``, ``float``, ``str``, ``bool`` (``--x/--no-x``), ``X | None`` (default None: "not given") and
``tuple[int, ...]`` / ``tuple[float, ...]`` (comma-separated). ``dataclass_from_args`` builds the dataclass
back from the parsed namespace, keeping the class defaults for fields that are not flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["add_dataclass_args", "dataclass_from_args", "dataclass_overrides", "flag_fields", "positive_int",
           "positive_float", "setting"]


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its default and, in the metadata, its help text and the other keys above."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _number(kind: type, positive: bool):
    if positive:
        return positive_int if kind is int else positive_float

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _tuple_of(kind: type, positive: bool):
    item = _number(kind, positive) if kind in (int, float) else kind

    def parse(text: str) -> tuple:
        return tuple(item(part) for part in text.split(",") if part.strip())

    parse.__name__ = f"comma-separated {kind.__name__}s"
    return parse


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
        positive = bool(meta.get("positive"))
        kwargs: dict[str, Any] = {"dest": f.name, "default": default}
        if meta.get("required"):
            kwargs["required"] = True
        text = meta["help"] + help_suffix.get(f.name, "")
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            kwargs["type"] = _tuple_of(item, positive)
            kwargs["metavar"] = meta.get("metavar", "A,B,...")
        elif hint in (int, float):
            kwargs["type"] = _number(hint, positive)
        elif hint is str:
            kwargs["type"] = str
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
