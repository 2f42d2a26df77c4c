"""Write small synthetic face datasets in every real on-disk format (ARCHITECTURE §5, §7).

    python tools/make_fixtures.py --out /tmp/facefix

OUT/faces_webface_112x112/   train.rec/.idx/property + lfw.bin cfp_fp.bin cplfw.bin agedb_30.bin calfw.bin
OUT/IJB_release/IJBB, IJBC/  loose_crop/*.jpg + meta/ (tid_mid, 5pts_score, template_pair_label, 1:N csv)
OUT/tinyface/Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}  tiny originals
OUT/aligned_pad_0.1_pad_high/{...}                                  112x112 aligned copies (AdaFace layout)

Faces are synthetic: each identity is a random smooth colour pattern; each image of it adds a small
random similarity jitter and pixel noise, so even raw pixels separate identities well above chance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_protocols.align import ARCFACE_TEMPLATE  # noqa: E402
from eval_protocols.bins import write_bin  # noqa: E402
from nas_core.io import atomic_write_bytes, atomic_write_text  # noqa: E402

BIN_SETS = ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw")


def identity_pattern(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A smooth random RGB pattern (float32 HxWx3 in 0..255): the 'face' of one identity."""
    coarse = rng.uniform(30, 225, size=(5, 5, 3)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def face_image(pattern: np.ndarray, rng: np.random.Generator, jitter: float = 1.0, noise: float = 10.0) -> np.ndarray:
    """One RGB uint8 image of an identity: small rotation/scale/shift of its pattern plus noise."""
    size = pattern.shape[0]
    angle = rng.uniform(-6, 6) * jitter
    scale = 1.0 + rng.uniform(-0.05, 0.05) * jitter
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-3, 3, size=2) * jitter
    warped = cv2.warpAffine(pattern, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
    return np.clip(warped + rng.normal(0, noise, warped.shape), 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def make_verification_pack(path: Path, rng: np.random.Generator, pairs: int = 40, identities: int = 12) -> None:
    """``pairs`` pairs, half positive, alternating; pair i = images 2i, 2i+1 (ARCHITECTURE §5)."""
    patterns = [identity_pattern(rng) for _ in range(identities)]
    encoded, issame = [], []
    for i in range(pairs):
        same = i % 2 == 0
        a = int(rng.integers(identities))
        b = a if same else int((a + rng.integers(1, identities)) % identities)
        encoded += [encode(face_image(patterns[a], rng)), encode(face_image(patterns[b], rng))]
        issame.append(same)
    write_bin(path, encoded, issame)


def make_train_pack(out_dir: Path, rng: np.random.Generator, identities: int = 10, images: int = 5) -> dict:
    from facerec.data.recordio import write_face_pack

    patterns = [identity_pattern(rng) for _ in range(identities)]
    return write_face_pack(out_dir, [[face_image(p, rng) for _ in range(images)] for p in patterns])


def _loose_crop(face: np.ndarray, rng: np.random.Generator, canvas: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Place an aligned 112x112 face into a larger crop by a random similarity; return crop and 5 points."""
    angle = np.deg2rad(rng.uniform(-15, 15))
    scale = rng.uniform(0.9, 1.2)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rot @ np.array([56.0, 56.0])
    shift = canvas / 2 - centre + rng.uniform(-6, 6, size=2)
    matrix = np.hstack([rot, shift[:, None]])
    crop = cv2.warpAffine(face, matrix, (canvas, canvas), borderMode=cv2.BORDER_REFLECT)
    points = ARCFACE_TEMPLATE @ rot.T + shift
    return crop, points


def make_ijb(root: Path, target: str, rng: np.random.Generator, subjects: int = 8, templates_per_subject: int = 3) -> None:
    """IJB release layout for ``target`` ("IJBB"/"IJBC"): loose crops, 1:1 meta and 1:N lists."""
    t = target.lower()
    crops, meta = root / "loose_crop", root / "meta"
    crops.mkdir(parents=True, exist_ok=True)
    meta.mkdir(parents=True, exist_ok=True)
    tid_mid, pts, template_subject, rows_by_template = [], [], [], {}
    image_id, media_id, template_id = 1, 1000, 1
    for subject in range(1, subjects + 1):
        pattern = identity_pattern(rng)
        for _ in range(templates_per_subject):
            rows_by_template[template_id] = []
            for _ in range(int(rng.integers(1, 3))):  # media per template
                for _ in range(int(rng.integers(1, 3))):  # frames per media
                    name = f"{image_id}.jpg"
                    crop, points = _loose_crop(face_image(pattern, rng), rng)
                    atomic_write_bytes(crops / name, encode(crop))
                    tid_mid.append(f"{name} {template_id} {media_id}")
                    score = rng.uniform(0.6, 1.0)
                    pts.append(" ".join([name, *(f"{v:.3f}" for v in points.reshape(-1)), f"{score:.4f}"]))
                    rows_by_template[template_id].append(f"{template_id},{subject},img/{name}")
                    image_id += 1
                media_id += 1
            template_subject.append((template_id, subject))
            template_id += 1
    pairs = [f"{a} {b} {int(sa == sb)}" for i, (a, sa) in enumerate(template_subject) for b, sb in template_subject[i + 1 :]]
    atomic_write_text(meta / f"{t}_face_tid_mid.txt", "\n".join(tid_mid) + "\n")
    atomic_write_text(meta / f"{t}_name_5pts_score.txt", "\n".join(pts) + "\n")
    atomic_write_text(meta / f"{t}_template_pair_label.txt", "\n".join(pairs) + "\n")
    # 1:N (InsightFace's release): each subject's first template enrols in G1 (first half) or G2.
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    names = ("G1", "G2") if t == "ijbc" else ("S1", "S2")
    enrolled = {s: tid for tid, s in reversed(template_subject)}
    halves = ([s for s in enrolled if s <= subjects // 2], [s for s in enrolled if s > subjects // 2])
    for gallery, half in zip(names, halves):
        rows = [r for s in half for r in rows_by_template[enrolled[s]]]
        atomic_write_text(meta / f"{t}_1N_gallery_{gallery}.csv", header + "\n".join(rows) + "\n")
    probes = [r for tid, s in template_subject if enrolled[s] != tid for r in rows_by_template[tid]]
    atomic_write_text(meta / f"{t}_1N_probe_mixed.csv", header + "\n".join(probes) + "\n")


def make_tinyface(root: Path, rng: np.random.Generator, identities: int = 10, distractors: int = 20) -> None:
    """TinyFace test layout: tiny originals under tinyface/Testing_Set and 112x112 copies beside it."""
    testing, aligned = root / "tinyface" / "Testing_Set", root / "aligned_pad_0.1_pad_high"
    patterns = [identity_pattern(rng) for _ in range(identities)]
    files = []
    for ident, pattern in enumerate(patterns, start=1):
        files += [("Probe", f"{ident}_{k}.jpg", pattern) for k in (1, 2)]
        files.append(("Gallery_Match", f"{ident}_3.jpg", pattern))
    files += [("Gallery_Distractor", f"{1000 + k}_1.jpg", identity_pattern(rng)) for k in range(distractors)]
    for group, name, pattern in files:
        face = face_image(pattern, rng)
        side = int(rng.integers(16, 33))
        tiny = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        atomic_write_bytes(testing / group / name, encode(tiny))
        atomic_write_bytes(aligned / group / name, encode(cv2.resize(tiny, (112, 112), interpolation=cv2.INTER_CUBIC)))


def make_fixtures(out: str | Path, seed: int = 0, train_pack: bool = True) -> Path:
    """Write every fixture format under ``out``; returns ``out``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    faces = out / "faces_webface_112x112"
    faces.mkdir(parents=True, exist_ok=True)
    if train_pack:
        make_train_pack(faces, rng)
    for name in BIN_SETS:
        make_verification_pack(faces / f"{name}.bin", rng)
    for target in ("IJBB", "IJBC"):
        make_ijb(out / "IJB_release" / target, target, rng)
    make_tinyface(out, rng)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the fixture datasets into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-train-pack", action="store_true", help="skip train.rec (needs facerec.data)")
    args = parser.parse_args(argv)
    print(make_fixtures(args.out, args.seed, train_pack=not args.no_train_pack))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
