"""Saved evaluation features (``--features-out`` / ``--features-in``): one .npz holding, per protocol,
the raw image features and every array its scoring needs, so re-scoring needs no model and no data."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from eval_protocols.errors import EvalError

_META = "__meta__"


def save_features(path: str | Path, features: dict[str, dict[str, np.ndarray]], meta: dict) -> None:
    """Atomic: written to a temporary file in the same folder, fsynced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}.{key}": np.asarray(value) for name, group in features.items() for key, value in group.items()}
    arrays[_META] = np.asarray(json.dumps({**meta, "protocols": list(features)}))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_features(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: file not found; expected features saved by facerec-eval --features-out")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[_META]))
            features: dict[str, dict[str, np.ndarray]] = {name: {} for name in meta["protocols"]}
            for key in data.files:
                if key != _META:
                    name, field = key.split(".", 1)
                    features[name][field] = data[key]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise EvalError(f"{path}: expected a features .npz written by facerec-eval --features-out") from None
    return features, meta
