"""CPU latency of ONNX Runtime against torch eager, and of fp16 / int8 models against fp32 onnxruntime (each
baseline measured in the same run, alternating), with the accuracy they give on a verification pack.

    python bench/onnx_latency.py [--batches 1 16] [--repeats 5] [--threads 1 2]
    python bench/onnx_latency.py --checkpoint WORK/model/model.pt --check-bin WORK/heldout/orl.bin \\
        --calibration WORK/train [--batches 16] [--int8-variants]

Without --checkpoint: a found-like searched net (R-58-256 shape: 28 blocks, C=32, a few conv / 5x5 blocks)
and the fixed IResNet-18, random weights; exports ONNX (as facerec-export does), checks parity, prints
median milliseconds per batch and onnxruntime / torch (below 1: onnxruntime is faster).
With --checkpoint: that model; with --check-bin also fp16 and (given --calibration) int8 rows: the
10-fold accuracy on the pack (facerec-eval's numbers), the drop from fp32 in points, and the latency
ratio against fp32 onnxruntime. --int8-variants adds rows for other quantization settings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from facerec.deploy.export import check_parity, export_onnx, input_size, measure_latency, measure_onnx_latency
from facerec.model.backbones import create_backbone
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

# Settings tried against facerec-export's int8 (facerec.deploy.quantize.write_int8's defaults), each a change of
# one keyword of write_int8.
INT8_VARIANTS = {
    "int8 u8s8 full range": {"weights": "QInt8", "reduce_range": False},
    "int8 u8s8 7-bit w": {"weights": "QInt8", "reduce_range": True},
    "int8 s8s8": {"weights": "QInt8", "activations": "QInt8"},
    "int8 per-tensor": {"per_channel": False},
    "int8 QOperator": {"quant_format": "QOperator"},
    "int8 percentile": {"method": "Percentile"},
    "int8 conv+gemm only": {"op_types": ["Conv", "Gemm"]},
    "int8 no pre-process": {"preprocess": False},
}


def found_like() -> Genotype:
    genotype = Genotype.uniform(28, 32)
    for i in (0, 1, 7, 14, 21):
        genotype = genotype.with_layer(i, op="conv")
    for i in (3, 10, 17, 24):
        genotype = genotype.with_layer(i, kernel=5)
    return genotype


def torch_rows(models: dict, tmp: Path, args, thread_counts: list[int]) -> dict[str, Path]:
    """torch eager vs fp32 onnxruntime per model, threads and batch; returns the exported files."""
    print(f"{'model':<16} {'params':>11} {'threads':>7} {'batch':>5} {'torch ms':>9} {'ort ms':>9} "
          f"{'ort/torch':>9}")
    paths = {}
    for label, model in models.items():
        model.eval()
        paths[label] = path = tmp / f"{label.replace(' ', '_')}.onnx"
        export_onnx(model, path)
        diff = check_parity(model, path, batch=2).rel_l2
        params = sum(p.numel() for p in model.parameters())
        for threads in thread_counts:
            torch.set_num_threads(threads)  # onnxruntime gets the same count (measure_latency)
            for batch in args.batches:
                t = measure_latency(model, path, batch=batch, repeats=args.repeats)
                print(
                    f"{label:<16} {params:>11,} {threads:>7} {batch:>5} {t['torch_ms']:>9.1f} "
                    f"{t['onnxruntime_ms']:>9.1f} {t['ratio']:>8.2f}x   (parity: relative L2 error "
                    f"{diff:.1e})"
                )
    return paths


def precision_rows(fp32: Path, size: int, tmp: Path, args, thread_counts: list[int]) -> None:
    """fp16 / int8 (and variants): accuracy on --check-bin, drop from fp32, latency vs fp32 onnxruntime."""
    from eval_protocols.embed import to_input
    from facerec.deploy import quantize
    from facerec.deploy.export_data import read_face_images

    builds = {"fp16": lambda path: quantize.write_fp16(fp32, path)}
    if args.calibration:
        calibration = to_input(read_face_images(args.calibration, 256, size, flag="--calibration"))
        variants = {"int8": {}, **(INT8_VARIANTS if args.int8_variants else {})}
        for name, settings in variants.items():
            builds[name] = lambda path, s=settings: quantize.write_int8(fp32, path, calibration, **s)
    base = quantize.verification_accuracy(fp32, args.check_bin)
    print(f"\n{args.check_bin}: {base['pairs']} pairs, fp32 accuracy {100 * base['accuracy']:.2f}%")
    print(f"{'precision':<22} {'threads':>7} {'batch':>5} {'fp32 ms':>8} {'ms':>8} {'vs fp32':>8} "
          f"{'accuracy':>8} {'drop':>6}")
    for name, build in builds.items():
        path = tmp / f"{name.replace(' ', '_')}.onnx"
        build(path)
        providers = quantize.fp16_providers()[0] if name == "fp16" else None
        device = "cuda" if providers and quantize.CUDA in providers else "cpu"
        why_not = quantize.runs_here(path, size, providers)
        if why_not:
            print(f"{name:<22} not run here: {why_not}")
            continue
        accuracy = quantize.verification_accuracy(path, args.check_bin, device=device)["accuracy"]
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for batch in args.batches:
                ms = measure_onnx_latency({"fp32": fp32, name: path}, size, batch=batch, repeats=args.repeats,
                                          providers=providers)
                print(f"{name:<22} {threads:>7} {batch:>5} {ms['fp32']:>8.1f} {ms[name]:>8.1f} "
                      f"{ms[name] / ms['fp32']:>7.2f}x {100 * accuracy:>7.2f}% "
                      f"{100 * (base['accuracy'] - accuracy):>6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="intra-op threads of both engines (default: 1 and all)")
    parser.add_argument("--checkpoint", type=Path, help="a facenas checkpoint instead of the two random nets")
    parser.add_argument("--check-bin", type=Path, help="verification .bin: fp16 / int8 rows with accuracy "
                                                         "drop")
    parser.add_argument("--calibration", type=Path, help="int8 calibration images (pack, image folder, .bin)")
    parser.add_argument("--int8-variants", action="store_true", help="also time other int8 settings")
    args = parser.parse_args(argv)
    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    if args.checkpoint:
        from facerec.model.checkpoint import load_backbone

        models = {args.checkpoint.parent.name or "model": load_backbone(args.checkpoint)[0]}
        print(f"torch {torch.__version__}; {args.checkpoint}")
    else:
        genotype = found_like()
        models = {"found R-58-256": IResNetSpace().build(genotype), "iresnet18": create_backbone("iresnet18")}
        print(f"torch {torch.__version__}; found R-58-256 = {genotype.key()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = torch_rows(models, Path(tmp), args, thread_counts)
        if args.checkpoint and args.check_bin:
            model = next(iter(models.values()))
            precision_rows(next(iter(paths.values())), input_size(model), Path(tmp), args, thread_counts)
        elif args.check_bin or args.calibration:
            print("--check-bin / --calibration need --checkpoint (a trained model): no fp16 / int8 rows",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
