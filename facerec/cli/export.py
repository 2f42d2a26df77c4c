"""facerec-export: checkpoint → ONNX (dynamic batch), checked against torch with onnxruntime.

    facerec-export --checkpoint OUT/model.pt --output model.onnx [--data PACK] [--tolerance 1e-4]
    facerec-export --checkpoint OUT/model.pt --output model-int8.onnx --precision int8 \\
        --calibration PACK --check-bin heldout/orl.bin [--max-drop 0.5]

Parity: per sample, ‖onnxruntime − torch‖₂ ≤ tolerance·‖torch‖₂ (plus a 1e-6 absolute floor) on a random
batch and on face images from --data / --calibration; exit 1 and nothing written when a sample fails.
fp16 / int8: the verification accuracy on --check-bin of fp32 and of the reduced model (facerec-eval's
numbers), exit 1 and nothing written when it drops by more than --max-drop points; and the onnxruntime
latency of both. fp16 is checked with onnxruntime's CUDA provider, else its CPU provider; where neither
runs it, it is written unverified with a line saying so (it is made for GPUs, and its fp32 source
passed the parity check).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from facerec.deploy.export import MIN_OPSET, PARITY_TOLERANCE
from facerec.deploy.quantize import PRECISIONS
from facerec.errors import FaceRecError
from nas_core.errors import NasError, run_cli

PARITY_IMAGES = 64  # face images from --data (and as many from --calibration) in the parity check
CALIBRATION_IMAGES = 256  # int8 activation ranges are calibrated on this many --calibration images


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="facenas checkpoint (.pt)")
    parser.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    # The new flags are checked in _export (one-line errors, exit 2) rather than by argparse (usage + error).
    parser.add_argument("--precision", default="fp32", metavar="{fp32,fp16,int8}",
                        help="fp32 (default); fp16 (weights and activations, for onnxruntime CUDA); int8 "
                             "(static QDQ per-channel, needs --calibration); fp16/int8 need --check-bin")
    parser.add_argument("--data", help=f"face images for the parity check ({PARITY_IMAGES} of them): face "
                                       "pack folder, image folder or .bin")
    parser.add_argument("--calibration", help=f"int8 calibration images ({CALIBRATION_IMAGES} of them): face "
                                              "pack folder, image folder or .bin; also checked for parity")
    parser.add_argument("--check-bin", help="verification .bin pack: 10-fold accuracy of fp32 and of "
                                            "--precision")
    parser.add_argument("--max-drop", default="0.5", help="accuracy drop allowed for fp16/int8, in points "
                                                           "(default 0.5)")
    parser.add_argument("--tolerance", default=str(PARITY_TOLERANCE),
                        help="parity: relative L2 error allowed per sample (default 1e-4)")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (≥ {MIN_OPSET})")
    parser.add_argument("--batch", type=int, default=8, help="batch for the parity check and latency")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per engine (median reported)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _export(args), hold_native_output=True)


def _number(flag: str, text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise FaceRecError(f"{flag} {text}: expected {what}")
    return value


def _check_flags(args: argparse.Namespace) -> None:
    """Every flag checked before the checkpoint is loaded or anything is written."""
    if args.output.is_dir():
        raise FaceRecError(f"--output {args.output}: expected an .onnx file name, found a folder")
    if args.opset < MIN_OPSET:
        raise FaceRecError(f"--opset {args.opset}: expected {MIN_OPSET} or newer")
    if args.batch < 1:
        raise FaceRecError(f"--batch {args.batch}: expected a positive batch size")
    if args.repeats < 1:
        raise FaceRecError(f"--repeats {args.repeats}: expected at least 1 timed run")
    if args.precision not in PRECISIONS:
        raise FaceRecError(f"--precision {args.precision}: expected one of {', '.join(PRECISIONS)}")
    args.tolerance = _number("--tolerance", args.tolerance, 1e-9, 0.1,
                             "a relative L2 error between 1e-9 and 0.1 (default 1e-4)")
    args.max_drop = _number("--max-drop", args.max_drop, 0.0, 100.0, "accuracy points between 0 and 100")
    if args.precision == "int8" and not args.calibration:
        raise FaceRecError("--precision int8: expected --calibration PACK_OR_BIN (face images to calibrate "
                           "on)")
    if args.precision != "fp32" and not args.check_bin:
        raise FaceRecError(f"--precision {args.precision}: expected --check-bin BIN (a verification .bin "
                           "pack) to measure the accuracy drop against fp32")
    if args.check_bin:
        from eval_protocols.bins import read_bin

        try:
            read_bin(args.check_bin)
        except NasError as exc:  # the reader's message names the file; add the flag
            raise FaceRecError(f"--check-bin {exc}") from None


def _face_inputs(args: argparse.Namespace, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(parity images from --data and --calibration, calibration images or None), float32 NCHW."""
    from eval_protocols.embed import to_input
    from facerec.deploy.export_data import read_face_images

    parity, calibration = [], None
    if args.data:
        parity.append(to_input(read_face_images(args.data, PARITY_IMAGES, size, flag="--data")))
    if args.calibration:
        images = read_face_images(args.calibration, CALIBRATION_IMAGES, size, flag="--calibration")
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


