"""TinyFace closed-set identification, rank-1/5/20 (ARCHITECTURE §5, §6; AdaFace's evaluation).

Gallery = Gallery_Match ∪ Gallery_Distractor; label = file name before the first ``_``; distractors
never match. Features are flip-fused and L2-normalised; score = inner product.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from sklearn.preprocessing import normalize

from eval_protocols.cmc import cmc
from eval_protocols.errors import EvalError
from eval_protocols.protocols import PROTOCOLS, Scored

ALIGNED_DIR = "aligned_pad_0.1_pad_high"  # AdaFace's 112x112 aligned copy of the test set
GROUPS = ("Probe", "Gallery_Match", "Gallery_Distractor")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
NOT_COMPARABLE = (
    "TinyFace: no aligned_pad_0.1_pad_high/ copy found; the tiny originals were resized to 112x112, "
    "so these numbers are not comparable with published TinyFace results"
)


def label_of(path: Path) -> str:
    if "_" not in path.name:
        raise EvalError(f"{path}: expected a TinyFace file name '<identity>_<n>.<ext>'")
    return path.name.split("_", 1)[0]


def _images_in(folder: Path) -> list[Path]:
    """Image paths under ``folder``, sorted. Unlike ``Path.rglob``, a folder that cannot be listed is an
    error, not silently empty (a gallery missing its distractors would score too well)."""

    def fail(exc: OSError) -> None:
        raise EvalError(f"{exc.filename}: expected a readable TinyFace folder ({exc.strerror})")

    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
        # Folders named like images are kept so that reading them fails with their name.
        found += [Path(dirpath) / n for n in filenames + dirnames if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


class TinyFaceProtocol:
    name = "tinyface"

    def locate(self, data_dir: Path) -> Path | None:
        """The root holding ``tinyface/Testing_Set`` (and ``aligned_pad_0.1_pad_high``), or that ``tinyface``."""
        data_dir = Path(data_dir)
        for root in (data_dir, data_dir / "tinyface"):
            if (root / "tinyface" / "Testing_Set").is_dir() or (root / ALIGNED_DIR).is_dir():
                return root
            if (root / "Testing_Set").is_dir():
                return root.parent if (root.parent / ALIGNED_DIR).is_dir() else root
        return None

    def expected(self, data_dir: Path) -> str:
        return f"{data_dir}: expected tinyface/Testing_Set/{{Probe,Gallery_Match,Gallery_Distractor}} in it"

    def prepare(self, root: Path) -> dict:
        # AdaFace keeps the aligned copy beside tinyface/; accept it inside tinyface/ too.
        aligned = next((a for a in (root / ALIGNED_DIR, root / "tinyface" / ALIGNED_DIR) if a.is_dir()), None)
        if aligned is not None:
            base, resized = aligned, False
        else:
            testing = root / "tinyface" / "Testing_Set"
            base, resized = (testing if testing.is_dir() else root / "Testing_Set"), True
        files, labels = {}, {}
        for group in GROUPS:
            folder = base / group
            paths = _images_in(folder) if folder.is_dir() else []
            if not paths and group != "Gallery_Distractor":
                raise EvalError(f"{folder}: expected TinyFace images (.jpg/.png), found none")
            files[group] = paths
            labels[group] = [label_of(p) for p in paths] if group != "Gallery_Distractor" else [None] * len(paths)
        return {"files": files, "labels": labels, "resized": resized}

    def count_images(self, prepared) -> int:
        return sum(len(v) for v in prepared["files"].values())

    def extract(self, prepared, embedder, *, flip: bool = True, batch_size: int = 64, progress=None) -> dict:
        paths = [p for g in GROUPS for p in prepared["files"][g]]

        def stream():
            for p in paths:
                bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise EvalError(f"{p}: expected a readable image")
                if bgr.shape[:2] != (112, 112):
                    bgr = cv2.resize(bgr, (112, 112), interpolation=cv2.INTER_LINEAR)
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        features = embedder.embed(stream(), flip=flip, normalize=False, progress=progress)
        counts = [len(prepared["files"][g]) for g in GROUPS]
        group = np.repeat(np.arange(3), counts)
        labels = [lab if lab is not None else "" for g in GROUPS for lab in prepared["labels"][g]]
        return {"features": features, "group": group, "labels": np.asarray(labels, dtype=str),
                "resized": np.asarray(prepared["resized"])}

    def score(self, features: dict, **_options) -> Scored:
        feats = normalize(features["features"])
        group = features["group"]
        _, labels = np.unique(features["labels"], return_inverse=True)
        labels = np.where(group == 2, -1, labels)  # distractors never match
        probe, gallery = group == 0, group > 0
        result = cmc(feats[probe], labels[probe], feats[gallery], labels[gallery], source="TinyFace Gallery_Match")
        notes = []
        if bool(features["resized"]):
            result["note"] = "resized originals; not comparable with published numbers"
            notes.append(NOT_COMPARABLE)  # facerec-eval prints it once the results are out
        return Scored(result, notes=notes)


PROTOCOLS.register("tinyface")(TinyFaceProtocol)
