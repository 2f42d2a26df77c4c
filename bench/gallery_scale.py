"""Identification at gallery scale: facerec.deploy.gallery.Gallery (exact faiss IndexFlatIP) against a NumPy
brute force over the same embeddings, with the top-1 of every query checked equal.

    python bench/gallery_scale.py                          # 1,000 queries x 1,000,000 enrolled 512-d faces
    python bench/gallery_scale.py --size 20000 --queries 200 --dim 128 --output /tmp/g.json
    python bench/gallery_scale.py --approximate hnsw       # also HNSW (M=32): build time, queries/s, recall@1

The gallery is --size random unit vectors (seeded), --faces-per-person rows per person. Queries are enrolled
faces seen again: a random row plus Gaussian noise (cosine ~0.5 to it), L2-normalised, as a new photo of an
enrolled person is (a query of pure noise has no true match and its top-2 differ by float rounding). In the
same process, taking turns on chunks of queries (so background load hits both alike), it times
  exact        Gallery.search(queries, k=1): faiss IndexFlatIP top rows, then the best person among them
  brute force  queries @ embeddings.T in blocks of rows, argmax: the top-1 row's person
and checks that the top-1 person agrees for every query. Prints queries/s of both and the ratio exact / brute
force; writes JSON (--output, default bench/results/gallery_scale.json). Memory: the rows (N x D float32,
2 GB at 1M x 512) held twice (the Gallery's and faiss's copy), plus one block of scores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facerec.deploy.gallery import Gallery, GalleryModel
from facerec.deploy.gallery_files import faiss
from nas_core.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
_BLOCK_ROWS = 65536  # brute-force block: queries x 65536 float32 scores at a time


def unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 65536) -> np.ndarray:
    """``n`` random unit vectors, written chunk by chunk into one float32 array (no float64 copy of the whole)."""
    rows = np.empty((n, dim), np.float32)
    for lo in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - lo), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        rows[lo : lo + len(block)] = block
    return rows


def make_queries(rng: np.random.Generator, embeddings: np.ndarray, count: int) -> np.ndarray:
    """Noisy copies of random enrolled rows, cosine ~0.5 to their source."""
    sources = rng.integers(0, len(embeddings), count)
    dim = embeddings.shape[1]
    queries = embeddings[sources] + rng.standard_normal((count, dim), dtype=np.float32) * np.float32(1 / np.sqrt(dim))
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def brute_force_top1(queries: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """The row of highest inner product per query, over blocks of rows."""
    best = np.full(len(queries), -np.inf, np.float32)
    rows = np.zeros(len(queries), np.int64)
    for lo in range(0, len(embeddings), _BLOCK_ROWS):
        scores = queries @ embeddings[lo : lo + _BLOCK_ROWS].T
        top = scores.argmax(axis=1)
        top_scores = scores[np.arange(len(queries)), top]
        better = top_scores > best
        best[better], rows[better] = top_scores[better], top[better] + lo
    return rows


def timed_turns(methods: dict, queries: np.ndarray, chunk: int) -> tuple[dict[str, float], dict[str, list]]:
    """Seconds and answers per method, the methods taking turns on chunks of queries (order rotated per turn)."""
    seconds = dict.fromkeys(methods, 0.0)
    answers: dict[str, list] = {name: [] for name in methods}
    names = list(methods)
    for turn, lo in enumerate(range(0, len(queries), chunk)):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            start = time.perf_counter()
            answer = methods[name](queries[lo : lo + chunk])
            seconds[name] += time.perf_counter() - start
            answers[name].extend(answer)
    return seconds, answers


def build_gallery(args, folder: Path) -> tuple[Gallery, float]:
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    embeddings = unit_rows(rng, args.size, args.dim)
    names = np.asarray([f"p{i // args.faces_per_person:07d}" for i in range(args.size)])
    photos = np.full(args.size, "", dtype="U1")
    gallery = Gallery(folder, GalleryModel("random", "0" * 16, args.dim), names=names, embeddings=embeddings,
                      photos=photos)
    return gallery, time.perf_counter() - start


def approximate(gallery: Gallery, kind: str, queries: np.ndarray, exact_people: list[str], chunk: int) -> dict:
    """Build time, queries/s and recall@1 (top-1 person equal to the exact one) of an approximate index."""
    gallery.use_index(kind)  # drops the flat index: one copy of the rows in faiss at a time
    start = time.perf_counter()
    gallery.index(save_rebuilt=False)
    built = time.perf_counter() - start
    seconds, answers = timed_turns({kind: lambda q: [m[0][0] for m in gallery.search(q, 1)]}, queries, chunk)
    recall = float(np.mean([a == e for a, e in zip(answers[kind], exact_people)]))
    gallery.use_index("flat")
    return {"build_seconds": round(built, 2), "queries_per_second": round(len(queries) / seconds[kind], 1),
            "recall_at_1": recall}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="enrolled faces (rows)")
    parser.add_argument("--queries", type=int, default=1000, help="query faces")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension")
    parser.add_argument("--faces-per-person", type=int, default=4, help="rows per enrolled person")
    parser.add_argument("--chunk", type=int, default=100, help="queries per turn")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rows and queries")
    parser.add_argument("--approximate", nargs="*", choices=("hnsw", "ivf"), default=[],
                        help="also time these approximate indexes (HNSW on 1M rows: minutes to build)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "gallery_scale.json",
                        help="JSON result file")
    parser.add_argument("--table", action="store_true", help="print the README table from --output and stop")
    args = parser.parse_args(argv)
    if min(args.size, args.queries, args.dim, args.faces_per_person, args.chunk) < 1:
        parser.error("--size, --queries, --dim, --faces-per-person and --chunk must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        import json

        print(table(json.loads(args.output.read_text())))
        return 0
    with tempfile.TemporaryDirectory() as folder:  # the Gallery's folder: searched in memory, never written
        gallery, build = build_gallery(args, Path(folder))
        queries = make_queries(np.random.default_rng(args.seed + 1), gallery.embeddings, args.queries)
        start = time.perf_counter()
        gallery.index(save_rebuilt=False)
        index_build = time.perf_counter() - start
        names = gallery.names
        methods = {"exact": lambda q: [m[0][0] for m in gallery.search(q, 1)],
                   "brute force": lambda q: names[brute_force_top1(q, gallery.embeddings)].tolist()}
        seconds, answers = timed_turns(methods, queries, args.chunk)
        agree = float(np.mean([a == b for a, b in zip(answers["exact"], answers["brute force"])]))
        result = {
            "command": " ".join(["python bench/gallery_scale.py", *(sys.argv[1:] if argv is None else argv)]),
            "size": args.size, "queries": args.queries, "dim": args.dim, "faces_per_person": args.faces_per_person,
            "people": len(gallery.people), "seed": args.seed, "threads": faiss.omp_get_max_threads(),
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "gallery_seconds": round(build, 2), "flat_index_seconds": round(index_build, 2),
            "exact_queries_per_second": round(args.queries / seconds["exact"], 1),
            "brute_force_queries_per_second": round(args.queries / seconds["brute force"], 1),
            "ratio": round(seconds["brute force"] / seconds["exact"], 3), "top1_agreement": agree,
            "approximate": {kind: approximate(gallery, kind, queries, answers["exact"], args.chunk)
                            for kind in args.approximate},
        }
    atomic_write_json(args.output, result)
    print(table(result))
    return 0 if agree == 1.0 else 1


def table(result: dict) -> str:
    rows = [f"{result['queries']} queries x {result['size']:,} enrolled {result['dim']}-d faces "
            f"({result['people']:,} people), {result['threads']} threads",
            "| method | queries/s | top-1 vs brute force |", "|---|---|---|",
            f"| Gallery, exact (faiss IndexFlatIP) | {result['exact_queries_per_second']:.1f} | "
            f"{result['top1_agreement']:.4f} agreement |",
            f"| NumPy brute force (blocks, argmax) | {result['brute_force_queries_per_second']:.1f} | - |"]
    for kind, row in result["approximate"].items():
        rows.append(f"| Gallery, {kind} (built in {row['build_seconds']:.1f} s) | {row['queries_per_second']:.1f} | "
                    f"recall@1 {row['recall_at_1']:.4f} |")
    rows.append(f"ratio exact / brute force: {result['ratio']:.3f}x the queries/s")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
