"""Seeded mutations of the files users hand the commands: bytes, text lines, JSON values, checkpoint
entries. Each returns a ``Mutation`` saying what changed, so a failing case can be reproduced by hand.

``harmless`` marks a mutation that cannot change what a correct reader computes (whitespace between
JSON tokens, a CRLF line ending a reader splits away, a file the command never opens); a case that
exits 0 after one must reproduce the unmutated result exactly. ``drop_dac`` asks the runner to drop
root's permission-override capabilities in the child, so a chmod 000 file is unreadable there too.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Mutation:
    name: str
    target: Path  # the file (or folder) that was changed
    detail: str
    harmless: bool = False
    drop_dac: bool = False

    def describe(self) -> str:
        return f"{self.name} {self.target.name}: {self.detail}"


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


# --- whole-file mutations ---------------------------------------------------------------------------


def truncate(path: Path, rng) -> Mutation:
    data = path.read_bytes()
    cut = int(rng.integers(len(data))) if data else 0
    path.write_bytes(data[:cut])
    return Mutation("truncate", path, f"cut to {cut} of {len(data)} bytes")


def flip_bytes(path: Path, rng) -> Mutation:
    data = bytearray(path.read_bytes())
    if not data:
        return empty(path, rng)
    where = sorted({int(rng.integers(len(data))) for _ in range(int(rng.integers(1, 5)))})
    for i in where:
        data[i] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return Mutation("flip", path, f"bytes at {where} xor-ed")


def zero_span(path: Path, rng) -> Mutation:
    data = bytearray(path.read_bytes())
    if not data:
        return empty(path, rng)
    start = int(rng.integers(len(data)))
    end = min(len(data), start + int(rng.integers(1, 65)))
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))
    return Mutation("zero", path, f"bytes {start}..{end} zeroed")


def insert_bytes(path: Path, rng) -> Mutation:
    data = path.read_bytes()
    at = int(rng.integers(len(data) + 1))
    extra = rng.integers(0, 256, size=int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    path.write_bytes(data[:at] + extra + data[at:])
    return Mutation("insert", path, f"{len(extra)} random bytes inserted at {at}")


def append_garbage(path: Path, rng) -> Mutation:
    extra = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    with path.open("ab") as f:
        f.write(extra)
    return Mutation("append", path, f"{len(extra)} random bytes appended")


def empty(path: Path, rng) -> Mutation:
    path.write_bytes(b"")
    return Mutation("empty", path, "emptied")


def to_directory(path: Path, rng) -> Mutation:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.mkdir()
    return Mutation("directory", path, "replaced by an empty directory")


def unreadable(path: Path, rng) -> Mutation:
    path.chmod(0)
    return Mutation("unreadable", path, "chmod 000", drop_dac=True)


def delete(path: Path, rng) -> Mutation:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return Mutation("delete", path, "deleted")


BYTE_MUTATIONS: dict[str, Callable[[Path, Any], Mutation]] = {
    "truncate": truncate,
    "flip": flip_bytes,
    "zero": zero_span,
    "insert": insert_bytes,
    "append": append_garbage,
    "empty": empty,
    "directory": to_directory,
    "unreadable": unreadable,
    "delete": delete,
}


# --- line mutations (text formats) ----------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _line_index(lines: list, rng, skip: int = 0) -> int:
    return int(rng.integers(skip, len(lines))) if len(lines) > skip else 0


def delete_line(path: Path, rng) -> Mutation:
    lines = _lines(path)
    i = _line_index(lines, rng)
    del lines[i : i + 1]
    path.write_bytes(b"".join(lines))
    return Mutation("delete_line", path, f"line {i + 1} deleted")


def duplicate_line(path: Path, rng) -> Mutation:
    lines = _lines(path)
    i = _line_index(lines, rng)
    if lines and not lines[i].endswith(b"\n"):
        lines[i] += b"\n"
    lines[i:i] = lines[i : i + 1]
    path.write_bytes(b"".join(lines))
    return Mutation("duplicate_line", path, f"line {i + 1} duplicated")


def swap_lines(path: Path, rng) -> Mutation:
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in _lines(path)]
    i, j = _line_index(lines, rng), _line_index(lines, rng)
    if lines:
        lines[i], lines[j] = lines[j], lines[i]
    path.write_bytes(b"".join(lines))
    return Mutation("swap_lines", path, f"lines {i + 1} and {j + 1} swapped")


def blank_line(path: Path, rng) -> Mutation:
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in _lines(path)]
    i = int(rng.integers(len(lines) + 1))
    lines.insert(i, _pick(rng, [b"\n", b"  \n", b"\t\n"]))
    path.write_bytes(b"".join(lines))
    return Mutation("blank_line", path, f"blank line inserted before line {i + 1}", harmless=True)


def crlf(path: Path, rng) -> Mutation:
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return Mutation("crlf", path, "line endings made CRLF", harmless=True)


# Tokens a field may be replaced with: other types, signs, sizes, spellings of infinity, bad UTF-8.
BAD_TOKENS = [
    b"",
    b"x",
    b"-1",
    b"0",
    b"1.5",
    b"99999999999999999999999",
    b"1e999",
    b"nan",
    b"inf",
    b"-inf",
    b"0x1f",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"12 34",
    b"\x00",
    b"NaN",
    b"-0",
    b"+3",
]


def replace_field(path: Path, rng, separators: bytes = b" \t,") -> Mutation:
    """One whitespace/comma separated field of one line replaced by a bad token."""
    lines = _lines(path)
    i = _line_index(lines, rng)
    if not lines:
        return empty(path, rng)
    line = lines[i]
    spans, start = [], None
    for pos, byte in enumerate(line + b" "):
        if bytes([byte]) in separators or byte in b"\r\n":
            if start is not None:
                spans.append((start, pos))
                start = None
        elif start is None:
            start = pos
    if not spans:
        return blank_line(path, rng)
    a, b = _pick(rng, spans)
    token = _pick(rng, BAD_TOKENS)
    lines[i] = line[:a] + token + line[b:]
    path.write_bytes(b"".join(lines))
    return Mutation("field", path, f"line {i + 1} field {line[a:b][:30]!r} -> {token!r}")


LINE_MUTATIONS: dict[str, Callable[[Path, Any], Mutation]] = {
    "delete_line": delete_line,
    "duplicate_line": duplicate_line,
    "swap_lines": swap_lines,
    "blank_line": blank_line,
    "crlf": crlf,
    "field": replace_field,
}


# --- JSON mutations ---------------------------------------------------------------------------------

WRONG_VALUES: list[Any] = [
    None,
    "",
    "text",
    [],
    {},
    True,
    False,
    0,
    -1,
    1.5,
    10**12,
    -(10**12),
    math.nan,
    math.inf,
    [1, 2],
    {"a": 1},
    "3",
    2**64,
    1e308,  # finite, but no count, accuracy or duration
    10**400,  # an integer no float holds
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (the root is the empty path)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def _set(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(node, path[:-1])[path[-1]] = value
    return node


def _same_type(a: Any, b: Any) -> bool:
    return type(a) is type(b) and not (isinstance(a, float) and math.isnan(a) != math.isnan(b))


def json_wrong_value(doc: Any, rng, paths: list[tuple] | None = None) -> tuple[Any, str]:
    """Replace one node (leaf or container) with a value of another type or an out-of-range number."""
    path = _pick(rng, paths or _paths(doc))
    old = _get(doc, path)
    choices = [v for v in WRONG_VALUES if not (_same_type(v, old) and v == old)]
    value = json.loads(json.dumps(_pick(rng, choices)))  # a fresh copy
    return _set(doc, path, value), f"{_path_text(path)}: {_short(old)} -> {_short(value)}"


def json_drop(doc: Any, rng) -> tuple[Any, str]:
    """Delete one key of an object or one item of a list."""
    holders = [p for p in _paths(doc) if isinstance(_get(doc, p), dict | list) and _get(doc, p)]
    if not holders:
        return json_wrong_value(doc, rng)
    path = _pick(rng, holders)
    holder = _get(doc, path)
    key = _pick(rng, list(holder)) if isinstance(holder, dict) else int(rng.integers(len(holder)))
    del holder[key]
    return doc, f"{_path_text(path + (key,))} removed"


def json_duplicate_item(doc: Any, rng) -> tuple[Any, str]:
    lists = [p for p in _paths(doc) if isinstance(_get(doc, p), list) and _get(doc, p)]
    if not lists:
        return json_drop(doc, rng)
    path = _pick(rng, lists)
    items = _get(doc, path)
    i = int(rng.integers(len(items)))
    items.insert(i, json.loads(json.dumps(items[i])))
    return doc, f"{_path_text(path + (i,))} duplicated"


def _path_text(path: tuple) -> str:
    return "/" + "/".join(str(p) for p in path)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


JSON_MUTATIONS = {
    "json_value": json_wrong_value,
    "json_drop": json_drop,
    "json_duplicate": json_duplicate_item,
}


def mutate_json_file(path: Path, rng, name: str) -> Mutation:
    doc = json.loads(path.read_text())
    doc, detail = JSON_MUTATIONS[name](doc, rng)
    path.write_text(json.dumps(doc, indent=1))
    return Mutation(name, path, detail)


def reformat_json_file(path: Path, rng) -> Mutation:
    """Same document, other whitespace and key order: a reader must not care."""
    doc = json.loads(path.read_text())
    indent = _pick(rng, [None, 0, 4, "\t"])
    path.write_text(json.dumps(doc, indent=indent, sort_keys=True, separators=(", ", ": ")) + "\n")
    return Mutation("json_reformat", path, f"re-dumped with indent {indent!r}, keys sorted", harmless=True)


def mutate_jsonl_line(path: Path, rng, name: str) -> Mutation:
    """A JSON mutation inside one line of a JSON-lines file (the other lines untouched)."""
    lines = path.read_text().splitlines()
    numbered = [i for i, line in enumerate(lines) if line.strip()]
    i = _pick(rng, numbered)
    if name == "json_reformat":
        doc = json.loads(lines[i])
        lines[i] = json.dumps(doc, sort_keys=True, separators=(" ,", " : "))
        path.write_text("\n".join(lines) + "\n")
        return Mutation(name, path, f"line {i + 1} re-dumped, keys sorted", harmless=True)
    doc, detail = JSON_MUTATIONS[name](json.loads(lines[i]), rng)
    lines[i] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    return Mutation(name, path, f"line {i + 1} {detail}")


# --- checkpoint mutations (a torch file of the checkpoint schema) ---------------------------------


def _torch_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _torch_paths(value, prefix + (key,))
    elif isinstance(node, list):  # tuples are left whole: they cannot be changed in place
        for i, value in enumerate(node):
            out += _torch_paths(value, prefix + (i,))
    return out


def mutate_checkpoint(path: Path, rng, name: str) -> Mutation:
    """Load the checkpoint (our own file), change one entry, save it again with torch.save."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    paths = [p for p in _torch_paths(ckpt) if p]
    tensors = [p for p in paths if isinstance(_get(ckpt, p), torch.Tensor)]
    plain = [p for p in paths if not isinstance(_get(ckpt, p), torch.Tensor)]
    if name == "ckpt_drop":
        path_ = _pick(rng, [p for p in paths if len(p) <= 2])
        del _get(ckpt, path_[:-1])[path_[-1]]
        detail = f"{_path_text(path_)} removed"
    elif name == "ckpt_value":
        path_ = _pick(rng, plain + [p[:1] for p in tensors])
        value = _pick(rng, WRONG_VALUES)
        _set(ckpt, path_, value)
        detail = f"{_path_text(path_)} -> {_short(value)}"
    else:  # ckpt_tensor: wrong shape, dtype or non-finite values in one tensor
        path_ = _pick(rng, tensors)
        old = _get(ckpt, path_)
        how = _pick(rng, ["shape", "dtype", "nan", "inf", "scalar"])
        if how == "shape":
            new = torch.zeros(*old.shape, 2) if old.ndim else torch.zeros(3)
        elif how == "dtype":
            new = old.to(torch.int64) if old.is_floating_point() else old.to(torch.float64)
        elif how == "scalar":
            new = torch.tensor(7.0)
        else:
            new = torch.full_like(old, math.nan if how == "nan" else math.inf, dtype=torch.float32)
        _set(ckpt, path_, new)
        detail = (
            f"{_path_text(path_)}: {how} ({tuple(old.shape)} {old.dtype} -> {tuple(new.shape)} {new.dtype})"
        )
    torch.save(ckpt, path)
    return Mutation(name, path, detail)
