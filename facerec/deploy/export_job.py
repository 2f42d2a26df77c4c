"""The facerec-export job: checkpoint → ONNX, parity-checked against torch; fp16 / int8 copies judged by their
verification accuracy on --check-bin; only a model that passed is written (ARCHITECTURE §6, §7).

Every option is checked before the checkpoint is loaded; bad ones raise FaceRecError (one line, exit 2).
A model that fails a check is refused with one ``error:`` line and exit 1, and nothing is left behind.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval_protocols.bins import read_bin
from eval_protocols.embed import to_input
from facerec.deploy import export, quantize, threshold
from facerec.deploy.export_data import read_face_images
from facerec.deploy.options import CALIBRATION_IMAGES, PARITY_IMAGES, PRECISIONS, ExportOptions
from facerec.errors import FaceRecError
from facerec.model.checkpoint import load_backbone
from nas_core.errors import NasError


@dataclass(frozen=True)
class _Limits:
    """The two thresholds given as text, read as numbers."""

    tolerance: float
    max_drop: float


def _number(flag: str, text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise FaceRecError(f"{flag} {text}: expected {what}")
    return value


def _check_options(options: ExportOptions) -> _Limits:
    """Every option checked before the checkpoint is loaded or anything is written."""
    if Path(options.output).is_dir():
        raise FaceRecError(f"--output {options.output}: expected an .onnx file name, found a folder")
    if options.opset < export.MIN_OPSET:
        raise FaceRecError(f"--opset {options.opset}: expected {export.MIN_OPSET} or newer")
    if options.batch_size < 1:
        raise FaceRecError(f"--batch-size {options.batch_size}: expected a positive batch size")
    if options.repeats < 1:
        raise FaceRecError(f"--repeats {options.repeats}: expected at least 1 timed run")
    if options.precision not in PRECISIONS:
        raise FaceRecError(f"--precision {options.precision}: expected one of {', '.join(PRECISIONS)}")
    limits = _Limits(
        tolerance=_number("--tolerance", options.tolerance, 1e-9, 0.1,
                          "a relative L2 error between 1e-9 and 0.1 (default 1e-4)"),
        max_drop=_number("--max-drop", options.max_drop, 0.0, 100.0, "accuracy points between 0 and 100"))
    if options.precision == "int8" and not options.calibration:
        raise FaceRecError("--precision int8: expected --calibration PACK_OR_BIN (face images to calibrate on)")
    if options.precision != "fp32" and not options.check_bin:
        raise FaceRecError(f"--precision {options.precision}: expected --check-bin BIN (a verification .bin "
                           "pack) to measure the accuracy drop against fp32")
    if options.check_bin:
        try:
            read_bin(options.check_bin)
        except NasError as exc:  # the reader's message names the file; add the flag
            raise FaceRecError(f"--check-bin {exc}") from None
    return limits


def _face_inputs(options: ExportOptions, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(parity images from --data and --calibration, calibration images or None), float32 NCHW."""
    parity, calibration = [], None
    if options.data:
        parity.append(to_input(read_face_images(options.data, PARITY_IMAGES, size, flag="--data")))
    if options.calibration:
        images = read_face_images(options.calibration, CALIBRATION_IMAGES, size, flag="--calibration")
        calibration = to_input(images)
        parity.append(calibration[:PARITY_IMAGES])
    empty = np.zeros((0, 3, size, size), np.float32)
    return (np.concatenate(parity) if parity else empty), calibration


