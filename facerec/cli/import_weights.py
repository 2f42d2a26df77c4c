"""facerec-import: published IResNet / MobileFaceNet weights (arcface_torch, AdaFace) → a facenas checkpoint.

    facerec-import --format arcface_torch --arch iresnet50 --weights backbone.pth --output r50.pt
    facerec-import --format arcface_torch --arch mobilefacenet --weights backbone.pth --output mbf.pt
    facerec-import --format adaface --arch iresnet100 --weights adaface_ir101_webface12m.ckpt --output ir101.pt

The checkpoint rebuilds itself like any facenas one: facerec-eval --model, facerec-export
--checkpoint and facerec-train --init take it. An AdaFace net is converted to take RGB input like every
facenas model; it outputs AdaFace's embedding before AdaFace's own L2 normalisation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas_core.errors import run_cli
from nas_core.io import output_file


def get_parser() -> argparse.ArgumentParser:
    from facerec.deploy.importers import IMPORT_ARCHS, list_weight_formats

    p = argparse.ArgumentParser(prog="facerec-import", description=__doc__.split("\n\n")[0])
    p.add_argument("--format", required=True, help=f"layout of --weights: {', '.join(list_weight_formats())}")
    p.add_argument("--arch", required=True, help=f"the net the weights are for: {', '.join(IMPORT_ARCHS)}")
    p.add_argument("--weights", required=True, type=Path, help="arcface_torch backbone.pth or AdaFace .ckpt")
    p.add_argument("--output", required=True, type=Path, help="facenas checkpoint to write (replaced if present)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _import(args), hold_native_output=True)


def _import(args: argparse.Namespace) -> int:
    from facerec.deploy.importers import import_weights
    from facerec.model.checkpoint import save_checkpoint

    output_file(args.output)  # a folder, a file in the way or a read-only folder fails before the import
    backbone, notes = import_weights(args.weights, args.format, args.arch)
    for note in notes:
        print(f"note: {note}")
    provenance = {"format": args.format, "weights": str(args.weights)}
    if args.format == "adaface":
        provenance["converted"] = "conv1 input channels reversed (BGR → RGB); identity shortcut in layer1.0"
    save_checkpoint(args.output, backbone=backbone, config={"imported": provenance})
    params = sum(p.numel() for p in backbone.parameters())
    print(f"wrote {args.output}: {args.arch} ({params:,} parameters) with the {args.format} weights of {args.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
