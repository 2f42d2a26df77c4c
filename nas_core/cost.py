"""Deployment cost of a candidate net, measured for the budgets a search keeps (``--max-params/-mflops/-latency-ms``;
the budgets themselves are settings: nas_core.settings.Budget).

- params: the space's closed-form count (trainable parameters).
- MFLOPs: millions of multiply-accumulates (MACs) of the conv and linear layers for one image (batch 1) at
  the space's input size: the convention of InsightFace's and thop-style counters, where one "FLOP" is one
  MAC and BatchNorm, activations, pooling and additions are not counted. torch's FlopCounterMode counts 2
  per MAC (conv, matmul), so its total is halved.
- latency: median milliseconds of a batch-1 run of the net exported to ONNX, on onnxruntime's CPU provider
  with ``threads`` intra-op threads, after a warm-up.

A search measures each candidate once and keeps the figures in RUN/latency.json (``CostTable``), so a
resumed run, a replay and the ``--parallel`` speculation decide from the same numbers: latency is a
measurement, and measuring it again could flip a decision near the budget.
"""

from __future__ import annotations

import copy
import io
import itertools
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.settings import Budget
from nas_core.values import HUGE, is_number, shown

ONNX_OPSET = 17
LATENCY_FILE = "latency.json"  # RUN/latency.json: the costs a budgeted search measured, per genotype key