def _created_dirs(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would make, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def run_export(options: ExportOptions) -> int:
    """Export, check and write --output; 0 when written, 1 when a check refused the model."""
    limits = _check_options(options)
    backbone, ckpt = load_backbone(options.checkpoint)
    metadata = _threshold_metadata(options.checkpoint, ckpt)
    size = export.input_size(backbone)
    faces, calibration = _face_inputs(options, size)
    output = Path(options.output)
    made = _created_dirs(output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = False
    try:
        # Everything is built in a hidden folder beside the output; only a model that passed is renamed
        # into place (an atomic rename within one file system), so a failure never leaves a bad model.
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
            model = _build(options, limits, backbone, faces, calibration, Path(tmp), size, metadata)
            if model is not None:
                model.replace(output)
                written = True
    finally:
        if not written:
            for folder in reversed(made):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    if not written:
        return 1
    kept = f" with the checkpoint's verification threshold (metadata {threshold.ONNX_KEY})" if metadata else ""
    print(f"wrote {output}{kept}")
    return 0


def _refuse(output: str, why: str) -> None:
    print(f"error: {output}: {why}; not written", file=sys.stderr)


def _threshold_metadata(path: str, ckpt: dict) -> dict[str, str]:
    """The checkpoint's calibrated verification threshold as ONNX metadata (facerec.deploy.threshold), checked."""
    value = ckpt.get(threshold.CHECKPOINT_KEY)
    if value is None:
        return {}
    return threshold.onnx_metadata(threshold.checked_threshold(value, f"{path}: {threshold.CHECKPOINT_KEY}"))


def _build(options: ExportOptions, limits: _Limits, backbone, faces: np.ndarray, calibration: np.ndarray | None,
           tmp: Path, size: int, metadata: dict[str, str] | None = None) -> Path | None:
    """The model file to install at --output, or None (refused; the reason is printed). ``metadata`` goes into
    the fp32 graph, and the fp16 / int8 copies keep it."""
    batch = options.batch_size
    fp32 = tmp / "fp32.onnx"
    export.export_onnx(backbone, fp32, opset=options.opset, metadata=metadata)
    parity = export.check_parity(backbone, fp32, batch=batch, images=faces, tolerance=limits.tolerance)
    sources = f"{batch} random" + (f" + {len(faces)} face images" if len(faces) else "")
    print(f"parity (onnxruntime vs torch, {sources}): {parity.describe()}")
    if not parity.passed:
        _refuse(options.output, parity.problem or (
            f"onnxruntime differs from torch by a relative L2 error of {parity.rel_l2:.2g} "
            f"(> {limits.tolerance:g}) on {parity.failing} of {parity.samples} samples"))
        return None
    if options.precision != "fp32":
        return _reduced(options, limits, fp32, faces, calibration, tmp / f"{options.precision}.onnx", size)
    timing = export.measure_latency(backbone, fp32, batch=batch, repeats=options.repeats)
    print(f"cpu latency (batch {batch}): torch eager {timing['torch_ms']:.1f} ms, onnxruntime "
          f"{timing['onnxruntime_ms']:.1f} ms (onnxruntime/torch {timing['ratio']:.2f}x)")
    if options.check_bin:
        providers, _, _ = quantize.check_providers("fp32", options.device)
        result = quantize.verification_accuracy(fp32, options.check_bin, device=_scoring_device(options, providers),
                                                progress=options.progress)
        print(f"check-bin {options.check_bin} ({result['pairs']} pairs): fp32 {100 * result['accuracy']:.2f}%")
    return fp32


def _scoring_device(options: ExportOptions, providers: list) -> str:
    """The --device that scores --check-bin on ``providers`` (the CUDA one when it leads)."""
    if providers[0] == quantize.CPU:
        return "cpu"
    return "cuda" if options.device == "auto" else options.device


def _reduced(options: ExportOptions, limits: _Limits, fp32: Path, faces: np.ndarray,
             calibration: np.ndarray | None, reduced: Path, size: int) -> Path | None:
    """``reduced``, the fp16 / int8 copy of ``fp32``, if it runs, gives finite float32 embeddings of the right
    shape and keeps the verification accuracy within --max-drop; else None."""
    precision, batch = options.precision, options.batch_size
    if precision == "int8":
        quantize.write_int8(fp32, reduced, calibration, batch=batch)
    else:
        quantize.write_fp16(fp32, reduced)
    providers, where, note = quantize.check_providers(precision, options.device)
    why_not = quantize.runs_here(reduced, size, providers)
    if why_not and precision == "fp16":
        # Written all the same: fp16 is made for GPUs, a CPU-only machine is where one often exports, and the
        # fp32 graph it converts passed the parity check above.
        print(f"fp16: not verified here: it runs only with onnxruntime's CUDA provider, which this machine "
              f"lacks (CPU provider: {why_not}); written unverified: check it with facerec-eval --device "
              "cuda")
        return reduced
    if why_not:
        _refuse(options.output, f"onnxruntime cannot run the {precision} model ({why_not})")
        return None
    if note:
        print(f"{precision}: {note}")
    inputs = np.concatenate([export.sample_batch(size, batch).numpy(), faces])
    expected = export.run_onnx(export.ort_session(fp32), inputs, batch)
    got = export.run_onnx(export.ort_session(reduced, providers=providers), inputs, batch)
    agreement = export.compare_embeddings(expected, got)
    if agreement.problem:
        _refuse(options.output, f"{precision} model: {agreement.problem}")
        return None
    print(f"{precision} vs fp32 ({len(inputs)} images): min cosine {agreement.cosine:.5f}, worst relative L2 "
          f"error {agreement.rel_l2:.2g} (for information; the accuracy decides)")
    device = _scoring_device(options, providers)
    base = quantize.verification_accuracy(fp32, options.check_bin, device=device, progress=options.progress)
    scored = quantize.verification_accuracy(reduced, options.check_bin, device=device, progress=options.progress)
    # Rounded: fold accuracies are ratios, and a 0.5-point drop must not fail --max-drop 0.5 on the last bit.
    drop = round(100 * (base["accuracy"] - scored["accuracy"]), 9)
    print(f"check-bin {options.check_bin} ({base['pairs']} pairs): fp32 {100 * base['accuracy']:.2f}%, "
          f"{precision} {100 * scored['accuracy']:.2f}% (drop {drop:.2f} points, "
          f"--max-drop {limits.max_drop:g})")
    ms = export.measure_onnx_latency({"fp32": fp32, precision: reduced}, size, batch=batch,
                                     repeats=options.repeats, providers=providers)
    print(f"latency (batch {batch}, {where}): fp32 {ms['fp32']:.1f} ms, {precision} "
          f"{ms[precision]:.1f} ms ({precision}/fp32 {ms[precision] / ms['fp32']:.2f}x)")
    if drop > limits.max_drop:
        _refuse(options.output, f"{precision} loses {drop:.2f} accuracy points on {options.check_bin} "
                                f"(> --max-drop {limits.max_drop:g})")
        return None
    return reduced
