"""FaceDataset decode throughput over a RecordIO pack vs a bare loop of cv2.imdecode over the same JPEG bytes.

    python bench/recordio_throughput.py [--images 2000] [--repeats 5]

Builds a pack of synthetic 112x112 face-like JPEGs (quality 95) in a temporary folder, then times, in
the same process, taking turns on chunks of 50 images (so background load hits all alike):
  baseline  cv2.imdecode(bytes) for every image, the JPEG bytes already in memory
  dataset   FaceDataset[i] for every i: .idx offset, mmap read, IRHeader, decode to RGB, normalise to
            float32 CHW (the training path); also with normalize=False (uint8 CHW; normalise on the GPU
            with eval_protocols.embed.normalize)
and prints images/s and the ratio dataset / baseline (target >= 0.9).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facerec.data.datasets import FaceDataset, FacePack
from facerec.data.recordio import write_face_pack


def synthetic_faces(count: int, per_identity: int, seed: int):
    """Face-like images: a skin-toned ellipse with eyes and mouth on a gradient, lit and textured."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    for start in range(0, count, per_identity):
        images = []
        for _ in range(min(per_identity, count - start)):
            background = rng.uniform(20, 200, 3) + (yy[..., None] / 112) * rng.uniform(-60, 60, 3)
            face = ((xx - 56 + rng.normal(0, 4)) / 38) ** 2 + ((yy - 60 + rng.normal(0, 4)) / 50) ** 2 < 1
            img = np.where(face[..., None], rng.uniform(90, 230, 3), background)
            for cx in (40, 72):
                cv2.circle(img, (cx + int(rng.normal(0, 2)), 50), 6, (30, 30, 40), -1)
            cv2.ellipse(img, (56, 86), (14, 5), 0, 0, 180, (60, 40, 120), -1)
            img += rng.normal(0, 6, img.shape) + 20 * np.sin(xx / rng.uniform(3, 9))[..., None]
            images.append(cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.8))
        yield images


def _interleaved_seconds(methods: dict, n: int, repeats: int, chunk: int = 50) -> dict[str, float]:
    """Total seconds per method, run in turns on chunks of ``chunk`` images with the order rotated each
    turn: on a shared machine every method sees the same background load, so the ratio stays fair."""
    seconds = dict.fromkeys(methods, 0.0)
    names = list(methods)
    turn = 0
    for _ in range(repeats):
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            turn += 1
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                start = time.perf_counter()
                methods[name](lo, hi)
                seconds[name] += time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        info = write_face_pack(Path(tmp) / "pack", synthetic_faces(args.images, 20, seed=0))
        pack = FacePack(Path(tmp) / "pack")
        dataset = FaceDataset(pack)
        raw = FaceDataset(pack, normalize=False)
        jpegs = [pack.image_bytes(int(k)) for k in dataset.keys]
        n = len(jpegs)

        def baseline(lo, hi):
            for data in jpegs[lo:hi]:
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

        def items(ds):
            def loop(lo, hi):
                for i in range(lo, hi):
                    ds[i]
            return loop

        methods = {"baseline": baseline, "dataset": items(dataset), "dataset_uint8": items(raw)}
        _interleaved_seconds(methods, n, 1)  # warm-up: page cache, mmap, decoder tables
        seconds = _interleaved_seconds(methods, n, args.repeats)
        rate = {name: n * args.repeats / s for name, s in seconds.items()}
        size = sum(map(len, jpegs)) / n
        print(f"pack: {info['images']} images, {info['identities']} identities, mean JPEG {size:.0f} bytes")
        print(f"{'baseline: bare cv2.imdecode loop':44s} {rate['baseline']:8.0f} images/s")
        for name, label in (("dataset", "FaceDataset, float32 CHW (ARCHITECTURE §6)"),
                            ("dataset_uint8", "FaceDataset, uint8 CHW (normalize=False)")):
            print(f"{label:44s} {rate[name]:8.0f} images/s  ratio {rate[name] / rate['baseline']:.3f}")


if __name__ == "__main__":
    main()
