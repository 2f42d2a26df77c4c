"""facerec-export: checkpoint → ONNX (dynamic batch), checked against torch with onnxruntime.

    facerec-export --checkpoint OUT/model.pt --output model.onnx [--opset 17] [--batch 8]

Prints the max abs difference on a batch (exit 1 above --tolerance, the file is then not written)
and the CPU latency of torch eager vs onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from facerec.checkpoint import load_backbone
from facerec.errors import FaceRecError
from facerec.export import MIN_OPSET, check_parity, export_onnx, measure_latency
from nas_core.errors import run_cli


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="facenas checkpoint (.pt)")
    parser.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (≥ {MIN_OPSET})")
    parser.add_argument("--batch", type=int, default=8, help="batch for the parity check and latency")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per engine (median reported)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    if args.opset < MIN_OPSET:
        raise FaceRecError(f"--opset {args.opset}: expected {MIN_OPSET} or newer")
    if args.batch < 1:
        raise FaceRecError(f"--batch {args.batch}: expected a positive batch size")
    backbone, _ = load_backbone(args.checkpoint)
    output = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    # Check a temporary file and rename only a model that passed: never leave a bad model.onnx.
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".onnx")
    os.close(fd)
    try:
        export_onnx(backbone, tmp, opset=args.opset)
        diff = check_parity(backbone, tmp, batch=args.batch)
        print(f"parity: max abs diff {diff:.3g} on a batch of {args.batch} (tolerance {args.tolerance:g})")
        if not diff <= args.tolerance:
            print(f"error: {output}: onnxruntime output differs from torch by {diff:.3g}; not written", file=sys.stderr)
            return 1
        timing = measure_latency(backbone, tmp, batch=args.batch, repeats=args.repeats)
        print(
            f"cpu latency (batch {args.batch}): torch eager {timing['torch_ms']:.1f} ms, "
            f"onnxruntime {timing['onnxruntime_ms']:.1f} ms (onnxruntime/torch {timing['ratio']:.2f}x)"
        )
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
