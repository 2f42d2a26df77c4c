"""Guards of every long job: atomic writes on a full disk or a read-only folder, one writer per run folder
(nas_core.runlock), and the fault-injection points the kill/resume tests use (nas_core.faults)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from nas_core.errors import NasError
from nas_core.io import atomic_write, atomic_write_text, output_file
from nas_core.runlock import LOCK_NAME, run_lock

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def read_only(folder: Path):
    """``folder`` read-only for this process: permission bits, or for root (who writes through them) a read-only
    bind mount; skips where neither works."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without mount: no way to make a read-only folder")
    try:
        if os.access(folder, os.W_OK) and _writable(folder):
            pytest.skip("the read-only bind mount is writable here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@contextmanager
def tiny_disk(folder: Path, size_kb: int):
    """A ``size_kb`` tmpfs at ``folder`` (root only; skips elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_atomic_write_into_a_read_only_folder_names_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with read_only(tmp_path):
        with pytest.raises(NasError, match=rf"^{path}: expected a folder this user can write to \("):
            atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(NasError, match=rf"^{path}: expected free space on the disk of {tmp_path} "):
        atomic_write(path, write)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("where", ["parent_is_a_file", "ancestor_is_a_file", "target_is_a_folder"])
def test_every_os_error_of_a_write_is_one_line_naming_the_file(tmp_path, where):
    # FileExistsError / NotADirectoryError / IsADirectoryError used to escape the atomic-write helper.
    blocker = tmp_path / "out"
    if where == "target_is_a_folder":
        path = blocker
        (blocker / "kept").mkdir(parents=True)
    else:
        blocker.write_text("a file")
        path = blocker / "model.pt" if where == "parent_is_a_file" else blocker / "sub" / "model.pt"
    reason = "it is a folder" if where == "target_is_a_folder" else f"expected {blocker} to be a folder; it is a file"
    for attempt in (lambda: output_file(path), lambda: atomic_write_text(path, "new")):
        with pytest.raises(NasError, match=rf"^{path}: .*{reason}") as caught:
            attempt()
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["kept", "out"] if where == "target_is_a_folder" else ["out"])


def test_a_real_full_disk(tmp_path):
    with tiny_disk(tmp_path / "disk", 64) as disk:
        atomic_write_text(disk / "small.txt", "kept")
        with pytest.raises(NasError, match="expected free space") as failure:
            atomic_write_text(disk / "small.txt", "x" * 200_000)
        assert str(failure.value).startswith(f"{disk / 'small.txt'}: ")
        assert (disk / "small.txt").read_text() == "kept" and len(list(disk.iterdir())) == 1


def test_any_other_os_error_is_one_line_with_the_systems_reason(tmp_path):
    # Every OS error on the target path is the user's to see in one line (ARCHITECTURE §7), an I/O error included.
    def write(f):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(NasError, match=rf"^{tmp_path / 'x'}: expected a file this user can write \(Input/output error\)"):
        atomic_write(tmp_path / "x", write)
    assert not list(tmp_path.iterdir())  # the temporary file went with it


# --- one writer per run folder -------------------------------------------------------------------------

def test_lock_refuses_a_second_holder_and_goes_with_the_first(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, "nas-search"):
        holder = json.loads((run / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "nas-search"
        with pytest.raises(NasError, match=rf"^{run}: expected no other process writing into this folder; "
                                           rf"nas-search \(pid {os.getpid()} on "):
            with run_lock(run):
                pass
    assert not (run / LOCK_NAME).exists()
    with run_lock(run):  # free again
        pass


def _hold_lock_then(run: Path, then: str) -> subprocess.Popen:
    code = (f"import os, sys\nfrom nas_core.runlock import run_lock\nlock = run_lock({str(run)!r}, 'holder')\n"
            f"lock.__enter__()\nprint('locked', flush=True)\n{then}\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                            text=True)


def test_a_live_process_holds_the_lock_a_killed_one_does_not(tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock_then(run, "sys.stdin.read()\nos._exit(137)")  # holds it until told, then dies (no cleanup)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(NasError, match=rf"holder \(pid {holder.pid} on "):
            with run_lock(run):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 137 and (run / LOCK_NAME).is_file()  # the killed holder left the file...
    with run_lock(run, "next"):  # ...but not the lock
        assert json.loads((run / LOCK_NAME).read_text())["command"] == "next"


def test_forked_children_do_not_keep_the_lock(tmp_path):
    """DataLoader workers are forked: a killed run's lingering workers must not keep its folder locked."""
    run = tmp_path / "run"
    holder = _hold_lock_then(run, "import time\nchild = os.fork()\nif child == 0:\n    os.write(1, b'forked\\n')\n"
                                  "    time.sleep(120)\n    os._exit(0)\nos.write(1, b'%d\\n' % child)\nos._exit(137)")
    assert holder.stdout.readline().strip() == "locked"
    # The child prints once fork() has returned in it, that is after it closed its copy of the lock.
    lines = sorted(holder.stdout.readline().strip() for _ in range(2))
    assert lines[1] == "forked"
    child = int(lines[0])
    try:
        assert holder.wait(timeout=60) == 137  # its child lives on, with its copy of the descriptor closed
        with run_lock(run):
            pass
    finally:
        os.kill(child, 9)


def test_nas_search_refuses_a_folder_another_process_writes(tmp_path, capsys):
    from nas_core.cli.search import main as search_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"dataset": "digits", "search": {}}))
    with run_lock(run, "nas-search"):
        assert search_main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run}: expected no other process writing into this folder")
    assert sorted(p.name for p in run.iterdir()) == ["settings.json"]


def test_facerec_search_refuses_a_folder_another_process_writes(tmp_path, capsys):
    from facerec.cli.search import main as face_search_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"search": {}, "options": {}}))
    with run_lock(run, "facerec-search"):
        assert face_search_main(["--resume", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run}: expected no other process writing into this folder")


# --- fault injection ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, dies_on", [("2", "b.json"), ("a.json:2", "a.json (2nd)"), ("c.json:1", None)])
def test_fail_in_write_dies_between_the_temp_file_and_the_rename(tmp_path, value, dies_on):
    code = ("import sys\nfrom nas_core.io import atomic_write_text\n"
            "for name in ('a.json', 'b.json', 'a.json'):\n"
            f"    atomic_write_text({str(tmp_path)!r} + '/' + name, name)\n    print(name, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FACENAS_FAIL_IN_WRITE": value})
    if dies_on is None:
        assert proc.returncode == 0 and proc.stdout.split() == ["a.json", "b.json", "a.json"]
        return
    assert proc.returncode == 137 and "fault injection: killed writing" in proc.stderr
    temps = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1  # written and left behind, never renamed: as a kill at that instant would
    if dies_on == "b.json":
        assert proc.stdout.split() == ["a.json"] and not (tmp_path / "b.json").exists()
    else:
        assert proc.stdout.split() == ["a.json", "b.json"] and (tmp_path / "a.json").read_text() == "a.json"
