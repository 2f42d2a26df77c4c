"""The flag fuzzer's cases: every hostile value (tools/fuzzing/flag_values.py) of every option of the commands in
tools/fuzzing/flag_commands.py BASES, and every resumable command's run continued with one flag changed to
another valid value; a seeded sample of them for the default test suite."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tools.fuzzing import flag_values
from tools.fuzzing.flag_commands import BASES, RESUMES
from tools.fuzzing.flag_values import Option


@dataclass(frozen=True)
class FlagCase:
    command: str
    flag: str
    kind: str  # the hostile value's kind ("nan", "fifo", ...), or "resume-changed"
    value: str | None  # as typed; None for a path made in the case folder
    made: str | None = None
    valid: bool | None = False
    resume: bool = False

    @property
    def key(self) -> str:
        return f"{self.command} {self.flag} {self.kind}" + (" resume" if self.resume else "")


# --- the cases ------------------------------------------------------------------------------------------

# Flags a resume may change: where and how a run executes, or how far it goes this time, never what it computes.
RUN_INDEPENDENT = {"--device", "--progress", "--no-progress", "--workers", "--threads", "--parallel", "--executor",
                   "--ray-address", "--max-trials", "--max-trainings", "--checkpoint-every", "--cache", "--no-cache",
                   "--cache-on-device", "--no-cache-on-device"}
# Not changed on a resume: the run folder itself, and --workers (a case's child is a daemonic process, which
# cannot start data loader workers: a harness limit, not the command's).
_NOT_CHANGED = {"--resume", "--output", "--workers"}
_NAME_CHANGES = {"device": "auto", "head": "arcface", "dataset": "mnist", "arch": "iresnet18", "protocol": "lfw"}


def option_of(command: str, flag: str) -> Option:
    return options_by_flag()[(command, flag)]


_OPTIONS: dict[tuple[str, str], Option] = {}


def options_by_flag() -> dict[tuple[str, str], Option]:
    if not _OPTIONS:
        _OPTIONS.update({(o.command, o.flag): o for o in flag_values.all_options()})
    return _OPTIONS


def cases(commands: Iterable[str] | None = None) -> list[FlagCase]:
    """Every hostile value of every option of the commands in BASES, then every resume with a changed flag."""
    wanted = set(commands) if commands is not None else None
    found = []
    for option in options_by_flag().values():
        if option.command not in BASES or (wanted is not None and option.command not in wanted):
            continue
        for hostile in flag_values.hostile_values(option):
            found.append(FlagCase(option.command, option.flag, hostile.kind, hostile.value, hostile.made,
                                  hostile.valid))
    for command in RESUMES:
        if wanted is None or command in wanted:
            found += resume_cases(command)
    return found


def resume_cases(command: str) -> list[FlagCase]:
    """The run of RESUMES[command] continued with one flag changed to another valid value."""
    run_argv = _run_argv(command)
    found = []
    for option in (o for (c, _), o in options_by_flag().items() if c == command):
        if option.positional or option.flag in _NOT_CHANGED or option.role.startswith("out_"):
            continue
        changed = changed_value(option, run_argv)
        if changed is None:
            continue
        made = "copy" if option.role.startswith("in_") else None
        flag = changed if option.role == "switch" else option.flag
        found.append(FlagCase(command, flag, "resume-changed", changed, made,
                              None if flag in RUN_INDEPENDENT else False, resume=True))
    return found


def _run_argv(command: str) -> list[str]:
    """The flags the run that RESUMES[command] continues was made with."""
    from tools.fuzzing.flag_commands import _FACES, _STUDY, _TRAIN
    from tools.fuzzing.subjects import SEARCH_ARGS

    return {"nas-search": SEARCH_ARGS, "facerec-search": [*_FACES, "--max-trials", "2", "--data", "{S}/pack"],
            "facerec-train": _TRAIN, "facerec-study ranking": ["--data", "{S}/pack", *_STUDY]}[command]


def changed_value(option: Option, run_argv: list[str]) -> str | None:
    """Another valid value of ``option`` than the run's (for a switch: the spelling that flips it); None when
    the declaration suggests none."""
    role = option.role
    if role == "switch":
        given = [f for f in option.switch_flags if f in run_argv]
        on = not given[-1].startswith("--no-") if given else bool(option.default)
        if option.switch_flags == (option.flag,) and option.flag.startswith("--no-"):
            on = not given  # store_false (--no-detect): on until given
        wanted = [f for f in option.switch_flags if f.startswith("--no-") == on]
        return wanted[0] if wanted else None
    old = run_argv[run_argv.index(option.flag) + 1] if option.flag in run_argv else option.default
    if role in ("int", "float", "number"):
        try:
            number = float(old)
        except (TypeError, ValueError):  # no default: a preset's (E_min 10, W_res 2, ...); 3 is none of them
            return "3"
        return str(int(number) + 1) if role == "int" else repr(number * 2 if number else 0.1)
    if role == "list":
        if isinstance(old, (list, tuple)):
            old = ",".join(map(str, old))
        return f"{old},{int(old.split(',')[-1]) + 1}" if old and old.split(",")[-1].isdigit() else "1,2"
    if role == "choice":
        return next((c for c in option.choices if c != old), None)
    if role == "name":
        return _NAME_CHANGES.get(option.dest) if _NAME_CHANGES.get(option.dest) != old else None
    if role in ("in_file", "in_folder"):
        return old if isinstance(old, str) else None
    return None


def sample(all_cases: list[FlagCase], per_command: int, seed: int) -> list[FlagCase]:
    """``per_command`` cases of every command (resumes counted apart), drawn with a generator seeded by
    (seed, command)."""
    groups: dict[str, list[FlagCase]] = {}
    for case in all_cases:
        groups.setdefault(case.command + (" resume" if case.resume else ""), []).append(case)
    chosen = []
    for name, group in groups.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        picks = rng.choice(len(group), size=min(per_command, len(group)), replace=False)
        chosen += [group[i] for i in sorted(picks)]
    return chosen
