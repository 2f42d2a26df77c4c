"""Does alignment pay? One trained model verifies pairs of real photos of people it never saw, three ways:
the faces detected and aligned by ``facerec-data align`` (MTCNN 5 points → ArcFace template), the same photos
centre-cropped (shorter side scaled to 112, centre 112x112), and the same photos fitted whole into 112x112
(what ``facerec-data pack`` did to a photo before alignment existed: scale to fit, pad).

    python bench/align_report.py          # first: aligns all of raw_faces into runs/raw_faces_aligned
    python bench/align_pays.py            # packs lfw_train, trains the model, exports it, scores the pairs
    python bench/align_pays.py --table    # the README table from the JSON

The model: the search_value bench's found net (found-s0's genotype), trained by ``facerec-train`` on all of
``lfw_train`` (5 epochs, 128-d embeddings, 10 % of the people held out for selection and the threshold). The
pairs: per set of ``raw_faces`` (pins, celeba; none of their people is in LFW), ``--pairs`` pairs (half the same
person) among the photos in which a face was found, so each way sees exactly the same photos. The score is the
10-fold accuracy of ARCHITECTURE §6 and the ROC AUC of the cosine. The model is kept as
bench/results/align_pays/found-lfw-s0.onnx; the figures in bench/results/align_pays/align_pays.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_protocols.verification import evaluate_verification  # noqa: E402
from facerec.data.datasets import sample_pairs  # noqa: E402
from facerec.data.images import fit_face, load_image  # noqa: E402
from facerec.train.validation import pair_auc  # noqa: E402
from nas_core.io import atomic_write_json  # noqa: E402
from tools.shared_data import repo_relative, shared_data  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "align_pays"
GENOTYPE = ROOT / "bench" / "results" / "search_value" / "models" / "found-s0.genotype.json"
TRAIN_FLAGS = ["--epochs", "5", "--embedding-size", "128", "--workers", "0", "--seed", "0", "--device", "cpu",
               "--no-progress"]
WAYS = ("aligned", "centre_crop", "fit_whole")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--aligned", type=Path, default=ROOT / "runs" / "raw_faces_aligned",
                   help="facerec-data align's output for raw_faces (default runs/raw_faces_aligned)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "align_pays", help="pack and training folder")
    p.add_argument("--pairs", type=int, default=6000, help="pairs per set (default 6000, half the same person)")
    p.add_argument("--table", action="store_true", help="print the README table from the JSON and stop")
    return p


def _run(cmd: list[str]) -> float:
    print(f"$ {shlex.join(cmd)}", flush=True)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    return time.perf_counter() - tic


def _model(work: Path) -> tuple[Path, dict]:
    """The trained model as ONNX (packing, training and exporting what is not there yet)."""
    pack, out, onnx = work / "lfw_pack", work / "train", RESULTS / "found-lfw-s0.onnx"
    steps = {}
    if not (pack / "train.rec").is_file():
        steps["pack_seconds"] = _run(["facerec-data", "pack", str(shared_data("lfw_train")), str(pack), "--no-progress"])
    if not (out / "metrics.json").is_file() or (out / "last.pt").is_file() and not (out / "model.pt").is_file():
        resume = ["--resume", str(out)] if (out / "last.pt").is_file() else []
        steps["train_seconds"] = _run(["facerec-train", "--genotype", str(GENOTYPE), "--data", str(pack), "--output",
                                       str(out), *TRAIN_FLAGS, *resume])
    if not onnx.is_file():
        RESULTS.mkdir(parents=True, exist_ok=True)
        _run(["facerec-export", "--checkpoint", str(out / "model.pt"), "--output", str(onnx)])
    metrics = json.loads((out / "metrics.json").read_text())
    return onnx, {"training": repo_relative(out), "selection": metrics.get("selection"), **steps,
                  "train_command": shlex.join(["facerec-train", "--genotype", str(GENOTYPE.relative_to(ROOT)), "--data",
                                               "LFW_PACK", "--output", "OUT", *TRAIN_FLAGS])}


def _aligned_photos(aligned: Path) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """set → person → [(photo, its aligned face)] for the photos in which facerec-data align found a face."""
    lines = (aligned / "align.jsonl").read_text().splitlines()[1:]
    sets: dict[str, dict[str, list]] = {}
    for line in lines:
        record = json.loads(line)
        if record["reason"] is None:
            parts = Path(record["photo"]).parts
            sets.setdefault(parts[0], {}).setdefault(parts[1], []).append((record["photo"], record["written"][0]))
    for people in sets.values():  # the journal's order is the workers' finishing order: not a fixed one
        for items in people.values():
            items.sort()
    return sets


def _centre_crop(image: np.ndarray, size: int = 112) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[top : top + size, left : left + size]


def _score_set(embedder, photos_root: Path, aligned: Path, people: dict, pairs: int) -> dict:
    groups = [items for _, items in sorted(people.items()) if len(items) >= 1]
    chosen, issame = sample_pairs(groups, pairs, seed=0)
    flat = [item for pair in chosen for item in pair]
    result = {"pairs": len(issame), "people": len(groups), "photos": len(set(flat))}

    def faces(way: str):
        for photo, face in flat:
            if way == "aligned":
                yield load_image(aligned / face)
            else:
                image = load_image(photos_root / photo)
                yield _centre_crop(image) if way == "centre_crop" else fit_face(image)

    for way in WAYS:
        embeddings = np.asarray(embedder.embed(faces(way)), np.float64)
        scores = evaluate_verification(embeddings, issame)
        result[way] = {"accuracy": scores["accuracy"], "std": scores["std"], "auc": pair_auc(embeddings, issame)}
        print(f"  {way}: {100 * scores['accuracy']:.2f} ± {100 * scores['std']:.2f} %", flush=True)
    return result


def table(result: dict) -> str:
    lines = ["| set | pairs | people | aligned (ours) | centre crop | whole photo fitted | aligned − centre crop |",
             "|---|---|---|---|---|---|---|"]
    for name, s in result["sets"].items():
        cells = [f"{100 * s[w]['accuracy']:.2f} ± {100 * s[w]['std']:.2f} % (AUC {s[w]['auc']:.3f})" for w in WAYS]
        gain = 100 * (s["aligned"]["accuracy"] - s["centre_crop"]["accuracy"])
        lines.append(f"| {name} | {s['pairs']:,} | {s['people']:,} | {' | '.join(cells)} | {gain:+.2f} points |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result_file = RESULTS / "align_pays.json"
    if args.table:
        print(table(json.loads(result_file.read_text())))
        return 0
    if not (args.aligned / "align.jsonl").is_file():
        raise SystemExit(f"error: {args.aligned}: expected facerec-data align's output (run bench/align_report.py)")
    onnx, model = _model(args.work)
    from facerec import load_embedder

    embedder = load_embedder(onnx, device="cpu")
    photos_root = shared_data("raw_faces")
    result = {"model": str(onnx.relative_to(ROOT)), **model, "sets": {}}
    for name, people in sorted(_aligned_photos(args.aligned).items()):
        print(f"{name}:", flush=True)
        result["sets"][name] = _score_set(embedder, photos_root, args.aligned, people, args.pairs)
    atomic_write_json(result_file, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
