"""The verification threshold of a model: "same person iff cosine >= t", calibrated at a false accept rate
on pairs of people the model never trained on, and recorded with the model (ARCHITECTURE §10).

facerec-train calibrates it on the held-out identities' pairs of the epoch model.pt holds and stores it in the
checkpoint under ``verification_threshold``; facerec-export copies it into the ONNX model's metadata_props
under ``facenas.verification_threshold`` (a JSON string); facerec-verify reads it back with
``model_threshold``. Both hold the dict ``calibrate_threshold`` returns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from facerec.errors import FaceRecError
from nas_core.values import is_number, shown

DEFAULT_FAR = 1e-3
CHECKPOINT_KEY = "verification_threshold"
ONNX_KEY = "facenas.verification_threshold"
_COUNT_MAX = 10**12


def pair_cosines(embeddings: np.ndarray, issame: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair (rows 2i, 2i+1 of ``embeddings``), float64, clipped to [-1, 1]."""
    from sklearn.preprocessing import normalize

    emb = normalize(np.asarray(embeddings, np.float64))
    if len(emb) != 2 * len(issame):
        raise ValueError(f"expected 2 embeddings per pair: {len(emb)} embeddings for {len(issame)} pairs")
    return np.clip(np.sum(emb[0::2] * emb[1::2], axis=1), -1.0, 1.0)


def calibrate_threshold(embeddings: np.ndarray, issame: np.ndarray, far: float = DEFAULT_FAR) -> dict:
    """The smallest cosine threshold t at which at most ``far`` of the different-person pairs have cosine >= t.

    ``embeddings``: [2P, D] (pair i is rows 2i and 2i+1, the layout of eval_protocols' verification sets; they
    are L2-normalised here); ``issame``: bool [P]. With m different-person pairs, k = the most false accepts
    ``far`` allows (k/m <= far), t lies just above the (k+1)-th highest negative cosine (the next float64), so
    exactly the negatives above that one are accepted. When the negatives are too few to resolve ``far``
    (m·far < 1, so k = 0) t is just above the highest negative cosine and the measured FAR is 0: the asked FAR
    is then an upper bound, not a measurement. A cosine never exceeds 1: when that negative sits at 1 (a
    collapsed model) t is 1 and ``far_measured`` says how many negatives it still accepts.

    Returns {"cosine": t, "far": far (asked), "far_measured": accepted negatives / m, "tar": accepted
    same-person pairs / their number at t (None without any), "pairs": P, "negatives": m}.
    """
    if not (is_number(far) and 0 < far < 1):
        raise ValueError(f"far: expected a false accept rate in (0, 1), got {far!r}")
    issame = np.asarray(issame, bool)
    cosines = pair_cosines(embeddings, issame)
    if not np.isfinite(cosines).all():
        raise ValueError("embeddings: expected finite values to calibrate a threshold on")
    negatives, positives = np.sort(cosines[~issame])[::-1], cosines[issame]
    m = len(negatives)
    if m == 0:
        raise FaceRecError("verification pairs: expected different-person pairs to calibrate a threshold on")
    counts = np.arange(m)
    allowed = int(counts[counts / m <= far].max())  # in counts, not far*m: 0.29*100 is 28.999... in floats
    threshold = min(float(np.nextafter(negatives[allowed], np.inf)), 1.0)
    return {"cosine": threshold, "far": float(far), "far_measured": float(np.mean(negatives >= threshold)),
            "tar": float(np.mean(positives >= threshold)) if len(positives) else None,
            "pairs": int(len(issame)), "negatives": m}


def checked_threshold(value, where: str) -> dict:
    """A threshold dict read from a file, each number checked (nas_core.values); FaceRecError naming ``where``."""
    expected = f"{where}: expected a verification threshold"
    if not isinstance(value, dict):
        raise FaceRecError(f"{expected} (an object of cosine, far, ...), got {type(value).__name__}")
    ranges = {"cosine": (-1.0, 1.0), "far": (0.0, 1.0), "far_measured": (0.0, 1.0), "tar": (0.0, 1.0)}
    for key, (lo, hi) in ranges.items():
        number = value.get(key)
        if key == "tar" and number is None:
            continue
        if not is_number(number, lo=lo, hi=hi) or (key == "far" and number in (lo, hi)):
            bounds = f"({lo:g}, {hi:g})" if key == "far" else f"[{lo:g}, {hi:g}]"
            raise FaceRecError(f"{expected} ('{key}' a finite number in {bounds}, got {shown(number)})")
    for key in ("pairs", "negatives"):
        if not is_number(value.get(key), integer=True, lo=1, hi=_COUNT_MAX):
            raise FaceRecError(f"{expected} ('{key}' a positive count, got {shown(value.get(key))})")
    return {"cosine": float(value["cosine"]), "far": float(value["far"]), "far_measured": float(value["far_measured"]),
            "tar": None if value.get("tar") is None else float(value["tar"]), "pairs": int(value["pairs"]),
            "negatives": int(value["negatives"])}


def onnx_metadata(threshold: dict | None) -> dict[str, str]:
    """The ONNX metadata_props entries that record ``threshold`` (none without one)."""
    return {ONNX_KEY: json.dumps(threshold, allow_nan=False)} if threshold is not None else {}


def model_threshold(path: str | Path) -> dict | None:
    """The calibrated threshold recorded with a model file: a facenas ``.pt`` checkpoint's
    ``verification_threshold``, an ``.onnx`` model's ``facenas.verification_threshold`` metadata (JSON). None
    when the model carries none; a FaceRecError naming the file when it cannot be read or holds a bad one."""
    path = Path(path)
    if path.suffix == ".onnx":
        value = _onnx_entry(path)
    elif path.suffix in (".pt", ".pth"):
        from nas_core.safe_pickle import load_weights_only

        ckpt = load_weights_only(path, "a facenas checkpoint", error=FaceRecError)
        if not isinstance(ckpt, dict):
            raise FaceRecError(f"{path}: expected a facenas checkpoint (a dict), got {type(ckpt).__name__}")
        value = ckpt.get(CHECKPOINT_KEY)
    else:
        raise FaceRecError(f"{path}: expected a model file ending in .onnx or .pt")
    return None if value is None else checked_threshold(value, f"{path}: {_where(path)}")


def _where(path: Path) -> str:
    return f"metadata {ONNX_KEY}" if path.suffix == ".onnx" else CHECKPOINT_KEY


def _onnx_entry(path: Path):
    """The decoded JSON of the model's threshold metadata entry, or None."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise FaceRecError(f"{path}: expected an ONNX model (file not found)") from None
    except Exception as exc:  # noqa: BLE001  (protobuf raises its own errors on damaged files)
        raise FaceRecError(f"{path}: expected an ONNX model ({type(exc).__name__})") from None
    text = next((p.value for p in model.metadata_props if p.key == ONNX_KEY), None)
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=lambda name: math.nan)  # NaN/Infinity: refused by the checks
    except ValueError:
        raise FaceRecError(f"{path}: expected JSON in the metadata {ONNX_KEY}, got {text[:40]!r}") from None


def describe_threshold(threshold: dict) -> str:
    """'calibrated at FAR 0.001 on 3000 held-out pairs' (with 'measured FAR 0' when the negatives were too few)."""
    text = f"calibrated at FAR {threshold['far']:g} on {threshold['pairs']} held-out pairs"
    if threshold["negatives"] * threshold["far"] < 1:
        text += f" (only {threshold['negatives']} different-person pairs: measured FAR {threshold['far_measured']:g})"
    return text
