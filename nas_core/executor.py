"""Where independent trials run (ARCHITECTURE §8): in this process (default) or on a Ray cluster (optional extra).

The search itself is sequential (each decision needs the previous trial); the random baseline, the ranking
study and final trainings are independent and go through ``executor.map(fn, items)``. ``fn`` and the items
must be picklable for Ray (a module-level function and plain dataclasses, e.g. classify.evaluator.run_trial).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nas_core.errors import NasError
from nas_core.registry import Registry

EXECUTORS = Registry("executor")


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]: ...


@EXECUTORS.register("inprocess")
class InProcessExecutor:
    """Runs the trials one after the other in this process (results in input order)."""

    def __init__(self, on_result: Callable[[int, Any], None] | None = None):
        self.on_result = on_result

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        results = []
        for i, item in enumerate(items):
            results.append(fn(item))
            if self.on_result is not None:
                self.on_result(i, results[-1])
        return results


@EXECUTORS.register("ray")
class RayExecutor:
    """One Ray task per trial; ``num_gpus`` per trial (default 1 when the cluster has GPUs, ARCHITECTURE §8).

    ``address`` joins a running cluster ("auto"); without it Ray starts a local one on this machine
    (``local_cpus`` caps its size; the tests use a two-CPU local cluster). Ray ≥ 2.50 dropped the old
    in-process ``local_mode``, so a local cluster is what "local mode" means here.
    """

    def __init__(self, address: str | None = None, num_gpus: float | None = None, num_cpus: float = 1,
                 local_cpus: int | None = None, on_result: Callable[[int, Any], None] | None = None):
        try:
            import ray
        except ImportError:
            raise NasError("ray: expected the optional extra (pip install 'facenas[ray]'); not installed") from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "ignore_reinit_error": True}
            if address is None:
                kwargs.update(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False)
            ray.init(**kwargs)
        if num_gpus is None:
            num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.num_gpus, self.num_cpus = num_gpus, num_cpus
        self.on_result = on_result

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        ray = self._ray
        remote = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus)(_call)
        refs = [remote.remote(fn, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:  # report in completion order, return in input order
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = ray.get(done[0])
            if self.on_result is not None:
                self.on_result(i, results[i])
        return results


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: ``fn`` travels as an argument, so builtins and any picklable callable work."""
    return fn(item)


def create_executor(name: str = "inprocess", **kwargs: Any) -> Executor:
    return EXECUTORS.create(name, **kwargs)
