"""Read pickled data files without running code from them.

``pickle.load`` calls whatever global a file names (``os.system`` included), so a crafted ``lfw.bin`` or
CIFAR batch would execute code the moment it is opened. Every pickle the project reads goes through
``safe_load``: its unpickler resolves only the globals the data formats need and refuses the rest.
Imports nothing else of nas_core but the error type, so any package may use it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from nas_core.errors import NasError

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
