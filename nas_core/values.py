"""Numbers read from files users hand us (journals, settings, traces, landmarks), checked where they are parsed.

A JSON or text file can hold any number: an integer of 400 digits (which no float holds), 1e308, NaN, a
bool where a count belongs. Each reader checks every number it takes for its type and for a finite range
that makes sense for what the number is, with these two functions, so a bad value is a one-line error
naming the field, never an OverflowError deep in a plot or a search running for 10**12 epochs.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any

from nas_core.errors import NasError

# A bound for counts that have no natural one (parameters, seconds): far beyond any real run, far below
# where float arithmetic on them loses meaning.
HUGE = 10**15
SEED_MAX = 2**63 - 1


def shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except ValueError:  # an integer too long for json.dumps
        text = f"an integer of {len(str(value))} digits"
    return text if len(text) <= 40 else text[:37] + "..."


def is_number(value: Any, *, integer: bool = False, lo: float | None = None, hi: float | None = None) -> bool:
    """``value`` is a JSON number (never a bool or a string), finite, an integer when asked (3 or 3.0), and
    within [lo, hi]. Integers of any length are compared exactly, never converted to float first."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float):
        if not math.isfinite(value) or (integer and not value.is_integer()):
            return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def number(value: Any, what: str, *, integer: bool = False, lo: float | None = None,
           hi: float | None = None) -> int | float:
    """``value`` when ``is_number`` holds (an int when ``integer``); else ValueError "<what>: expected ..."."""
    if not is_number(value, integer=integer, lo=lo, hi=hi):
        kind = "an integer" if integer else "a finite number"
        if lo is not None and hi is not None:
            kind += f" in [{lo:g}, {hi:g}]"
        elif lo is not None:
            kind += f" >= {lo:g}"
        elif hi is not None:
            kind += f" <= {hi:g}"
        raise ValueError(f"{what}: expected {kind}, got {shown(value)}")
    return int(value) if integer else value


def checked_fields(cls: type, values: dict[str, Any], where: str, limits: dict[str, tuple[float, float]],
                   default_limit: tuple[float, float] = (-HUGE, HUGE)) -> dict[str, Any]:
    """``values`` for the dataclass ``cls``, each checked against the type its field declares (int, float,
    bool, a tuple of ints, optionally None) and against ``limits[name]`` (numbers without an entry:
    ``default_limit``). Unknown names and wrong values are NasErrors "<where>: ..."."""
    if not isinstance(values, dict):
        raise NasError(f"{where}: expected an object of settings, got {shown(values)}")
    known = {f.name: str(f.type) for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise NasError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))}; expected some of "
                       f"{', '.join(sorted(known))}")
    checked = dict(values)
    for name, value in values.items():
        kind = known[name]
        lo, hi = limits.get(name, default_limit)
        if value is None and "None" in kind:
            continue
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind.startswith("tuple[int"):
            ok = isinstance(value, list | tuple) and 0 < len(value) <= 16 and all(
                is_number(v, integer=True, lo=lo, hi=hi) for v in value)
        elif kind.startswith(("int", "float")):
            ok = is_number(value, integer=kind.startswith("int"), lo=lo, hi=hi)
            if ok:
                checked[name] = int(value) if kind.startswith("int") else float(value)
        else:
            ok = True  # a type these files do not hold numbers of: the dataclass checks it
        if not ok:
            bounds = f" in [{lo:g}, {hi:g}]" if "int" in kind or "float" in kind else ""
            raise NasError(f"{where}: expected '{name}' of type {kind}{bounds}, got {shown(value)}")
    return checked
