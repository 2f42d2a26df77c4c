"""IJB-C-scale 1:1 scoring from saved features: block-matrix scorer vs a chunked pair loop.

    python bench/ijb_scoring.py            # full IJB-C scale (~2 minutes on 2 CPU cores)
    python bench/ijb_scoring.py --scale 0.1

Synthetic data at IJB-C's size (ARCHITECTURE §6): 23,124 templates (3,531 enrolment + 19,593 verification),
469,375 images of 512-d features in media, 15.6M template pairs (19.6k genuine). Both scorers get the
same pooled template features; the baseline is InsightFace's way (gather both template rows of each
pair, 100,000 pairs per chunk, multiply and sum). Prints the speed ratio, checks the TARs are identical
and that peak memory stays under 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_protocols.ijb import pool_templates, score_pairs, tar_at_far  # noqa: E402


def make_ijbc_like(rng: np.random.Generator, scale: float = 1.0, dim: int = 512):
    n_enrol, n_verify = int(3531 * scale), int(19593 * scale)
    n_templates, n_images = n_enrol + n_verify, int(469_375 * scale)
    subject = np.r_[np.arange(n_enrol), rng.integers(0, n_enrol, n_verify)]  # template → subject
    identity = rng.standard_normal((n_enrol, dim)).astype(np.float32)
    # Images: every template has at least one; media of 1..8 frames inside a template.
    per_template = 1 + rng.multinomial(n_images - n_templates, np.full(n_templates, 1.0 / n_templates))
    templates = np.repeat(np.arange(n_templates), per_template)
    frame_media = rng.integers(0, 4, n_images)  # media id within the template
    medias = templates.astype(np.int64) * 4 + frame_media
    quality = rng.uniform(0.05, 0.8, n_templates).astype(np.float32)  # how much identity survives
    features = np.empty((n_images, dim), dtype=np.float32)
    for lo in range(0, n_images, 65536):
        t = templates[lo : lo + 65536]
        noise = rng.standard_normal((len(t), dim), dtype=np.float32) * 4.0
        features[lo : lo + 65536] = identity[subject[t]] * quality[t, None] + noise
    detector = rng.uniform(0.5, 1.0, n_images).astype(np.float32)
    # Pairs: each verification template with its subject's enrolment template (genuine), plus random
    # enrolment x verification impostors up to IJB-C's 15.6M pairs.
    verify = np.arange(n_enrol, n_templates)
    t1, t2 = [subject[verify]], [verify]
    rate = (15_638_932 * scale * scale) / (n_enrol * n_verify)
    for lo in range(0, n_enrol, 256):
        rows, cols = np.nonzero(rng.random((min(256, n_enrol - lo), n_verify)) < rate)
        keep = subject[verify[cols]] != lo + rows
        t1.append(lo + rows[keep])
        t2.append(verify[cols[keep]])
    t1, t2 = np.concatenate(t1), np.concatenate(t2)
    labels = (subject[t1] == subject[t2]).astype(np.int64)
    order = rng.permutation(len(t1))  # no help from the file order
    return features, detector, templates, medias, t1[order], t2[order], labels[order]


def pair_loop(template_feats: np.ndarray, index1: np.ndarray, index2: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """InsightFace's verification(): gather the two template rows per pair, chunk by chunk."""
    scores = np.empty(len(index1))
    for lo in range(0, len(index1), chunk):
        f1 = template_feats[index1[lo : lo + chunk]]
        f2 = template_feats[index2[lo : lo + chunk]]
        scores[lo : lo + chunk] = np.sum(f1 * f2, -1)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of IJB-C's templates/images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    features, detector, templates, medias, t1, t2, labels = make_ijbc_like(rng, args.scale)
    print(f"data: {len(features):,} images, {len(np.unique(templates)):,} templates, {len(t1):,} pairs "
          f"({int(labels.sum()):,} genuine) in {time.perf_counter() - t:.1f}s")

    t = time.perf_counter()
    template_feats, unique = pool_templates(features, templates, medias, detector.astype(np.float64))
    pooling = time.perf_counter() - t
    i1, i2 = np.searchsorted(unique, t1), np.searchsorted(unique, t2)
    del features

    t = time.perf_counter()
    ours = score_pairs(template_feats, i1, i2)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = pair_loop(template_feats, i1, i2)
    t_base = time.perf_counter() - t

    tar_ours, auc_ours, _ = tar_at_far(labels, ours)
    t = time.perf_counter()
    tar_base, auc_base, _ = tar_at_far(labels, base)
    t_roc = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"template pooling (sparse product): {pooling:.2f}s; ROC + TAR@FAR: {t_roc:.2f}s")
    print(f"pair scoring: block-matrix {t_ours:.2f}s vs chunked pair loop {t_base:.2f}s "
          f"-> {t_base / t_ours:.1f}x faster")
    print(f"max |score difference| {np.max(np.abs(ours - base)):.2e}; TAR@FAR "
          + ", ".join(f"{k}: {v:.4f}" for k, v in tar_ours.items()) + f"; AUC {auc_ours:.4f}")
    print(f"peak memory (max RSS of the whole run): {peak_gb:.2f} GB")
    assert tar_ours == tar_base and auc_ours == auc_base, (tar_ours, tar_base)
    assert peak_gb < 4.0, f"peak memory {peak_gb:.2f} GB >= 4 GB"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
