"""GPU check, ready to run: one script, no download, one JSON of what a GPU user of facerec-search meets.

    python bench/gpu_check.py --output bench/results/gpu_check_<gpu>.json     # sized for < 6 min on one GPU
    python bench/gpu_check.py --device cpu --tiny                           # seconds: the test suite's size

In a temporary folder:
  1. pack    a synthetic CASIA-shaped pack (default 2,000 identities x 20 face-like 112x112 JPEGs, written
             through facerec.data.recordio as InsightFace packs CASIA-WebFace) plus an lfw.bin of pairs of
             identities outside the pack; its decoded cache (facerec-data cache's code), images/s of the build.
  2. train   for IResNet-50 and the R-58-256 shape the paper's small face search found (28 blocks, C = 32):
             AMP + channels_last training images/s fed by (b) the decoded cache held on the device with
             on-device augmentation, and (c) the compute-only limit (the same step on one pre-made batch):
             each round's figure, their medians, the ratio of the medians (target >= 0.9) and the peak GPU
             memory (bench/data_path.py's measure()).
  3. search  `facerec-search --parallel 1 --max-trials 3` on a subset of the pack, cache on the device:
             wall time, each trial's epochs, seconds and fitness (trial_records; their seconds add up to
             search_seconds).
  4. export  `facerec-train` one epoch of the found genotype, `facerec-export` (parity with onnxruntime's CPU
             provider), and parity of onnxruntime's CUDA provider against torch when onnxruntime-gpu is
             installed ("skipped" with the reason otherwise).
  5. eval    `facerec-eval --protocol lfw --device <device>` on the checkpoint and on the ONNX file.
Each step's failure is recorded in the JSON ("error") and the others still run; exit 1 when any failed.
"seconds" holds each step's wall time, "command_seconds" each command's (start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # bench/, the repo
from data_path import casia_like, measure  # noqa: E402  (bench/ is a folder of scripts, not a package)

from eval_protocols.bins import write_bin  # noqa: E402
from facerec.data.cache import build_cache  # noqa: E402
from facerec.data.datasets import FacePack  # noqa: E402
from facerec.data.images import encode_jpeg  # noqa: E402
from facerec.data.recordio import write_face_pack  # noqa: E402
from nas_core.genotype import Genotype  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NETS = {"iresnet50": "iresnet50", "R-58-256 shape": "r58"}


def _device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    try:
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__, ort_providers=onnxruntime.get_available_providers())
    except ImportError:
        info["onnxruntime"] = None
    return info


def make_pack(folder: Path, identities: int, per_identity: int, pairs: int) -> dict:
    """The synthetic pack, its lfw.bin (pairs of identities drawn with another seed: none is in the pack) and
    the decoded cache."""
    tic = time.perf_counter()
    info = write_face_pack(folder, casia_like(identities * per_identity, per_identity))
    packed = time.perf_counter() - tic
    outside = list(casia_like(2 * pairs, 2, seed=1))
    encoded, issame = [], []
    for i in range(pairs):
        same = i % 2 == 0
        first = outside[i][0]
        second = outside[i][1] if same else outside[(i + 1) % len(outside)][1]
        encoded += [encode_jpeg(first, 95), encode_jpeg(second, 95)]
        issame.append(same)
    write_bin(folder / "lfw.bin", encoded, issame)
    tic = time.perf_counter()
    build_cache(FacePack(folder), workers=os.cpu_count() or 1, progress=False)
    cached = time.perf_counter() - tic
    return {"images": info["images"], "identities": info["identities"], "pack_seconds": round(packed, 3),
            "cache_seconds": round(cached, 3), "cache_images_per_second": round(info["images"] / cached),
            "lfw_pairs": pairs}


def training_throughput(pack: Path, device: torch.device, batch_size: int, steps: int, rounds: int) -> dict:
    """Per net: (b) cache on the device + step and (c) compute-only images/s (each round's and the medians), the
    ratio of the medians, peak memory."""
    out = {}
    for name, net in NETS.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rates = measure(pack, device, net=net, batch_size=batch_size, steps=steps, rounds=rounds, workers=0,
                        methods=("(b) + step", "(c) compute"), on_device=True, echo=lambda line: None)
        cache, compute = (statistics.median(rates[m]) for m in ("(b) + step", "(c) compute"))
        out[name] = {"batch_size": batch_size, "cache_step_images_per_second": round(cache, 2),
                     "compute_only_images_per_second": round(compute, 2), "ratio": round(cache / compute, 3),
                     "rounds": {"cache_step": [round(r, 2) for r in rates["(b) + step"]],
                                "compute_only": [round(r, 2) for r in rates["(c) compute"]]},
                     "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                     if device.type == "cuda" else None}
    return out


COMMAND_SECONDS: dict[str, float] = {}  # wall time of each command run, start-up included


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True)
    name = module.rsplit(".", 1)[-1]
    COMMAND_SECONDS[name] = round(COMMAND_SECONDS.get(name, 0.0) + time.perf_counter() - tic, 1)
    if done.returncode != 0:
        raise RuntimeError(f"python -m {module} {' '.join(args)} -> exit {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done


def search_trials(pack: Path, run: Path, device: torch.device, subset_ids: int, extra: list[str]) -> dict:
    tic = time.perf_counter()
    _cli("facerec.cli.search", "--data", str(pack), "--output", str(run), "--subset-ids", str(subset_ids),
         "--max-trials", "3", "--e-min", "1", "--parallel", "1", "--device", str(device), "--cache-on-device",
         "--no-progress", *extra)
    wall = time.perf_counter() - tic
    result = json.loads((run / "result.json").read_text())
    lines = [line[line.index("trial "):] for line in (run / "search.log").read_text().splitlines() if " -> " in line]
    trials = result["trials"]  # facerec-search: the trial records
    records = [{"genotype": Genotype.from_dict(t["genotype"]).key(), "epochs": t["epochs"],
                "seconds": round(t["result"]["seconds"], 2), "fitness": round(t["result"]["accuracy"], 2)}
               for t in trials]
    return {"wall_seconds": round(wall, 1), "trials": len(trials), "genotype": result["genotype"],
            "search_seconds": result.get("search_seconds"), "trial_records": records, "trial_lines": lines}


def _ort_cuda_parity(checkpoint: Path, onnx_path: Path, pack: Path) -> dict:
    import onnxruntime

    from eval_protocols.embed import to_input
    from facerec.deploy.export import compare_embeddings, ort_session, run_onnx
    from facerec.deploy.export_data import read_face_images
    from facerec.model.checkpoint import load_backbone

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return {"skipped": "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"}
    inputs = to_input(read_face_images(pack, 64))
    module, _ = load_backbone(checkpoint, map_location="cpu")
    with torch.inference_mode():
        expected = module.eval()(torch.from_numpy(inputs)).numpy()
    session = ort_session(onnx_path, providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    parity = compare_embeddings(expected, run_onnx(session, inputs, 16))
    return {"provider": session.get_providers()[0], "passed": parity.passed, "rel_l2": parity.rel_l2,
            "min_cosine": parity.cosine, "samples": parity.samples}


def export_and_eval(pack: Path, run: Path, work: Path, device: torch.device, subset_ids: int) -> dict:
    model = work / "model"
    _cli("facerec.cli.train", "--genotype", str(run / "result.json"), "--data", str(pack), "--output", str(model),
         "--subset-ids", str(subset_ids), "--epochs", "1", "--device", str(device), "--cache-on-device",
         "--no-progress")
    onnx_path = work / "model.onnx"
    exported = _cli("facerec.cli.export", "--checkpoint", str(model / "model.pt"), "--output", str(onnx_path),
                    "--data", str(pack), "--batch-size", "16", "--repeats", "3")
    out = {"export": [line for line in exported.stdout.splitlines() if "parity" in line.lower()
                      or "relative" in line][:3],
           "ort_cuda_parity": _ort_cuda_parity(model / "model.pt", onnx_path, pack)}
    for name, path in (("eval_pt", model / "model.pt"), ("eval_onnx", onnx_path)):
        report = work / f"{name}.json"
        _cli("facerec.cli.eval", "--model", str(path), "--data", str(pack), "--protocol", "lfw", "--device",
             str(device), "--output", str(report))
        out[name] = json.loads(report.read_text())
    return out


def _step(results: dict, name: str, work) -> None:
    tic = time.perf_counter()
    try:
        results[name] = work()
    except Exception as exc:  # recorded, and the remaining steps still run
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    results.setdefault("seconds", {})[name] = round(time.perf_counter() - tic, 1)
    print(f"{name}: {time.perf_counter() - tic:.1f} s" + (" (FAILED)" if "error" in results[name] else ""),
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--identities", type=int, default=2000)
    p.add_argument("--per-identity", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256, help="training batch of step 2")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round in step 2")
    p.add_argument("--search-ids", type=int, default=500, help="identities the three search trials train on")
    p.add_argument("--output", help="write the JSON here too (e.g. bench/results/gpu_check_h200.json)")
    p.add_argument("--tiny", action="store_true", help="CPU-test size: 24 identities x 8 images, batch 2, 1 step")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.tiny:
        args.identities, args.per_identity, args.batch_size, args.steps, args.search_ids = 24, 8, 2, 1, 24
    results: dict = {"host": _device_info(device), "settings": {k: v for k, v in vars(args).items() if k != "output"}}
    with tempfile.TemporaryDirectory() as tmp:
        pack, run, work = Path(tmp) / "pack", Path(tmp) / "search", Path(tmp)
        _step(results, "pack", lambda: make_pack(pack, args.identities, args.per_identity, 60 if args.tiny else 600))
        if "error" not in results["pack"]:
            _step(results, "train", lambda: training_throughput(pack, device, args.batch_size, args.steps,
                                                                1 if args.tiny else 3))
            narrow = ["--w-max", "8", "--w-min", "4", "--embedding-size", "64"] if args.tiny else []  # CPU seconds
            _step(results, "search", lambda: search_trials(pack, run, device, args.search_ids, narrow))
        if "error" not in results.get("search", {"error": "no pack"}):
            _step(results, "export_eval", lambda: export_and_eval(pack, run, work, device, args.search_ids))
    results["command_seconds"] = COMMAND_SECONDS
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
