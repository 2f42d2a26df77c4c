"""Genotype(depth, width, ops, kernels): the searched architecture, with a JSON round trip.

``ops[i]`` is "sep" (depthwise k×k + pointwise 1x1) or "conv" (plain k×k); ``kernels[i]`` is 3 or 5.
The authors' traces write ops as 0 (sep) / 1 (conv); both spellings are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas_core.errors import NasError

OPS = ("sep", "conv")
KERNELS = (3, 5)


@dataclass(frozen=True)
class Genotype:
    depth: int
    width: int
    ops: tuple[str, ...]
    kernels: tuple[int, ...]

    def __post_init__(self) -> None:
        # Normalise lists to tuples so genotypes hash and compare by value.
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "kernels", tuple(self.kernels))
        where = "genotype"
        if not isinstance(self.depth, int) or self.depth < 1:
            raise NasError(f"{where}: expected depth to be a positive integer, got {self.depth!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise NasError(f"{where}: expected width to be a positive integer, got {self.width!r}")
        if len(self.ops) != self.depth:
            raise NasError(f"{where}: expected {self.depth} ops (one per layer), got {len(self.ops)}")
        if len(self.kernels) != self.depth:
            raise NasError(f"{where}: expected {self.depth} kernels (one per layer), got {len(self.kernels)}")
        # Compared by type first: an op read from a file may be a list or dict, which cannot be hashed.
        bad_ops = [o for o in self.ops if not isinstance(o, str) or o not in OPS]
        if bad_ops:
            raise NasError(f"{where}: expected ops in {OPS}, got {_listed(bad_ops)}")
        bad_k = [k for k in self.kernels if not isinstance(k, int) or isinstance(k, bool) or k not in KERNELS]
        if bad_k:
            raise NasError(f"{where}: expected kernels in {KERNELS}, got {_listed(bad_k)}")

    @classmethod
    def uniform(cls, depth: int, width: int, op: str = "sep", kernel: int = 3) -> Genotype:
        """The macro-search shape: every layer the same op and kernel."""
        return cls(depth, width, (op,) * depth, (kernel,) * depth)

    def with_width(self, width: int) -> Genotype:
        return replace(self, width=width)

    def with_layer(self, index: int, *, op: str | None = None, kernel: int | None = None) -> Genotype:
        ops, kernels = list(self.ops), list(self.kernels)
        if op is not None:
            ops[index] = op
        if kernel is not None:
            kernels[index] = kernel
        return replace(self, ops=tuple(ops), kernels=tuple(kernels))

    def key(self) -> str:
        """Compact, stable text form, e.g. ``d10-w64-ssss...-3333...``: used for seeds and look-ups."""
        return f"d{self.depth}-w{self.width}-{''.join(o[0] for o in self.ops)}-{''.join(map(str, self.kernels))}"

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "width": self.width, "ops": list(self.ops), "kernels": list(self.kernels)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "genotype") -> Genotype:
        if isinstance(data, dict) and "genotype" in data and isinstance(data["genotype"], dict):
            data = data["genotype"]  # accept a whole result.json / checkpoint config
        if not isinstance(data, dict):
            raise NasError(f"{where}: expected an object with depth, width, ops, kernels")
        missing = [k for k in ("depth", "width", "ops", "kernels") if k not in data]
        if missing:
            raise NasError(f"{where}: expected keys depth, width, ops, kernels; missing {', '.join(missing)}")
        ops = data["ops"]
        kernels = data["kernels"]
        if not isinstance(ops, list | tuple) or not isinstance(kernels, list | tuple):
            raise NasError(f"{where}: expected ops and kernels to be lists")
        ops = [OPS[o] if isinstance(o, int) and not isinstance(o, bool) and o in (0, 1) else o for o in ops]
        try:
            depth, width = _integer(data["depth"], "depth"), _integer(data["width"], "width")
            return cls(depth, width, tuple(ops), tuple(_integer(k, "kernels") for k in kernels))
        except ValueError as exc:
            raise NasError(f"{where}: expected integer depth, width and kernels ({exc})") from None
        except NasError as exc:
            raise NasError(str(exc).replace("genotype", where, 1)) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, where: str = "genotype") -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NasError(f"{where}: expected JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        path = Path(path)
        if not path.is_file():
            raise NasError(f"{path}: expected a genotype JSON file (result.json); file not found")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise NasError(f"{path}: expected a genotype JSON file (result.json) ({reason})") from None
        return cls.from_json(text, where=str(path))

    def __str__(self) -> str:
        return self.key()


def _integer(value: Any, what: str) -> int:
    """An integer read from JSON: an int, or a float holding one (64.0); never a bool, string or 1.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{what}: {json.dumps(value, default=str)[:40]}")


def _listed(values: list) -> str:
    return ", ".join(json.dumps(v, default=str)[:40] for v in values[:5])
