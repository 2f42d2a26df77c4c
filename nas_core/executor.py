"""Where trials run (ARCHITECTURE §8): in this process (default), in local worker processes, or on a Ray cluster.

The random baseline, the ranking study and final trainings are independent and go through
``executor.map(fn, items)``. The search decides one trial at a time; with ``--parallel N`` it runs the trials
it may ask next ahead of time through ``submit`` / ``wait`` / ``result`` (nas_core.speculative), which the
process and Ray executors offer. ``fn`` and the items must be picklable (a module-level function and plain
dataclasses, e.g. classify.evaluator.run_trial).
"""

from __future__ import annotations

import os
import signal
import sys
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


def _map_by_submit(executor, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """``map`` over ``submit``: report in completion order, return in input order."""
    handles = [executor.submit(fn, item) for item in items]
    index = {handle: i for i, handle in enumerate(handles)}
    results: list[Any] = [None] * len(handles)
    pending = list(handles)
    while pending:
        for handle in executor.wait(pending):
            pending.remove(handle)
            i = index[handle]
            results[i] = executor.result(handle)
            if executor.on_result is not None:
                executor.on_result(i, results[i])
    return results


def _start_worker(slots, parent: int) -> None:
    """A worker process: dies with its parent (a killed search leaves no orphan training) and takes one
    device slot, so each worker sees only its own GPU as cuda:0."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get())


@EXECUTORS.register("process")
class ProcessExecutor:
    """``workers`` local processes, started fresh (spawn: no torch state forked from this process).

    ``devices`` (GPU indices) are handed out one per worker, round robin, through CUDA_VISIBLE_DEVICES.
    ``close`` ends the workers at once: the trials still running are dropped.
    """

    def __init__(self, workers: int = 2, devices: list[int] | None = None,
                 on_result: Callable[[int, Any], None] | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        slots = None
        if devices:
            slots = context.Queue()
            for i in range(workers):
                slots.put(devices[i % len(devices)])
        self.workers = workers
        self.on_result = on_result
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                         initargs=(slots, os.getpid()))
        self._unfinished: set = set()

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Any:
        future = self._pool.submit(fn, item)
        self._unfinished.add(future)
        return future

    def wait(self, handles: Iterable[Any]) -> list[Any]:
        """The finished ones among ``handles`` (at least one; blocks until then)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        return list(wait(list(handles), return_when=FIRST_COMPLETED).done)

    def result(self, handle: Any) -> Any:
        self._unfinished.discard(handle)
        return handle.result()

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return _map_by_submit(self, fn, items)

    def close(self) -> None:
        # Python < 3.14 has no public way to stop busy workers; the pool keeps them in _processes.
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        busy = any(not future.done() for future in self._unfinished)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if busy:  # idle workers exit on their own, cleanly
            for process in processes:
                process.terminate()
        self._pool.shutdown(wait=True)  # the pool's manager thread sees the workers gone and exits
        self._unfinished.clear()


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
        self._remote = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus)(_call)
        self._unfinished: set = set()

    def submit(self, fn: Callable[[Any], Any], item: Any) -> Any:
        ref = self._remote.remote(fn, item)
        self._unfinished.add(ref)
        return ref

    def wait(self, handles: Iterable[Any]) -> list[Any]:
        """The finished ones among ``handles`` (at least one; blocks until then)."""
        done, _ = self._ray.wait(list(handles), num_returns=1)
        return list(done)

    def result(self, handle: Any) -> Any:
        self._unfinished.discard(handle)
        return self._ray.get(handle)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        return _map_by_submit(self, fn, items)

    def close(self) -> None:
        """Drop the tasks still queued or running (the cluster itself stays up)."""
        for ref in self._unfinished:
            self._ray.cancel(ref, force=True)
        self._unfinished.clear()


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: ``fn`` travels as an argument, so builtins and any picklable callable work."""
    return fn(item)


def create_executor(name: str = "inprocess", **kwargs: Any) -> Executor:
    return EXECUTORS.create(name, **kwargs)


def parallel_executor(name: str, workers: int, device: Any, address: str | None = None):
    """The executor of ``--parallel N --executor NAME``: N local processes (one per GPU when ``device`` is an
    unindexed CUDA device, workers sharing GPUs round robin beyond that) or Ray tasks, one GPU each when the
    cluster has GPUs."""
    import torch

    if name == "ray":
        return create_executor("ray", address=address, local_cpus=None if address else workers)
    if name != "process":
        raise NasError(f"--executor {name}: expected process or ray")
    device = torch.device(device) if device is not None else torch.device("cpu")
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" and device.index is None else None
    return create_executor("process", workers=workers, devices=devices or None)