def count_mflops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Millions of multiply-accumulates of the conv and linear layers of ``model`` on one input of
    ``input_shape`` (C, H, W) (see the module docstring for the convention). The forward runs in eval mode on
    the meta device (shapes only: an IResNet-100 counts in well under a second); ``model`` is left as it was."""
    from torch.utils.flop_counter import FlopCounterMode

    state = {name: t.to("meta") for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            torch.func.functional_call(model, state, (torch.zeros(1, *input_shape, device="meta"),))
    finally:
        model.train(training)
    return counter.get_total_flops() / 2 / 1e6  # FlopCounterMode counts a MAC as 2 FLOPs


def onnx_bytes(model: nn.Module, example: torch.Tensor, *, input_name: str = "input", output_name: str = "output",
               dynamic_batch: bool = False, opset: int = ONNX_OPSET) -> bytes:
    """``model`` (an eval, float32 CPU copy) as an ONNX model in memory."""
    model = copy.deepcopy(model).float().cpu().eval()
    buffer = io.BytesIO()
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    # The torch.export-based exporter (default since torch 2.9) needs onnxscript, which is not a
    # dependency; the TorchScript exporter handles these plain conv nets offline and exactly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[input_name],
                          output_names=[output_name], dynamic_axes=axes)
    return buffer.getvalue()


def session_options(threads: int | None = None, spinning: bool = True):
    """onnxruntime SessionOptions with ``threads`` intra-op threads (None: onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: graph-optimizer notes ("Removing initializer ...") are not the user's
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        # Idle onnxruntime threads otherwise busy-wait after each run and steal the cores torch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def median_ms(runs: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each run. The runs alternate, so a busy machine slows them alike and their
    ratios stay fair."""
    def timed(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    for _ in range(warmup):
        for run in runs.values():
            run()
    times = np.array([[timed(run) for run in runs.values()] for _ in range(repeats)])
    return dict(zip(runs, (1000 * np.median(times, axis=0)).tolist()))


def onnx_cpu_runner(model: nn.Module, input_shape: tuple[int, ...], threads: int = 1) -> Callable[[], object]:
    """One batch-1 run of ``model`` exported to ONNX, on onnxruntime's CPU provider with ``threads`` intra-op
    threads (what ``median_ms`` times; several of them interleave in one call)."""
    require_onnxruntime("latency")
    import onnxruntime as ort

    example = torch.zeros(1, *input_shape)
    session = ort.InferenceSession(onnx_bytes(model, example), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    feed = {"input": example.numpy()}
    return lambda: session.run(None, feed)


def onnx_cpu_latency_ms(model: nn.Module, input_shape: tuple[int, ...], threads: int = 1, repeats: int = 20,
                        warmup: int = 3) -> float:
    """Median milliseconds of one batch-1 run of ``model`` exported to ONNX, on onnxruntime's CPU provider
    with ``threads`` intra-op threads, after ``warmup`` runs."""
    return median_ms({"onnx": onnx_cpu_runner(model, input_shape, threads)}, repeats, warmup)["onnx"]


def require_onnxruntime(what: str) -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise NasError(f"{what}: expected onnxruntime to measure CPU latency (pip install onnxruntime; {exc})") from None


class CostTable:
    """Costs per genotype key, each measured once: in memory, and in ``store`` (RUN/latency.json) when given.

    ``seed``: another run's latency.json whose figures are taken as measured (a replay of that run).
    ``measure=False``: answer from the stored figures only (a report), NasError for any other.
    Under DDP every rank asks for the same costs in the same order: ``share`` (a broadcast from rank 0)
    gives all ranks rank 0's latency, and only the rank with ``writes`` measures it and writes the store.
    """

    def __init__(self, space: Any, store: str | Path | None = None, *, seed: str | Path | None = None,
                 measure: bool = True, share: Callable[[float | None], float | None] | None = None,
                 writes: bool = True):
        self.space, self.measure, self.share, self.writes = space, measure, share, writes
        self.store = Path(store) if store is not None else None
        self.entries: dict[str, dict[str, Any]] = {}
        for path in (seed, store):
            if path is not None and Path(path).is_file():
                self.entries.update(read_costs(path))
        if seed is not None and self.entries:
            self._save()  # a replay's RUN holds the costs it decides from, measured or not

    def params(self, genotype: Genotype) -> int:
        return self._get(genotype, "params", lambda: int(self.space.count_params(genotype)))

    def mflops(self, genotype: Genotype) -> float:
        def count() -> float:
            with torch.device("meta"):  # counting needs shapes only: no weights to initialise
                model = self.space.build(genotype)
            return count_mflops(model, tuple(self.space.input_shape()))

        return self._get(genotype, "mflops", count)

    def latency_ms(self, genotype: Genotype, threads: int = 1) -> float:
        entry = self.entries.get(genotype.key(), {})
        value = entry.get("latency_ms") if entry.get("latency_threads") == threads else None
        if value is None and self.writes:
            self._need(genotype, "latency_ms")
            value = onnx_cpu_latency_ms(self.space.build(genotype), tuple(self.space.input_shape()), threads)
        if self.share is not None:
            value = self.share(value)  # rank 0's measurement decides on every rank
        if entry.get("latency_ms") != value:
            self._put(genotype, latency_ms=float(value), latency_threads=threads)
        return float(value)

    def _get(self, genotype: Genotype, name: str, compute: Callable[[], Any]) -> Any:
        value = self.entries.get(genotype.key(), {}).get(name)
        if value is None:
            self._need(genotype, name)
            value = compute()
            self._put(genotype, **{name: value})
        return value

    def _need(self, genotype: Genotype, name: str) -> None:
        if not self.measure:
            where = f"{self.store}: " if self.store is not None else ""
            raise NasError(f"{where}expected the stored {name} of {genotype.key()}; it was never measured")

    def _put(self, genotype: Genotype, **values: Any) -> None:
        self.entries.setdefault(genotype.key(), {}).update(values)
        self._save()

    def _save(self) -> None:
        if self.store is not None and self.writes and self.measure:
            from nas_core.io import atomic_write_json

            self.store.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.store, {"format": 1, "costs": self.entries})


def run_costs(space: Any, budget: Budget, run_dir: str | Path, **options: Any) -> CostTable:
    """The CostTable of a search in ``run_dir``: kept in RUN/latency.json when a budget is set (else in memory:
    nothing is decided from it)."""
    return CostTable(space, Path(run_dir) / LATENCY_FILE if budget.active else None, **options)


def read_costs(path: str | Path) -> dict[str, dict[str, Any]]:
    """The {genotype key: {params, mflops, latency_ms, latency_threads}} of a latency.json."""
    from nas_core.io import read_json_object

    data = read_json_object(path, "the measured costs of a search's candidates")
    costs = data.get("costs")
    if not isinstance(costs, dict) or not all(isinstance(v, dict) for v in costs.values()):
        raise NasError(f"{path}: expected {{'format': 1, 'costs': {{genotype key: {{params, mflops, latency_ms}}}}}}")
    for key, entry in costs.items():  # any JSON number may stand here: 400 digits, 1e308 (nas_core.values)
        for name, integer, hi in (("params", True, HUGE), ("mflops", False, HUGE), ("latency_ms", False, HUGE),
                                  ("latency_threads", True, 4096)):
            if entry.get(name) is not None and not is_number(entry[name], integer=integer, lo=0, hi=hi):
                raise NasError(f"{path}: expected '{name}' of {key[:40]} to be a{'n integer' if integer else ' number'} "
                               f"from 0 to {hi:.0e}, got {shown(entry[name])}")
    return {key: dict(entry) for key, entry in costs.items()}


def budget_record(budget: Budget, costs: CostTable, result: Any) -> dict[str, Any]:
    """result.json's ``budget``, the ``cost`` of the found net (``result``: a nas_core.search.SearchResult) next
    to it: params and MFLOPs always, latency when a latency budget was set (the stored measurement), and the
    candidates found ``over_budget`` (never trained)."""
    genotype = result.genotype
    latency = costs.latency_ms(genotype, budget.latency_threads) if budget.max_latency_ms is not None else None
    cost = {"params": costs.params(genotype), "mflops": costs.mflops(genotype), "latency_ms": latency}
    if budget.max_latency_ms is not None:
        cost["latency_threads"] = budget.latency_threads
    over = [{"genotype": t.genotype.key(), "epochs": t.epochs, "phase": t.phase, "layer": t.layer,
             "over_budget": list(t.over_budget)} for t in result.trials if t.result is None]
    return {"budget": budget.to_dict(), "cost": cost, "over_budget": over}
