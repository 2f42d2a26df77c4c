"""Run folders know what they are, and a resume is strict (ARCHITECTURE §10 "Run folders").

A search, training or study folder holds RUN/facenas-run.json: ``{"format": 1, "kind", "fingerprint",
"settings"}``, where ``kind`` is the command that made it (``facerec-search``, ``facerec-train``, ``facerec-study
ranking`` ...), ``settings`` the flags that define its results (``{"--flag": value}``: data and settings) and
``fingerprint`` a hash of them. A folder of another kind is refused, and so is one of this kind made with other
settings once it holds results (before that it is a failed start, and is marked anew). A folder made before these
files existed is recognised by the files it holds.

A resume (``--resume RUN``, or a study rerun in its folder) compares every flag given with the run's own value:
a different one is refused naming both, unless the command documents the flag as changeable on resume (where the
trials run, the progress bar ...), which is applied and logged. Dependency-free: it runs in a command's check,
before anything is created (nas_core.command).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nas_core.command import FlagError, shown_value
from nas_core.errors import NasError
from nas_core.io import atomic_write_json, read_json_object

RUN_FILE = "facenas-run.json"

# Folders made before RUN_FILE: what they are, by the file that only that kind writes.
_LEGACY = (("last.pt", "facerec-train"), ("metrics.json", "facerec-train"), ("train.log", "facerec-train"),
           ("ranking.json", "a ranking study"), ("study.log", "a ranking study"), ("settings.json", "a search"),
           ("align.jsonl", "facerec-data align"))


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings that define a run's results."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """RUN/facenas-run.json checked field by field; None when the folder has none."""
    path = Path(folder) / RUN_FILE
    if not path.exists():
        return None
    marker = read_json_object(path, "the facenas-run.json of a run folder ({format, kind, fingerprint, settings})")
    if not (isinstance(marker.get("kind"), str) and isinstance(marker.get("fingerprint"), str)
            and isinstance(marker.get("settings"), dict)):
        raise NasError(f"{path}: expected 'kind' and 'fingerprint' strings and a 'settings' object")
    return marker


def folder_kind(folder: str | Path) -> str | None:
    """What made ``folder``: its marker's kind, else the kind its files show (None: nothing recognisable)."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None:
        return marker["kind"]
    if not folder.is_dir():
        return None
    return next((kind for name, kind in _LEGACY if (folder / name).exists()), None)


def check_run_folder(folder: str | Path, kind: str, settings: dict[str, Any], *, holds_results: bool) -> None:
    """Refuse ``folder`` when it is another kind's, or this kind's with other ``settings`` while it
    ``holds_results``; the first setting that differs is named with both values."""
    folder = Path(folder)
    found = folder_kind(folder)
    if found is None:
        return
    if not _same_kind(found, kind):
        raise NasError(f"{folder}: expected a {kind} folder (new, or one of its own runs); it holds {_article(found)} "
                       f"run (choose another --output)")
    marker = read_marker(folder)
    if marker is None or not holds_results or marker["fingerprint"] == fingerprint(settings):
        return
    for flag, value in sorted(settings.items()):
        if marker["settings"].get(flag, value) != value:
            raise FlagError(flag, _shown(value), f"expected {_shown(marker['settings'][flag])} as in the {kind} run "
                                                 f"in {folder} (other data or settings: choose another --output)")
    raise NasError(f"{folder}: expected a {kind} run of these data and settings (fingerprint {fingerprint(settings)}); "
                   f"it holds one of fingerprint {marker['fingerprint']} (choose another --output)")


def mark_run_folder(folder: str | Path, kind: str, settings: dict[str, Any]) -> None:
    """Write RUN/facenas-run.json (the folder exists; atomic)."""
    atomic_write_json(Path(folder) / RUN_FILE, {"format": 1, "kind": kind, "fingerprint": fingerprint(settings),
                                                "settings": settings})


def strict_resume(given: dict[str, Any], saved: dict[str, Any], where: str | Path,
                  changeable: Iterable[str] = ()) -> list[str]:
    """Compare the flags ``given`` on a resume (``{"--flag": value}``, as the run stores them) with the run's
    ``saved`` ones: a different value is a FlagError naming both; a flag in ``changeable`` is returned as
    "--flag VALUE" (applied to this invocation, for the log)."""
    changeable = set(changeable)
    applied = []
    for flag, value in given.items():
        if flag in changeable:
            applied.append(f"{flag} {shown_value(_shown(value))}")
        elif flag in saved and saved[flag] != value:
            raise FlagError(flag, _shown(value), f"expected {_shown(saved[flag])} as in the run it resumes ({where}); "
                                                 "a changed setting is a new run: give it another --output")
    return applied


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _same_kind(found: str, kind: str) -> bool:
    """A folder recognised by its files only says "a search" or "a ranking study": any command of that kind."""
    legacy = {"a search": ("facerec-search", "nas-search"),
              "a ranking study": ("facerec-study ranking", "nas-study ranking", "nas-study random")}
    return found == kind or kind in legacy.get(found, ())


def _article(kind: str) -> str:
    return kind if kind.startswith(("a ", "an ")) else f"a {kind}"
