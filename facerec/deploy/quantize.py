"""Reduced-precision copies of an exported face model, and the checks facerec-export runs on them.

- fp16: weights and activations in float16 (onnxruntime's ``convert_float_to_float16``), meant for the
  CUDA provider. The float32 "input" and "embedding" are kept (``keep_io_types``), so callers feed the
  same input and read the same output type.
- int8: onnxruntime static quantization, QDQ format, 8-bit weights per output channel and 8-bit
  activations whose ranges are calibrated (min/max) on face images through a ``CalibrationDataReader``.
  Weights are uint8 (u8u8), not onnxruntime's usual int8 (u8s8): its x86 u8s8 kernels on CPUs without
  VNNI (AVX2) add pairs of u8·s8 products in int16, which saturates with full-range weights; on the ORL
  model that cost 4.2 verification points, 7-bit weights (``reduce_range``) 0.5, u8u8 none
  (bench/onnx_latency.py --int8-variants).

Both are judged by the 10-fold verification accuracy on a .bin pack, computed with eval_protocols'
``Embedder`` and verification code, so the numbers are the ones facerec-eval prints.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from eval_protocols.embed import CPU_PROVIDER as CPU
from eval_protocols.embed import CUDA_PROVIDER as CUDA
from eval_protocols.embed import Embedder, onnx_providers
from eval_protocols.verification import VerificationProtocol
from facerec.deploy.export import INPUT_NAME, OUTPUT_NAME, ort_session
from facerec.deploy.options import PRECISIONS
from nas_core.io import atomic_write
from nas_core.runlog import progress_bar

__all__ = ["CPU", "CUDA", "PRECISIONS", "check_providers", "fp16_providers", "runs_here", "verification_accuracy",
           "write_fp16", "write_int8"]


def _write_model(path: str | Path, model) -> None:
    atomic_write(path, lambda f: f.write(model.SerializeToString()))


def write_fp16(fp32_path: str | Path, path: str | Path) -> None:
    """float16 weights and activations, float32 input and output; written atomically."""
    _write_model(path, convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True))


class _FaceCalibration(CalibrationDataReader):
    """Batches of float32 NCHW model input, as many times over as the calibrator rewinds."""

    def __init__(self, images: np.ndarray, batch: int) -> None:
        self._feeds = [{INPUT_NAME: images[i : i + batch]} for i in range(0, len(images), batch)]
        self.rewind()

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = iter(self._feeds)


@contextlib.contextmanager
def _quiet_root_warnings():
    """onnxruntime's quantizer logs through the root logger: "Axis 1 is out-of-range" for every
    BatchNormalization scale (a vector; it then gets one scale for all channels, which measured better
    on the ORL model than one per channel: 0.00 vs 0.67 points lost), and hints at pre-processing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def write_int8(fp32_path: str | Path, path: str | Path, images: np.ndarray, *, batch: int = 16,
               per_channel: bool = True, reduce_range: bool = False, method: str = "MinMax",
               op_types: list[str] | None = None, quant_format: str = "QDQ", weights: str = "QUInt8",
               activations: str = "QUInt8", preprocess: bool = True) -> None:
    """Static 8-bit quantization of ``fp32_path`` calibrated on ``images`` (float32 NCHW model input),
    written atomically. The defaults are what facerec-export uses; the keywords (``quantize_static``'s, by
    name: QuantType and CalibrationMethod member names) exist for bench/onnx_latency.py's comparisons.

    ``preprocess`` runs onnxruntime's quantization pre-processing first (shape inference, then graph
    optimisation: the exporter's Identity nodes go, a BatchNormalization after a convolution is folded in).
    """
    with tempfile.TemporaryDirectory(prefix="facerec-int8-") as tmp:
        source = Path(fp32_path)
        if preprocess:
            source = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        with _quiet_root_warnings():
            quantize_static(
                str(source),
                str(out),
                _FaceCalibration(np.ascontiguousarray(images, dtype=np.float32), batch),
                quant_format=QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator,
                op_types_to_quantize=op_types,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=getattr(QuantType, activations),
                weight_type=getattr(QuantType, weights),
                calibrate_method=getattr(CalibrationMethod, method),
            )
        with out.open("rb") as src:
            atomic_write(path, lambda f: shutil.copyfileobj(src, f))


def fp16_providers() -> tuple[list[str], str]:
    """Where an fp16 model can be checked here: onnxruntime's CUDA provider when it has one, else the CPU
    provider (recent onnxruntime releases run float16 graphs on CPU, slowly). ``(providers, where)``."""
    if CUDA in ort.get_available_providers():
        return [CUDA, CPU], "onnxruntime CUDA provider"
    return [CPU], "onnxruntime CPU provider"


def runs_here(path: str | Path, input_size: int, providers: list[str] | None = None) -> str:
    """'' when onnxruntime loads and runs the model on ``providers``, else why not (one line)."""
    try:
        session = ort_session(path, providers=providers)
        session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((1, 3, input_size, input_size), np.float32)})
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises untyped errors for missing kernels)
        lines = str(exc).strip().splitlines()
        return lines[0][:200] if lines else type(exc).__name__
    return ""


def check_providers(precision: str, device: str = "auto") -> tuple[list, str, str | None]:
    """Where facerec-export checks a ``precision`` model and scores --check-bin: ``(providers, where, note)``.

    ``auto``: the precision's target: fp16 on onnxruntime's CUDA provider when it has one (``fp16_providers``),
    fp32 and int8 on its CPU provider. ``cpu``, ``cuda``, ``cuda:N``: that provider; ``note`` says so when
    CUDA was asked for and this onnxruntime lacks it (the check then runs on CPU)."""
    if device == "auto":
        if precision != "fp16":
            return [CPU], "onnxruntime CPU provider", None
        providers, where = fp16_providers()
        note = None if CUDA in providers else ("no onnxruntime CUDA provider here; checked with the CPU provider "
                                               "instead (fp16 is meant for CUDA: its CPU latency says nothing "
                                               "about GPU speed)")
        return providers, where, note
    providers, note = onnx_providers(device, ort.get_available_providers())
    return providers, f"onnxruntime {'CPU' if providers[0] == CPU else 'CUDA'} provider", note


def verification_accuracy(model: str | Path, bin_path: str | Path, *, device: str = "cpu",
                          batch_size: int = 64, progress: bool = False) -> dict:
    """facerec-eval's 10-fold result (flip fusion on, its default batch) for ``model`` on one .bin pack;
    ``progress``: a bar while the pack is embedded (on a terminal only)."""
    bin_path = Path(bin_path)
    protocol = VerificationProtocol(bin_path.stem)
    prepared = protocol.prepare(bin_path)
    embedder = Embedder(model, device=device, batch_size=batch_size)
    with progress_bar(total=protocol.count_images(prepared), unit="img", desc=f"scoring {bin_path.name}",
                      disable=not progress) as bar:
        features = protocol.extract(prepared, embedder, batch_size=batch_size, progress=bar)
    return protocol.score(features).result
