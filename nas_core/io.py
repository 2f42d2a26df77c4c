"""Never write half a file: write to a temporary name in the same folder, fsync, then rename."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from nas_core import faults
from nas_core.errors import NasError

# A full disk or a folder the user may not write to is the user's to fix: one line naming the file.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename it into place.

    Any OS error on the way (a full disk, a read-only folder, a parent that is a file, a target that is a
    folder) is a NasError naming ``path``; the temporary file is removed and the previous file stays as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        faults.in_write(path)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = None if isinstance(exc, NasError) else _os_error(exc)
        if cause is not None:
            raise write_error(path, cause) from None
        raise


def output_file(path: str | Path) -> Path:
    """Check, before any work, that ``path`` can be written as a file (its folder may not exist yet): a
    target that is a folder, an ancestor that is a file, or a folder this user may not write to is the
    NasError the write would raise, so a command fails before it computes anything and writes nothing."""
    path = Path(path)
    if path.is_dir():
        raise write_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise write_error(path, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise write_error(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    return path


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: torch.save turns a failed write into a RuntimeError raised while the
    OSError unwinds (its __context__)."""
    for _ in range(4):
        if exc is None or isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _file_in_the_way(path: Path) -> Path | None:
    """The ancestor of ``path`` that exists but is not a folder (so nothing can be created under it)."""
    for folder in path.parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def write_error(path: Path, exc: OSError) -> NasError:
    """The one-line error of a failed write of ``path``, in the user's terms."""
    unchanged = "the previous file, if any, is unchanged"
    if exc.errno in _NO_SPACE:
        return NasError(f"{path}: expected free space on the disk of {path.parent} ({exc.strerror}); {unchanged}")
    if exc.errno in _NOT_WRITABLE:
        return NasError(f"{path}: expected a folder this user can write to ({exc.strerror}); {unchanged}")
    if exc.errno == errno.EISDIR or path.is_dir():
        return NasError(f"{path}: expected a file name to write; it is a folder")
    in_the_way = _file_in_the_way(path)
    if in_the_way is not None:
        return NasError(f"{path}: expected {in_the_way} to be a folder; it is a file")
    return NasError(f"{path}: expected a file this user can write ({exc.strerror or type(exc).__name__}); "
                    f"{unchanged}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def special_kind(mode: int) -> str:
    """What a path that is not a regular file is, in the user's words ("a FIFO (named pipe)", "a folder", ...)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a readable regular file ("file not found", "it is a FIFO (named pipe)", "permission
    denied"), found with stat, never by opening it: a FIFO or a device would block or never end. None: it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISREG(mode):
        return f"it is {special_kind(mode)}"
    return None if os.access(path, os.R_OK) else "permission denied"


def read_json_object(path: str | Path, expected: str = "a JSON object") -> dict[str, Any]:
    """Read a JSON object; a missing, unreadable or malformed file (or a FIFO, a device) is a user error naming
    ``expected``."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise NasError(f"{path}: expected {expected}; {problem}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise NasError(f"{path}: expected {expected} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise NasError(f"{path}: expected {expected} in JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise NasError(f"{path}: expected {expected} (a JSON object)")
    return data


def output_folder(path: str | Path, resumable_file: str) -> Path:
    """A fresh output folder: refuse to mix a new run into an old one (use --resume for that)."""
    path = Path(path)
    if (path / resumable_file).exists():
        raise NasError(f"{path}: expected a new output folder; it holds {resumable_file} from an earlier run "
                       "(continue it with --resume or choose another --output)")
    path.mkdir(parents=True, exist_ok=True)
    return path
