"""ONNX export with a dynamic batch axis, onnxruntime parity check and CPU latency.

The export, onnxruntime's session options and the median timing are nas_core.cost's (the search's latency
budget measures candidates with the same code).

The ONNX model takes float32 NCHW RGB images normalised as (x/255 − 0.5)/0.5 ("input") and returns
the raw embedding ("embedding"), exactly like the torch backbone.

Parity is judged per sample by the relative L2 error ‖ort − torch‖₂ ≤ tolerance·‖torch‖₂ (plus a small
absolute floor for near-zero embeddings): float32 rounding is relative, and raw embeddings may be large
(1e4–1e6 when BatchNorm running statistics were barely updated), so an absolute rule refuses sound models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from facerec.deploy.options import PARITY_TOLERANCE
from facerec.errors import FaceRecError
from nas_core.cost import ONNX_OPSET, median_ms, onnx_bytes, session_options
from nas_core.io import atomic_write

MIN_OPSET = ONNX_OPSET
INPUT_NAME, OUTPUT_NAME = "input", "embedding"
PARITY_FLOOR = 1e-6  # absolute L2 error always allowed, so near-zero embeddings do not fail on rounding


def input_size(backbone: nn.Module) -> int:
    """Side of the square images the net takes (timm's ``pretrained_cfg``; 112 when it has none)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return int(cfg.get("input_size", (3, 112, 112))[-1])


def _cpu_eval_copy(backbone: nn.Module) -> nn.Module:
    """Export and measure a float32 CPU eval copy; the caller's module (maybe training) is left as is."""
    return copy.deepcopy(backbone).float().cpu().eval()


def sample_batch(backbone: nn.Module | int, batch: int, seed: int = 0) -> torch.Tensor:
    """Random images in the model's input range [−1, 1]; ``backbone``: the net or its input size."""
    size = backbone if isinstance(backbone, int) else input_size(backbone)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def export_onnx(backbone: nn.Module, path: str | Path, *, opset: int = MIN_OPSET,
                metadata: dict[str, str] | None = None) -> None:
    """Write ``backbone`` (eval mode, CPU float32) as ONNX with a dynamic batch axis, atomically; ``metadata``:
    entries of the model's metadata_props (e.g. facerec.deploy.threshold.onnx_metadata), in the file as written.
    The fp16 and int8 copies of facerec.deploy.quantize keep them."""
    if opset < MIN_OPSET:
        raise FaceRecError(f"opset {opset}: expected {MIN_OPSET} or newer")
    data = onnx_bytes(backbone, sample_batch(backbone, 2), input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                      dynamic_batch=True, opset=opset)  # exports an eval, float32 CPU copy
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model)
    if metadata:
        kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
        onnx.helper.set_model_props(model, {**dict(kept), **metadata})
        data = model.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


def ort_session(onnx_path: str | Path, threads: int | None = None, spinning: bool = True,
                providers: list[str] | None = None):
    options = session_options(threads, spinning)
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors on bad files
        raise FaceRecError(f"{onnx_path}: expected an ONNX model onnxruntime can load ({exc})") from None


