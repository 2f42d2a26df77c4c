"""One writer per run folder: RUN/.facenas.lock, held by the process writing there.

The lock is an exclusive ``flock`` on the file, which the kernel drops the moment its holder dies, so a
killed run never leaves a folder stuck; the file names the holder (pid, host, command) for the message a
second process prints. Where ``flock`` is not supported (some network file systems) the holder's pid is
checked instead. The file is removed when the run ends. Forked children (DataLoader workers) close their
copy of the lock's descriptor, so a killed run's lingering workers do not keep its folder locked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nas_core.errors import NasError

LOCK_NAME = ".facenas.lock"
_held: set[int] = set()  # lock descriptors of this process


def _close_in_child() -> None:
    for fd in _held:
        os.close(fd)  # the parent still holds the flock: it ends only when every copy is closed
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


@contextmanager
def run_lock(folder: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold ``folder``'s lock (making the folder) for the block; a NasError if another live process holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, command or Path(sys.argv[0]).name)
    except OSError as exc:
        raise NasError(f"{path}: expected a folder this user can write to ({exc.strerror})") from None
    _held.add(fd)
    try:
        yield folder
    finally:
        Path(path).unlink(missing_ok=True)  # before the lock goes: a waiting process then finds no file
        _held.discard(fd)
        os.close(fd)


def _acquire(path: Path, command: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _try_flock(fd, path):
                # The holder we waited on may have removed the file after we opened it: lock the file that is there.
                if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                    _write_holder(fd, command)
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _try_flock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        _refuse(path, _read_holder(fd))
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    holder = _read_holder(fd)  # no flock here: a holder is live if its pid runs on this host
    if holder.get("host") == socket.gethostname() and holder.get("pid") != os.getpid() and _alive(holder.get("pid")):
        _refuse(path, holder)
    return True


def _refuse(path: Path, holder: dict) -> None:
    who = f"{holder.get('command', 'another process')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
    raise NasError(f"{path.parent}: expected no other process writing into this folder; {who} holds {path} "
                   "(wait for it or stop it; the lock goes with the process)")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, command: str) -> None:
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