def _export(args: argparse.Namespace) -> int:
    from facerec.deploy.export import input_size
    from facerec.model.checkpoint import load_backbone

    _check_flags(args)
    backbone, _ = load_backbone(args.checkpoint)
    size = input_size(backbone)
    faces, calibration = _face_inputs(args, size)
    output = args.output
    made = _created_dirs(output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = False
    try:
        # Everything is built in a hidden folder beside the output; only a model that passed is renamed
        # into place (an atomic rename within one file system), so a failure never leaves a bad model.
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as tmp:
            model = _build(args, backbone, faces, calibration, Path(tmp), size)
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
    print(f"wrote {output}")
    return 0


def _refuse(output: Path, why: str) -> None:
    print(f"error: {output}: {why}; not written", file=sys.stderr)


def _build(args, backbone, faces: np.ndarray, calibration: np.ndarray | None, tmp: Path,
           size: int) -> Path | None:
    """The model file to install at --output, or None (refused; the reason is printed)."""
    from facerec.deploy.export import check_parity, export_onnx, measure_latency

    fp32 = tmp / "fp32.onnx"
    export_onnx(backbone, fp32, opset=args.opset)
    parity = check_parity(backbone, fp32, batch=args.batch, images=faces, tolerance=args.tolerance)
    sources = f"{args.batch} random" + (f" + {len(faces)} face images" if len(faces) else "")
    print(f"parity (onnxruntime vs torch, {sources}): {parity.describe()}")
    if not parity.passed:
        _refuse(args.output, parity.problem or (
            f"onnxruntime differs from torch by a relative L2 error of {parity.rel_l2:.2g} "
            f"(> {args.tolerance:g}) on {parity.failing} of {parity.samples} samples"))
        return None
    if args.precision != "fp32":
        return _reduced(args, fp32, faces, calibration, tmp / f"{args.precision}.onnx", size)
    timing = measure_latency(backbone, fp32, batch=args.batch, repeats=args.repeats)
    print(f"cpu latency (batch {args.batch}): torch eager {timing['torch_ms']:.1f} ms, onnxruntime "
          f"{timing['onnxruntime_ms']:.1f} ms (onnxruntime/torch {timing['ratio']:.2f}x)")
    if args.check_bin:
        from facerec.deploy.quantize import verification_accuracy

        result = verification_accuracy(fp32, args.check_bin)
        print(f"check-bin {args.check_bin} ({result['pairs']} pairs): fp32 {100 * result['accuracy']:.2f}%")
    return fp32


def _reduced(args, fp32: Path, faces: np.ndarray, calibration: np.ndarray | None, reduced: Path,
             size: int) -> Path | None:
    """``reduced``, the fp16 / int8 copy of ``fp32``, if it runs, gives finite float32 embeddings of the right
    shape and keeps the verification accuracy within --max-drop; else None."""
    from facerec.deploy import quantize
    from facerec.deploy.export import (
        compare_embeddings,
        measure_onnx_latency,
        ort_session,
        run_onnx,
        sample_batch,
    )

    precision = args.precision
    providers, where = [quantize.CPU], "onnxruntime CPU provider"
    if precision == "int8":
        quantize.write_int8(fp32, reduced, calibration, batch=args.batch)
    else:
        quantize.write_fp16(fp32, reduced)
        providers, where = quantize.fp16_providers()
    why_not = quantize.runs_here(reduced, size, providers)
    if why_not and precision == "fp16":
        # Written all the same: fp16 is made for GPUs, a CPU-only machine is where one often exports, and the
        # fp32 graph it converts passed the parity check above.
        print(f"fp16: not verified here: it runs only with onnxruntime's CUDA provider, which this machine "
              f"lacks (CPU provider: {why_not}); written unverified: check it with facerec-eval --device "
              "cuda")
        return reduced
    if why_not:
        _refuse(args.output, f"onnxruntime cannot run the {precision} model ({why_not})")
        return None
    if precision == "fp16" and quantize.CUDA not in providers:
        print("fp16: no onnxruntime CUDA provider here; checked with the CPU provider instead (fp16 is meant "
              "for CUDA: its CPU latency says nothing about GPU speed)")
    inputs = np.concatenate([sample_batch(size, args.batch).numpy(), faces])
    expected = run_onnx(ort_session(fp32), inputs, args.batch)
    got = run_onnx(ort_session(reduced, providers=providers), inputs, args.batch)
    agreement = compare_embeddings(expected, got)
    if agreement.problem:
        _refuse(args.output, f"{precision} model: {agreement.problem}")
        return None
    print(f"{precision} vs fp32 ({len(inputs)} images): min cosine {agreement.cosine:.5f}, worst relative L2 "
          f"error {agreement.rel_l2:.2g} (for information; the accuracy decides)")
    device = "cuda" if quantize.CUDA in providers else "cpu"
    base = quantize.verification_accuracy(fp32, args.check_bin)
    scored = quantize.verification_accuracy(reduced, args.check_bin, device=device)
    # Rounded: fold accuracies are ratios, and a 0.5-point drop must not fail --max-drop 0.5 on the last bit.
    drop = round(100 * (base["accuracy"] - scored["accuracy"]), 9)
    print(f"check-bin {args.check_bin} ({base['pairs']} pairs): fp32 {100 * base['accuracy']:.2f}%, "
          f"{precision} {100 * scored['accuracy']:.2f}% (drop {drop:.2f} points, "
          f"--max-drop {args.max_drop:g})")
    ms = measure_onnx_latency({"fp32": fp32, precision: reduced}, size, batch=args.batch,
                              repeats=args.repeats, providers=providers)
    print(f"latency (batch {args.batch}, {where}): fp32 {ms['fp32']:.1f} ms, {precision} "
          f"{ms[precision]:.1f} ms ({precision}/fp32 {ms[precision] / ms['fp32']:.2f}x)")
    if drop > args.max_drop:
        _refuse(args.output, f"{precision} loses {drop:.2f} accuracy points on {args.check_bin} "
                             f"(> --max-drop {args.max_drop:g})")
        return None
    return reduced


if __name__ == "__main__":
    raise SystemExit(main())