def run_onnx(session, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The model's raw output for float32 NCHW ``images``, ``batch`` at a time (dtype as the model gives)."""
    feeds = ({INPUT_NAME: images[i : i + batch]} for i in range(0, len(images), batch))
    return np.concatenate([session.run([OUTPUT_NAME], feed)[0] for feed in feeds])


@dataclass(frozen=True)
class Parity:
    """How far onnxruntime's embeddings are from torch's on the same images.

    A sample passes when ‖ort − torch‖₂ ≤ tolerance·‖torch‖₂ + PARITY_FLOOR. ``rel_l2`` is the worst
    sample's relative error (the figure the rule judges); ``cosine`` (lowest) and ``max_abs`` (largest
    element difference, which grows with the embedding's scale) are for information. ``problem`` names
    output that cannot be compared at all (wrong shape or dtype, not finite).
    """

    samples: int
    tolerance: float
    rel_l2: float
    cosine: float
    max_abs: float
    failing: int
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem and self.failing == 0

    def describe(self) -> str:
        if self.problem:
            return self.problem
        return (f"worst relative L2 error {self.rel_l2:.2g} (tolerance {self.tolerance:g}), min cosine "
                f"{self.cosine:.7f}, max abs diff {self.max_abs:.3g} (the last two for information)")


def compare_embeddings(expected: np.ndarray, got: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> Parity:
    """Parity of ``got`` (onnxruntime) against ``expected`` (torch), both [N, D]."""
    n = len(expected)

    def broken(problem: str) -> Parity:
        return Parity(n, tolerance, float("inf"), float("nan"), float("inf"), n, problem)

    if got.shape != expected.shape:
        return broken(f"output shape {got.shape}, expected {expected.shape}")
    if got.dtype != np.float32:
        return broken(f"output dtype {got.dtype}, expected float32")
    if not np.isfinite(expected).all():
        return broken("torch's own embeddings are not finite (NaN or inf weights in the checkpoint?)")
    if not np.isfinite(got).all():
        bad = int((~np.isfinite(got)).any(axis=1).sum())
        return broken(f"onnxruntime output is not finite in {bad} of {n} samples")
    expected64, got64 = expected.astype(np.float64), got.astype(np.float64)
    err = np.linalg.norm(got64 - expected64, axis=1)
    norm = np.linalg.norm(expected64, axis=1)
    rel = err / np.maximum(norm, np.finfo(np.float64).tiny)
    cosine = np.sum(got64 * expected64, axis=1) / np.maximum(norm * np.linalg.norm(got64, axis=1), 1e-300)
    failing = int(np.sum(err > tolerance * norm + PARITY_FLOOR))
    max_abs = float(np.abs(got64 - expected64).max())
    return Parity(n, tolerance, float(rel.max()), float(cosine.min()), max_abs, failing)


def check_parity(backbone: nn.Module, onnx_path: str | Path, batch: int = 4, *,
                 images: np.ndarray | None = None, tolerance: float = PARITY_TOLERANCE) -> Parity:
    """onnxruntime vs the torch backbone (eval, CPU float32) on a random batch of ``batch`` images plus
    ``images`` (float32 NCHW model input, e.g. real faces through ``eval_protocols.embed.to_input``)."""
    inputs = sample_batch(backbone, batch).numpy()
    if images is not None and len(images):
        inputs = np.concatenate([inputs, np.asarray(images, dtype=np.float32)])
    model = _cpu_eval_copy(backbone)
    with torch.inference_mode():
        expected = np.concatenate([model(torch.from_numpy(inputs[i : i + batch])).numpy()
                                   for i in range(0, len(inputs), batch)])
    got = run_onnx(ort_session(onnx_path), inputs, batch)
    return compare_embeddings(expected, got, tolerance)


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

    runs = {"torch": run_torch, "onnxruntime": lambda: session.run([OUTPUT_NAME], feed)}
    ms = median_ms(runs, repeats, warmup)
    return {"batch": batch, "torch_ms": ms["torch"], "onnxruntime_ms": ms["onnxruntime"],
            "ratio": ms["onnxruntime"] / ms["torch"]}


def measure_onnx_latency(onnx_paths: dict[str, str | Path], input_size: int, batch: int = 16,
                         repeats: int = 10, warmup: int = 2,
                         providers: list[str] | None = None) -> dict[str, float]:
    """Median milliseconds per batch of each ONNX file with onnxruntime (torch's thread count, CPU unless
    ``providers`` says otherwise), measured alternately."""
    feed = {INPUT_NAME: sample_batch(input_size, batch, seed=1).numpy()}
    sessions = {name: ort_session(path, threads=torch.get_num_threads(), spinning=False, providers=providers)
                for name, path in onnx_paths.items()}
    return median_ms({name: (lambda s=s: s.run([OUTPUT_NAME], feed)) for name, s in sessions.items()},
                     repeats, warmup)
