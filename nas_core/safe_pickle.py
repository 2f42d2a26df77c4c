"""Read pickled data files without running code from them.

``pickle.load`` calls whatever global a file names (``os.system`` included), so a crafted ``lfw.bin`` or
CIFAR batch would execute code the moment it is opened. Every pickle the project reads goes through
``safe_load``: its unpickler resolves only the globals the data formats need and refuses the rest. Every
torch file (checkpoints, resume states, published weights) goes through ``load_weights_only``:
``torch.load(weights_only=True)`` with one message in our words when it refuses or cannot read a file.
Imports nothing else of nas_core but the error type, so any package may use it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from nas_core.errors import NasError
from nas_core.io import file_problem

# What the formats we read actually reference:
# - InsightFace .bin packs: lists of bytes and bools (no global in Python 2 pickles); written by
#   Python 3 at protocol 2, bytes become ``_codecs.encode(str, "latin1")``; packs holding uint8 arrays
#   need numpy's array reconstruction.
# - CIFAR-10/100 python batches: a dict of numpy arrays, lists, bytes (numpy 1 names ``numpy.core``,
#   numpy 2 ``numpy._core``; protocol 5 arrays come through ``_frombuffer``).
_ALLOWED_GLOBALS = frozenset({
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "frozenset"),
    ("builtins", "set"),
    ("builtins", "slice"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS``; any other global is an UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name} (data files may not run code)")


def safe_loads(data: bytes, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` with ``RestrictedUnpickler`` (``encoding="bytes"`` for Python 2 pickles)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def safe_load(path: str | Path, expected: str, *, encoding: str = "ASCII", error: type[NasError] = NasError) -> Any:
    """Unpickle the file at ``path`` safely. Anything unreadable, truncated, malformed or naming a
    forbidden global raises ``error`` (a NasError subclass) ``<path>: expected <expected> (<why>)``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, encoding=encoding).load()
    except FileNotFoundError:
        raise error(f"{path}: expected {expected}; file not found") from None
    except OSError as exc:
        raise error(f"{path}: expected {expected} ({exc.strerror})") from None
    except pickle.UnpicklingError as exc:
        raise error(f"{path}: expected {expected} ({exc})") from None
    except Exception as exc:  # noqa: BLE001  (malformed pickles raise anything from EOFError to MemoryError)
        raise error(f"{path}: expected {expected} ({type(exc).__name__} while unpickling)") from None


# --- torch files ----------------------------------------------------------------------------------------

# Modules a torch.save file legitimately names (tensors, storages, state-dict containers); any other global
# in a file that torch.load(weights_only=True) refused is code the file wanted run.
_TORCH_FILE_MODULES = ("torch", "collections", "builtins", "_codecs", "numpy", "__builtin__", "copy_reg", "copyreg")
_PICKLE_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                   "STRING"}


def load_weights_only(path: str | Path, expected: str, *, error: type[NasError] = NasError,
                      map_location: Any = "cpu", safe_globals: list | None = None) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is ``error`` "<path>: expected <expected> (<why>)"
    with the reason in our words (the file is empty, a damaged torch.save archive, a pickle naming code that
    was refused, not a torch file), never torch's advice text. torch's warnings about the file (pickle
    protocol, legacy format) are the file's to explain, not the user's to read: they are not shown."""
    import warnings

    import torch

    path = Path(path)
    problem = file_problem(path)  # torch.load on a FIFO would block, on a device never end
    if problem is not None:
        raise error(f"{path}: expected {expected} ({problem})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if safe_globals:
                with torch.serialization.safe_globals(safe_globals):
                    return torch.load(path, map_location=map_location, weights_only=True)
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise error(f"{path}: expected {expected} (file not found)") from None
    except IsADirectoryError:
        raise error(f"{path}: expected {expected} (it is a folder)") from None
    except OSError as exc:
        raise error(f"{path}: expected {expected} ({exc.strerror or type(exc).__name__})") from None
    except Exception:  # noqa: BLE001  (damaged files raise anything from EOFError to RuntimeError)
        raise error(f"{path}: expected {expected} ({why_not_a_torch_file(path)})") from None


def why_not_a_torch_file(path: Path) -> str:
    """Why ``torch.load(weights_only=True)`` could not read ``path``, from the file itself."""
    import zipfile

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # a zip's first local header, there even when the end is cut
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if size == 0:
        return "the file is empty"
    if is_zip:
        refused = _zip_refused_globals(path) if zipfile.is_zipfile(path) else []
        if refused:
            return f"a pickle with executable content ({', '.join(refused[:3])}) was refused; nothing in it was run"
        return "a damaged torch.save archive: truncated or modified after it was saved"
    names, pickles = _pickle_globals(path)
    refused = sorted({n for n in names if not n.startswith(_TORCH_FILE_MODULES)})
    if refused:
        return f"a pickle with executable content ({', '.join(refused[:3])}) was refused; nothing in it was run"
    if pickles >= 3:  # the legacy torch.save layout: magic number, protocol, system info, then the object
        return "a damaged legacy torch.save file: truncated or modified after it was saved"
    if pickles:
        return "a plain pickle, not a file torch.save wrote"
    return "not a file torch.save wrote (neither its zip archive nor a pickle)"


def _zip_refused_globals(path: Path) -> list[str]:
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001  (a damaged archive)
        return []


def _pickle_globals(path: Path, limit: int = 1 << 20) -> tuple[set[str], int]:
    """Globals named by the pickles at the start of ``path`` (a static scan: nothing is imported or run),
    and how many complete pickles were read."""
    import pickletools

    names: set[str] = set()
    pickles = 0
    with path.open("rb") as f:
        while f.tell() < limit:
            strings: list[str] = []
            try:
                for opcode, arg, _ in pickletools.genops(f):
                    if opcode.name in _PICKLE_STRINGS and isinstance(arg, str | bytes):
                        strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                    elif opcode.name == "GLOBAL" and isinstance(arg, str):
                        names.add(arg.replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.add(f"{strings[-2]}.{strings[-1]}")
            except Exception:  # noqa: BLE001  (the end of the pickles: raw storage bytes, or damage)
                break
            pickles += 1
    return names, pickles
