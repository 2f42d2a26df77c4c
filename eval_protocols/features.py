"""Saved evaluation features (``--features-out`` / ``--features-in``): one .npz holding, per protocol,
the raw image features and every array its scoring needs, so re-scoring needs no model and no data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eval_protocols.errors import EvalError
from nas_core.io import atomic_write

_META = "__meta__"


def save_features(path: str | Path, features: dict[str, dict[str, np.ndarray]], meta: dict) -> None:
    """Atomic: written to a temporary file in the same folder, fsynced, then renamed."""
    arrays = {f"{name}.{key}": np.asarray(value) for name, group in features.items() for key, value in group.items()}
    arrays[_META] = np.asarray(json.dumps({**meta, "protocols": list(features)}))
    atomic_write(path, lambda f: np.savez(f, **arrays))


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
                    name, field = key.rsplit(".", 1)  # a pack's stem may hold dots; field names never do
                    features[name][field] = data[key]
    except Exception:  # noqa: BLE001  (a damaged .npz raises anything from BadZipFile to tokenize.TokenError)
        raise EvalError(f"{path}: expected a features .npz written by facerec-eval --features-out") from None
    return features, meta
