"""Search settings as data (ARCHITECTURE §3, §7): Algorithm 1's settings and the paper's presets, the deployment
budgets, and the options of one invocation of a search. The search flags of nas-search, facerec-search and the
studies are generated from these fields (nas_core.config_args), so a flag has one type, default and help.

Dependency-free (the standard library and nas_core's own plain modules): a command's ``--help`` imports this
module, never torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from nas_core.command import FlagError, cpu_count
from nas_core.config_args import add_dataclass_args, dataclass_overrides
from nas_core.errors import NasError
from nas_core.genotype import KERNELS, Genotype
from nas_core.run_folder import strict_resume
from nas_core.values import HUGE, SEED_MAX, checked_fields

_BUDGETS = {"max_params": "params", "max_mflops": "MFLOPs", "max_latency_ms": "latency (ms)"}


class Costs(Protocol):
    """Where a budget check reads a candidate's costs (nas_core.cost.CostTable)."""

    def params(self, genotype: Genotype) -> int: ...

    def mflops(self, genotype: Genotype) -> float: ...

    def latency_ms(self, genotype: Genotype, threads: int = 1) -> float: ...


@dataclass(frozen=True)
class Budget:
    """Deployment budgets of a search; None: no limit. A candidate over any of them is never trained."""

    max_params: int | None = None
    max_mflops: float | None = None
    max_latency_ms: float | None = None
    latency_threads: int = 1  # onnxruntime intra-op threads of the latency measurement

    def __post_init__(self) -> None:
        for name in _BUDGETS:
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise NasError(f"budget: expected {name} to be a positive number or unset, got {value!r}")
        if not (isinstance(self.latency_threads, int) and not isinstance(self.latency_threads, bool)
                and self.latency_threads >= 1):
            raise NasError(f"budget: expected latency_threads to be a positive integer, got {self.latency_threads!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) is not None for name in _BUDGETS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, costs: Costs, genotype: Genotype) -> Verdict:
        """The candidate's costs and the budgets it breaks. Latency, the slow one, is measured only for a
        candidate within the other budgets."""
        cost: dict[str, Any] = {"params": costs.params(genotype)}
        broken = []
        if self.max_params is not None and cost["params"] > self.max_params:
            broken.append(f"params {cost['params']:,} > {self.max_params:,}")
        if self.max_mflops is not None:
            cost["mflops"] = costs.mflops(genotype)
            if cost["mflops"] > self.max_mflops:
                broken.append(f"MFLOPs {cost['mflops']:.6g} > {self.max_mflops:g}")
        if self.max_latency_ms is not None and not broken:
            cost["latency_ms"] = costs.latency_ms(genotype, self.latency_threads)
            if cost["latency_ms"] > self.max_latency_ms:
                broken.append(f"latency {cost['latency_ms']:.4g} ms > {self.max_latency_ms:g} ms "
                              f"({self.latency_threads} thread(s))")
        return Verdict(cost, broken)

    def describe(self, cost: dict[str, Any] | None = None) -> str:
        """'params ≤ 2,000,000 (found 1,234,567); ...' for a report or a log; 'none' without a budget."""
        cost = cost or {}
        parts = []
        for name, what, key, fmt in (("max_params", "params", "params", "{:,}"),
                                     ("max_mflops", "MFLOPs", "mflops", "{:.4g}"),
                                     ("max_latency_ms", "latency ms", "latency_ms", "{:.4g}")):
            limit = getattr(self, name)
            if limit is None:
                continue
            found = f" (found {fmt.format(cost[key])})" if cost.get(key) is not None else ""
            threads = f" at {self.latency_threads} thread(s)" if key == "latency_ms" else ""
            parts.append(f"{what} ≤ {fmt.format(limit)}{threads}{found}")
        return "; ".join(parts) or "none"


@dataclass
class Verdict:
    cost: dict[str, Any]
    broken: list[str] = field(default_factory=list)  # e.g. ["params 2,104,330 > 2,000,000"]

    @property
    def fits(self) -> bool:
        return not self.broken


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _flag(text: str, **meta: Any) -> dict[str, Any]:
    return {"help": text, **meta}


@dataclass
class SearchSettings:
    """Algorithm 1's settings (ARCHITECTURE §3); the defaults are the paper's (PRESETS holds its sizes). The
    fields with help text are command-line flags; the others are set in code or by a replayed trace."""

    e_min: int = field(default=10, metadata=_flag("epochs of the first trial (E_min)", positive=True))
    d_min: int = field(default=10, metadata=_flag("first depth Grow tries (D_min; IResNet blocks for faces)",
                                                  positive=True))
    d_max: int = field(default=100, metadata=_flag("largest depth Grow tries (D_max)", positive=True))
    w_min: int = field(default=16, metadata=_flag("smallest width Prune tries (W_min)", positive=True))
    w_max: int = field(default=64, metadata=_flag("width of the macro search (W_max)", positive=True))
    w_res: int = field(default=2, metadata=_flag("width step of Prune (W_res)", positive=True))
    depth_accept: float = 0.10  # accept a deeper net if acc >= best + 0.10 (percent points)
    depth_tolerance: float = 0.05  # neutral if acc >= best - 0.05
    max_strikes: int = 3  # the 3rd strike since the last accept stops a macro phase
    micro_epochs: int = field(default=2, metadata=_flag("epochs of a micro trial", positive=True))
    micro_kernels: tuple[int, ...] = (5,)
    param_slack: int = 10_000
    macro_only: bool = field(default=False, metadata=_flag("stop after Prune (as the paper did for faces)"))
    max_trials: int | None = field(default=None, metadata=_flag("stop after N trials and return the best so far",
                                                                 positive=True, metavar="N"))
    seed: int = field(default=0, metadata=_flag("run seed: every trial's seed derives from it and the trial",
                                                minimum=0, maximum=SEED_MAX))
    depth_epoch_step: int = 1  # E += 1 per depth candidate tried (reference add_epochs)
    width_epoch_step: int = 2  # E += 2 per width candidate tried (reference add_epochs_w)
    # Deployment budgets (Budget); None: no limit, and the search is the paper's. Flags: BudgetFlags.
    max_params: int | None = None
    max_mflops: float | None = None
    max_latency_ms: float | None = None  # onnxruntime CPU, batch 1, latency_threads threads
    latency_threads: int = 1

    def __post_init__(self) -> None:
        self.micro_kernels = tuple(int(k) for k in self.micro_kernels)
        problems = []
        if not 1 <= self.d_min <= self.d_max:
            problems.append(f"1 <= d_min <= d_max (got {self.d_min}, {self.d_max})")
        if not 1 <= self.w_min <= self.w_max:
            problems.append(f"1 <= w_min <= w_max (got {self.w_min}, {self.w_max})")
        if self.w_res < 1 or self.max_strikes < 1 or self.e_min < 1 or self.micro_epochs < 1:
            problems.append("w_res, max_strikes, e_min and micro_epochs >= 1")
        if any(k not in KERNELS for k in self.micro_kernels):
            problems.append(f"micro_kernels in {KERNELS} (got {list(self.micro_kernels)})")
        if self.max_trials is not None and self.max_trials < 1:
            problems.append(f"max_trials >= 1 or None (got {self.max_trials})")
        if problems:
            raise NasError("search settings: expected " + "; ".join(problems))
        self.budget  # noqa: B018  (validates the budget fields)

    @property
    def budget(self) -> Budget:
        return Budget(self.max_params, self.max_mflops, self.max_latency_ms, self.latency_threads)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["micro_kernels"] = list(self.micro_kernels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "search settings") -> SearchSettings:
        """Settings read from a file: every value of its field's type and range (nas_core.values)."""
        try:
            return cls(**checked_fields(cls, data, where, SETTING_LIMITS, default_limit=(0, HUGE)))
        except NasError as exc:
            message = str(exc)
            raise NasError(message if message.startswith(where) else f"{where}: {message}") from None


# Ranges of the settings a file may hold (epochs, layers, channels: far beyond the paper's, so that a
# resumed or replayed run never asks for a trial of 10**12 epochs); other numbers: 0 .. nas_core.values.HUGE.
SETTING_LIMITS = {
    "e_min": (1, 10_000), "d_min": (1, 10_000), "d_max": (1, 10_000), "w_min": (1, 100_000),
    "w_max": (1, 100_000), "w_res": (1, 100_000), "depth_accept": (-100, 100), "depth_tolerance": (-100, 100),
    "max_strikes": (1, 10_000), "micro_epochs": (1, 10_000), "micro_kernels": (1, 99), "seed": (0, SEED_MAX),
    "depth_epoch_step": (0, 10_000), "width_epoch_step": (0, 10_000),
}

PRESETS: dict[str, SearchSettings] = {
    "tiny": SearchSettings(w_max=64),
    "mobile": SearchSettings(w_max=128),
    "small": SearchSettings(w_max=32, d_min=4, d_max=49),  # faces: blocks R-10 .. R-100 (ARCHITECTURE §4)
    "medium": SearchSettings(w_max=64, d_min=4, d_max=49),
}


def settings_for(size: str, **overrides: Any) -> SearchSettings:
    """A preset with overrides applied; overrides that are None (unset CLI flags) are ignored."""
    if size not in PRESETS:
        raise NasError(f"{size}: unknown search size; expected one of {', '.join(PRESETS)}")
    return with_overrides(PRESETS[size], **overrides)


def with_overrides(settings: SearchSettings, **overrides: Any) -> SearchSettings:
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(SearchSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise NasError(f"search settings: unknown setting(s) {', '.join(unknown)}")
    return replace(settings, **overrides)


# -- flags ---------------------------------------------------------------------------------------------------------

# The Algorithm 1 settings a search command takes as flags, each defaulting to its --size preset's value.
SEARCH_FLAGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res", "micro_epochs", "max_trials", "seed")
# The ones that shape a ranking study's candidates (nas-study / facerec-study ranking).
CANDIDATE_FLAGS = ("e_min", "d_min", "d_max", "w_min", "w_max", "w_res")


def add_search_flags(parser: argparse.ArgumentParser, names: Iterable[str] = SEARCH_FLAGS,
                     default: str = "the --size preset's") -> list[str]:
    """``--e-min`` ... for the SearchSettings fields ``names``; not given (None): ``default`` says whose value."""
    names = tuple(names)
    group = parser.add_argument_group("search settings (Algorithm 1, ARCHITECTURE §3)")
    return add_dataclass_args(group, SearchSettings, include=names, defaults=dict.fromkeys(names),
                              help_suffix=dict.fromkeys(names, f" (default: {default})"))


def search_overrides(args: argparse.Namespace, names: Iterable[str] = SEARCH_FLAGS) -> dict[str, Any]:
    """The SearchSettings values the flags of ``add_search_flags`` were given (unset ones left out)."""
    return dataclass_overrides(args, names)


@dataclass(frozen=True)
class BudgetFlags:
    """The deployment budget flags as typed. They are read as text and checked by ``budget_overrides``, so a bad
    value is one ``error:`` line naming the flag (ARCHITECTURE §7), not an argparse usage message."""

    max_params: str | None = field(default=None, metadata=_flag("at most N parameters (e.g. 2e6)", metavar="N"))
    max_mflops: str | None = field(default=None, metadata=_flag(
        "at most N MFLOPs (million multiply-accumulates of the conv/linear layers, batch 1, at the space's input "
        "size)", metavar="N"))
    max_latency_ms: str | None = field(default=None, metadata=_flag(
        "at most MS milliseconds per image: median of onnxruntime CPU runs at batch 1 (needs onnxruntime)",
        metavar="MS"))
    latency_threads: str | None = field(default=None, metadata=_flag(
        "onnxruntime threads of the latency measurement (default 1)", metavar="T"))


_INTEGER_BUDGETS = ("max_params", "latency_threads")


def add_budget_flags(parser: argparse.ArgumentParser) -> list[str]:
    group = parser.add_argument_group("deployment budgets (a candidate over any is never trained; nas_core.cost)")
    return add_dataclass_args(group, BudgetFlags)


def budget_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SearchSettings budget fields the flags of ``add_budget_flags`` carry (None: not given). A value that
    is not a positive number (an integer for --max-params / --latency-threads), or a latency budget without
    onnxruntime installed, is a NasError naming the flag."""
    values = {f.name: parse_budget_value("--" + f.name.replace("_", "-"), getattr(args, f.name),
                                         integer=f.name in _INTEGER_BUDGETS) for f in fields(BudgetFlags)}
    threads = values["latency_threads"]
    if threads is not None and threads > cpu_count():  # more would only spin (or fail inside onnxruntime)
        raise FlagError("--latency-threads", args.latency_threads, f"expected 1 to {cpu_count()} threads (the CPUs "
                                                                   "this process may use)")
    if values["max_latency_ms"] is not None and importlib.util.find_spec("onnxruntime") is None:
        raise NasError("--max-latency-ms: expected onnxruntime to measure CPU latency (pip install onnxruntime)")
    return values


def parse_budget_value(flag: str, text: str | None, *, integer: bool = False) -> int | float | None:
    """A budget flag's value: a positive (integer) number, else NasError naming the flag; None stays None."""
    if text is None:
        return None
    kind = f"{'a positive integer' if integer else 'a positive number'} up to {HUGE:.0e}"
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        raise FlagError(flag, text, f"expected {kind}") from None
    if not (math.isfinite(value) and 0 < value <= HUGE) or (integer and not value.is_integer()):
        raise FlagError(flag, text, f"expected {kind}")
    return int(value) if integer else value


def _parallel_field() -> Any:
    return field(default=1, metadata=_flag(
        "train N trials at once: the asked one and those the search may ask next (the same result as N=1; "
        "1: one trial at a time in this process)", positive=True, metavar="N"))


def _executor_field() -> Any:
    return field(default="process", metadata=_flag(
        "with --parallel N: N local processes (one per GPU, or a share of the CPU threads each) or N Ray tasks "
        "(pip install 'facenas[ray]')", choices=("process", "ray")))


def _ray_address_field() -> Any:
    return field(default=None, metadata=_flag(
        "with --executor ray: join this running cluster (e.g. auto); not given: start a local one"))


@dataclass(frozen=True)
class ParallelOptions:
    """Where independent trials run (ARCHITECTURE §8): a study's flags."""

    parallel: int = _parallel_field()
    executor: str = _executor_field()
    ray_address: str | None = _ray_address_field()


@dataclass(frozen=True)
class RunOptions:
    """One invocation of a search (ARCHITECTURE §7): where its run folder is and how it runs. None of it is a
    setting of the run, so a resume may change any of it."""

    output: str | None = field(default=None, metadata=_flag(
        "run folder RUN: settings.json, journal.jsonl, search.log, result.json, report.html", metavar="RUN",
        path="output"))
    resume: str | None = field(default=None, metadata=_flag(
        "continue the search in RUN with its saved settings (journaled trials are not retrained; a setting flag given "
        "with it must repeat the run's value; --device, --no-progress, --parallel, --executor, --ray-address and the "
        "cache flags may change)", metavar="RUN", path="folder"))
    device: str = field(default="auto", metadata=_flag(
        "auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N"))
    progress: bool = field(default=True, metadata=_flag("progress bars on a terminal (--no-progress: none)"))
    estimate: bool = field(default=False, metadata=_flag(
        "train nothing: print the worst-case trial list, time a few steps of the smallest and largest candidate, "
        "project the hours at --parallel N; writes RUN/estimate.json"))
    parallel: int = _parallel_field()  # where trials run (ARCHITECTURE §8)
    executor: str = _executor_field()
    ray_address: str | None = _ray_address_field()


def add_run_flags(parser: argparse.ArgumentParser, default_output: str) -> list[str]:
    """The flags of RunOptions; ``default_output`` says where a run goes without --output."""
    return add_dataclass_args(parser, RunOptions, help_suffix={"output": f" (default {default_output})"})


# -- a resume against its run (nas_core.run_folder) -----------------------------------------------------------------

# The flags a search documents as changeable on --resume: where and how this invocation runs, not what the run is
# (--output may only repeat RUN: check_resume).
RESUME_CHANGEABLE = ("--device", "--progress", "--estimate", "--parallel", "--executor", "--ray-address", "--cache",
                     "--cache-on-device", "--step-seconds")
_SETTING_FLAGS = (*SEARCH_FLAGS, "macro_only", *_BUDGETS, "latency_threads")
_PATHS = ("data", "data_root")  # compared as the folders they name


def search_run_flags(config: dict[str, Any]) -> dict[str, Any]:
    """RUN/settings.json of a search as the flags that made it (``{"--flag": value}``): what a resume's flags are
    compared with, and what RUN/facenas-run.json fingerprints. The options sit flat (nas-search) or under
    "options" (facerec-search); "device" and "space" are not settings of the run."""
    search = config.get("search") if isinstance(config.get("search"), dict) else {}
    options = config.get("options") if isinstance(config.get("options"), dict) else config
    flags = {k: v for k, v in options.items() if k not in ("search", "space", "device", "options")}
    flags.update({name: search.get(name) for name in _SETTING_FLAGS if name in search})
    return {"--" + k.replace("_", "-"): _as_stored(k, v) for k, v in flags.items()}


def given_run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on this command line (``args.given``, nas_core.command) as a run stores them: budgets as
    numbers (``budget_overrides``), folders resolved, name lists without spaces."""
    budgets = budget_overrides(args)
    given = {}
    for dest in sorted(getattr(args, "given", ())):
        value = budgets[dest] if dest in budgets else getattr(args, dest)
        given["--" + dest.replace("_", "-")] = _as_stored(dest, value)
    return given


def _as_stored(name: str, value: Any) -> Any:
    if name in _PATHS and isinstance(value, str):
        return str(Path(value).resolve())
    if name == "val_bins" and isinstance(value, str):
        return ",".join(part.strip() for part in value.split(",") if part.strip())
    return list(value) if isinstance(value, tuple) else value


def check_resume(args: argparse.Namespace, config: dict[str, Any], run: str) -> list[str]:
    """A search's --resume against its RUN/settings.json: a setting flag given with another value than the run's is
    refused naming both (nas_core.run_folder.strict_resume); the changeable ones given are returned for the log.
    --output, when given, must name RUN itself."""
    if args.output is not None and Path(args.output).resolve() != Path(run).resolve():
        raise FlagError("--output", args.output, f"expected no --output with --resume, or the resumed folder {run}")
    given = {flag: value for flag, value in given_run_flags(args).items() if flag not in ("--resume", "--output")}
    return strict_resume(given, search_run_flags(config), run, RESUME_CHANGEABLE)
