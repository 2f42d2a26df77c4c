"""ONNX export with a dynamic batch axis, onnxruntime parity check and CPU latency (DESIGN §6).

The ONNX model takes float32 NCHW RGB images normalised as (x/255 − 0.5)/0.5 ("input") and returns
the raw embedding ("embedding"), exactly like the torch backbone.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facerec.errors import FaceRecError

MIN_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "embedding"


def _input_size(backbone: nn.Module) -> int:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return int(cfg.get("input_size", (3, 112, 112))[-1])


def _cpu_eval_copy(backbone: nn.Module) -> nn.Module:
    """Export and measure a float32 CPU eval copy; the caller's module (maybe training) is left as is."""
    return copy.deepcopy(backbone).float().cpu().eval()


def sample_batch(backbone: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    """Images in the model's input range [−1, 1] (DESIGN §6), reproducible."""
    size = _input_size(backbone)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def export_onnx(backbone: nn.Module, path: str | Path, *, opset: int = MIN_OPSET) -> None:
    """Write ``backbone`` (eval mode, CPU float32) as ONNX with a dynamic batch axis, atomically."""
    if opset < MIN_OPSET:
        raise FaceRecError(f"opset {opset}: expected {MIN_OPSET} or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _cpu_eval_copy(backbone)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # The torch.export-based exporter (default since torch 2.9) needs onnxscript, which is not a
        # dependency; the TorchScript exporter handles these plain conv nets offline and exactly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (sample_batch(model, 2),),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        import onnx

        onnx.checker.check_model(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a model file is shared like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ort_session(onnx_path: str | Path, threads: int | None = None, spinning: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        # Idle onnxruntime threads otherwise busy-wait after each run and steal the cores torch needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors on bad files
        raise FaceRecError(f"{onnx_path}: expected an ONNX model onnxruntime can load ({exc})") from None


def check_parity(backbone: nn.Module, onnx_path: str | Path, batch: int = 4) -> float:
    """Max abs difference between onnxruntime and the torch backbone (eval) on one batch."""
    images = sample_batch(backbone, batch)
    model = _cpu_eval_copy(backbone)
    with torch.inference_mode():
        expected = model(images).numpy()
    got = ort_session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    if got.shape != expected.shape:
        raise FaceRecError(f"{onnx_path}: expected output shape {expected.shape}, got {got.shape}")
    return float(np.abs(got - expected).max())


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_latency(
    backbone: nn.Module, onnx_path: str | Path, batch: int = 1, repeats: int = 10, warmup: int = 2
) -> dict[str, float]:
    """Median CPU milliseconds per batch of torch eager (inference mode) and onnxruntime, same threads.
    The ratio is onnxruntime / torch (below 1: onnxruntime is faster)."""
    images = sample_batch(backbone, batch, seed=1)
    model = _cpu_eval_copy(backbone)
    session = ort_session(onnx_path, threads=torch.get_num_threads(), spinning=False)
    feed = {INPUT_NAME: images.numpy()}

    def run_torch() -> None:
        with torch.inference_mode():
            model(images)

    def run_ort() -> None:
        session.run([OUTPUT_NAME], feed)

    for _ in range(warmup):
        run_torch()
        run_ort()
    # Alternate the two engines so a busy machine slows both alike and the ratio stays fair.
    times = np.array([(_timed(run_torch), _timed(run_ort)) for _ in range(repeats)])
    torch_ms, ort_ms = (1000 * np.median(times, axis=0)).tolist()
    return {"batch": batch, "torch_ms": torch_ms, "onnxruntime_ms": ort_ms, "ratio": ort_ms / torch_ms}
