"""The tools/ and bench/ scripts that read real data find it through tools/shared_data.py: $FACENAS_SHARED_DATA,
else shared/data beside the repository, or a folder the user gives. A folder that is not there ends the script
before any work: exit code 2 and one `error:` line naming the folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tools/ is a folder of scripts, not an installed package

from tools.shared_data import ENV, shared_data, shared_data_root  # noqa: E402

# script, the shared folder it reads, how a user gives another folder (None: the first positional argument)
SCRIPTS = [
    ("tools/lfw_demo.py", "lfw_train", "--lfw"),
    ("tools/orl_demo.py", "orl_faces", "--orl"),
    ("tools/orl_chain.sh", "orl_faces", None),
    ("bench/fuzz_report.py", "seed_traces", "--seed-traces"),
    ("bench/search_value.py", "lfw_train", "--lfw"),
]


def _run(script: str, args: list[str], shared: Path, cwd: Path) -> subprocess.CompletedProcess:
    command = ["bash" if script.endswith(".sh") else sys.executable, str(ROOT / script), *args]
    if script.endswith(".py"):
        command += ["--work", str(cwd / "work")] if "--work" in (ROOT / script).read_text() else []
    env = {**os.environ, ENV: str(shared), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _assert_one_error_line(done: subprocess.CompletedProcess, folder: Path, *words: str) -> None:
    assert done.returncode == 2, done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder}: no such folder"), done.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert done.stdout == ""


@pytest.mark.parametrize("script, name, flag", SCRIPTS, ids=[s for s, _, _ in SCRIPTS])
def test_missing_shared_folder_is_one_line_exit_2(tmp_path, script, name, flag):
    shared = tmp_path / "shared"
    shared.mkdir()
    done = _run(script, [], shared, tmp_path)
    _assert_one_error_line(done, shared / name, ENV, flag or "ORL_DIR")
    assert not [*tmp_path.glob("work/*"), *tmp_path.glob("runs")]  # stopped before any work


@pytest.mark.parametrize("script, name, flag", SCRIPTS, ids=[s for s, _, _ in SCRIPTS])
def test_missing_given_folder_is_one_line_exit_2(tmp_path, script, name, flag):
    given = tmp_path / "not_here"
    done = _run(script, [flag, str(given)] if flag else [str(given)], tmp_path, tmp_path)
    _assert_one_error_line(done, given, flag or "ORL_DIR")


def test_shared_folder_from_the_environment_or_beside_the_repository(tmp_path, monkeypatch):
    (tmp_path / "orl_faces").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path))
    assert shared_data("orl_faces") == tmp_path / "orl_faces"
    assert shared_data("orl_faces", tmp_path / "orl_faces", "--orl") == tmp_path / "orl_faces"
    monkeypatch.delenv(ENV)
    assert shared_data_root() == ROOT.parent / "shared" / "data"
