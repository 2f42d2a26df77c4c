"""10-fold verification accuracy on .bin pair packs: LFW, CFP-FP, CPLFW, AgeDB-30, CALFW (ARCHITECTURE §6)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from eval_protocols.bins import iter_decoded, read_bin
from eval_protocols.errors import EvalError
from eval_protocols.protocols import PROTOCOLS, Scored

# ARCHITECTURE §6 / InsightFace: np.arange(0, 4, 0.01), i.e. 400 thresholds 0.00 .. 3.99 on squared L2.
THRESHOLDS = np.arange(0, 4, 0.01)
VERIFICATION_SETS = ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw")


def evaluate_verification(embeddings: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> dict:
    """10-fold accuracy; pair i is rows 2i, 2i+1 of ``embeddings`` (L2-normalised here).

    Rules (ARCHITECTURE §6): squared L2 distance, "same" iff distance < threshold; KFold without shuffle;
    on each 9-fold training part take the first best threshold, score the held-out fold; report mean
    and population std of the fold accuracies and the mean chosen threshold.
    """
    embeddings = np.asarray(embeddings)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != 2 * len(issame):
        raise EvalError(f"embeddings: expected {2 * len(issame)} rows (2 per pair), got shape {embeddings.shape}")
    if len(issame) < n_folds:
        raise EvalError(f"verification pairs: expected at least {n_folds} pairs for {n_folds}-fold, got {len(issame)}")
    emb = normalize(embeddings)
    dist = np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)
    # correct[t, p]: threshold t classifies pair p right. Integer counts make "first among ties" exact.
    correct = (dist[None, :] < THRESHOLDS[:, None]) == issame[None, :]
    fold_acc, fold_thr = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(issame):
        best = int(np.argmax(correct[:, train].sum(axis=1)))
        fold_thr.append(float(THRESHOLDS[best]))
        fold_acc.append(float(correct[best, test].sum()) / len(test))
    return {
        "accuracy": float(np.mean(fold_acc)),
        "std": float(np.std(fold_acc)),
        "threshold": float(np.mean(fold_thr)),
        "pairs": int(len(issame)),
        "fold_accuracies": fold_acc,
    }


def verification_packs(data_dir: str | Path) -> dict[str, Path]:
    """Every ``.bin`` pack of a data folder by its stem, in name order: ``*.bin`` in ``data_dir`` and in its
    ``faces_*`` subfolders (the first found of a stem wins, ``data_dir`` first), or ``data_dir`` itself when
    it is a ``.bin`` file. The five benchmark names and any other (``facerec-data make-bin`` output, a
    user's own pairs) alike: all are scored by the same 10-fold protocol."""
    data_dir = Path(data_dir)
    if data_dir.is_file():
        return {data_dir.stem: data_dir} if data_dir.suffix == ".bin" else {}
    found: dict[str, Path] = {}
    for path in sorted(data_dir.glob("*.bin")) + sorted(data_dir.glob("faces_*/*.bin")):
        if path.is_file():
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


class VerificationProtocol:
    """One .bin pack (``<name>.bin`` in DIR or in a ``faces_*`` subfolder of DIR): a benchmark name of
    ``VERIFICATION_SETS`` or any other stem, reported under that stem."""

    def __init__(self, name: str):
        self.name = name

    def locate(self, data_dir: Path) -> Path | None:
        data_dir = Path(data_dir)
        if data_dir.is_file():
            return data_dir if data_dir.name == f"{self.name}.bin" else None
        candidates = [data_dir / f"{self.name}.bin"] + sorted(data_dir.glob(f"faces_*/{self.name}.bin"))
        return next((c for c in candidates if c.is_file()), None)

    def expected(self, data_dir: Path) -> str:
        return f"{data_dir}: expected {self.name}.bin in it or in a faces_* subfolder"

    def prepare(self, path: Path) -> tuple[Path, list[bytes], np.ndarray]:
        encoded, issame = read_bin(path)
        return path, encoded, issame

    def count_images(self, prepared) -> int:
        return len(prepared[1])

    def extract(self, prepared, embedder, *, flip: bool = True, batch_size: int = 64, progress=None) -> dict:
        path, encoded, issame = prepared
        batches = iter_decoded(encoded, 112, batch_size, source=str(path))
        embeddings = embedder.embed(batches, flip=flip, normalize=False, progress=progress)
        return {"embeddings": embeddings, "issame": issame}

    def score(self, features: dict, **_options) -> Scored:
        if "embeddings" not in features or "issame" not in features:
            raise EvalError(f"{self.name}: expected saved verification features (embeddings, issame), found "
                            f"{', '.join(sorted(features)) or 'none'}")
        return Scored(evaluate_verification(features["embeddings"], features["issame"]))


for _name in VERIFICATION_SETS:
    PROTOCOLS.register(_name)(functools.partial(VerificationProtocol, _name))
