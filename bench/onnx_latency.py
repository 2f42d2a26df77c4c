"""CPU latency of ONNX Runtime against torch eager (the baseline, measured in the same run).

    python bench/onnx_latency.py [--batches 1 16] [--repeats 5] [--threads 1 2]

For a found-like searched net (R-58-256 shape: 28 blocks, C=32, a few conv / 5x5 blocks) and the
fixed IResNet-18, exports ONNX (as facerec-export does), checks parity, and prints median
milliseconds per batch and the ratio onnxruntime / torch (below 1: onnxruntime is faster).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from facerec.backbones import create_backbone
from facerec.export import check_parity, export_onnx, measure_latency
from facerec.space import IResNetSpace
from nas_core.genotype import Genotype


def found_like() -> Genotype:
    genotype = Genotype.uniform(28, 32)
    for i in (0, 1, 7, 14, 21):
        genotype = genotype.with_layer(i, op="conv")
    for i in (3, 10, 17, 24):
        genotype = genotype.with_layer(i, kernel=5)
    return genotype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="intra-op threads of both engines (default: 1 and all)"
    )
    args = parser.parse_args(argv)
    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    genotype = found_like()
    models = {
        "found R-58-256": IResNetSpace().build(genotype),
        "iresnet18": create_backbone("iresnet18"),
    }
    print(f"torch {torch.__version__}; found R-58-256 = {genotype.key()}")
    print(f"{'model':<16} {'params':>11} {'threads':>7} {'batch':>5} {'torch ms':>9} {'ort ms':>9} {'ort/torch':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models.items():
            model.eval()
            path = Path(tmp) / "model.onnx"
            export_onnx(model, path)
            diff = check_parity(model, path, batch=2).rel_l2
            params = sum(p.numel() for p in model.parameters())
            for threads in thread_counts:
                torch.set_num_threads(threads)  # onnxruntime gets the same count (measure_latency)
                for batch in args.batches:
                    t = measure_latency(model, path, batch=batch, repeats=args.repeats)
                    print(
                        f"{label:<16} {params:>11,} {threads:>7} {batch:>5} {t['torch_ms']:>9.1f} "
                        f"{t['onnxruntime_ms']:>9.1f} {t['ratio']:>8.2f}x   (parity: relative L2 error {diff:.1e})"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
