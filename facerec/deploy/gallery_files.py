"""The files of a gallery folder (facerec.deploy.gallery): what each holds, how a write commits, and every
field read back checked, so a damaged or mismatched file is one FaceRecError naming it.

    GALLERY/gallery.npz   the source of truth: names (str [N]), embeddings (float32 [N, D], L2-normalised),
                          photos (str [N]: the photo each row came from), generation (int); allow_pickle=False
    GALLERY/gallery.json  what the rows are: format, model (file, fingerprint, dim), index (kind, file, rows,
                          sha256 of index.faiss), threshold (the model's calibrated one, or null), counts
                          (people, faces), generation
    GALLERY/index.faiss   derived from the rows: rebuilt whenever it is missing, damaged or does not match
                          gallery.json (sha256, rows, kind, dim)

A write is a two-step commit with gallery.json as the commit point: the new rows go to gallery.next.npz and the
index to index.faiss (each atomically: a temporary file beside it, fsync, rename), then gallery.json, then
gallery.next.npz is renamed onto gallery.npz. A kill before gallery.json is renamed leaves the old gallery
whole (gallery.npz still holds the generation gallery.json names; the new index.faiss no longer matches its
sha256 and is rebuilt); a kill after it leaves the new one (gallery.next.npz holds the generation gallery.json
names: readers take it, the next writer renames it).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from facerec.deploy.threshold import checked_threshold
from facerec.errors import FaceRecError
from nas_core.errors import NasError
from nas_core.io import atomic_write, read_json_object
from nas_core.values import is_number

FORMAT = "facenas-gallery/1"
GALLERY_NPZ, NEXT_NPZ, GALLERY_JSON, INDEX_FILE = "gallery.npz", "gallery.next.npz", "gallery.json", "index.faiss"
INDEX_KINDS = ("flat", "hnsw", "ivf")
_COUNT_MAX = 10**12
_NORM_TOLERANCE = 1e-3
_NPZ = "a gallery .npz (arrays names, embeddings, photos, generation)"


def _import_faiss():
    """faiss, its OpenMP threads told to sleep rather than spin while they wait (OMP_WAIT_POLICY=PASSIVE, read
    once by faiss's own libgomp when it loads; unless the user set the variable). Spinning threads of a search
    fight every other process for the cores: on 2 busy cores exact search of 200k rows ran at 0.32x NumPy's
    queries/s spinning, 1.1x passive (bench/gallery_scale.py, the same run). The variable is set only while
    faiss loads, so torch's OpenMP, loaded later, keeps its default."""
    if "OMP_WAIT_POLICY" in os.environ:
        import faiss
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            import faiss
        finally:
            del os.environ["OMP_WAIT_POLICY"]
    return faiss


faiss = _import_faiss()


def sha256_of_file(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read 4 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def write_index(path: Path, index: faiss.Index) -> str:
    """Write ``index`` atomically; the sha256 of the bytes written."""
    digest = hashlib.sha256()

    def write(f) -> None:
        def chunk(data: bytes) -> int:
            digest.update(data)
            f.write(data)
            return len(data)

        writer = faiss.PyCallbackIOWriter(chunk)
        faiss.write_index(index, writer)
        del writer  # flushes faiss's buffer through ``chunk``

    atomic_write(path, write)
    return digest.hexdigest()


def commit_next(folder: Path) -> None:
    """gallery.next.npz becomes gallery.npz: the last step of a write, once gallery.json names its generation."""
    os.replace(folder / NEXT_NPZ, folder / GALLERY_NPZ)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)






def read_gallery_info(folder: str | Path) -> dict:
    """gallery.json of a gallery folder, every field checked; FaceRecError naming the file."""
    path = Path(folder) / GALLERY_JSON
    if not Path(folder).is_dir():
        raise FaceRecError(f"{folder}: expected a gallery folder (holding {GALLERY_JSON}); "
                           f"{'it is a file' if Path(folder).exists() else 'not found'}")
    try:
        info = read_json_object(path, f"a gallery description ({FORMAT})")
    except NasError as exc:
        raise FaceRecError(str(exc)) from None
    problem = _info_problem(info)
    if problem:
        raise FaceRecError(f"{path}: expected a gallery description ({FORMAT}): {problem}")
    if info["threshold"] is not None:
        info["threshold"] = checked_threshold(info["threshold"], f"{path}: threshold")
    return info


def _info_problem(info: dict) -> str | None:
    """What is wrong with a gallery.json object, or None."""
    model, index, counts = info.get("model"), info.get("index"), info.get("counts")
    if info.get("format") != FORMAT:
        return f"'format' {FORMAT!r}"
    if not (isinstance(model, dict) and isinstance(model.get("file"), str)
            and isinstance(model.get("fingerprint"), str) and re.fullmatch(r"[0-9a-f]{16}", model["fingerprint"])
            and is_number(model.get("dim"), integer=True, lo=1, hi=1 << 16)):
        return "'model' {file, fingerprint (16 hex digits), dim (a positive integer)}"
    if not (isinstance(index, dict) and index.get("kind") in INDEX_KINDS
            and is_number(index.get("rows"), integer=True, lo=0, hi=_COUNT_MAX)
            and (index.get("sha256") is None or (isinstance(index["sha256"], str)
                                                  and re.fullmatch(r"[0-9a-f]{64}", index["sha256"])))):
        return f"'index' {{kind ({', '.join(INDEX_KINDS)}), rows (a count), sha256}}"
    if not (isinstance(counts, dict) and all(is_number(counts.get(key), integer=True, lo=0, hi=_COUNT_MAX)
                                             for key in ("people", "faces"))):
        return "'counts' {people, faces}"
    if not is_number(info.get("generation"), integer=True, lo=0, hi=_COUNT_MAX):
        return "'generation' a count"
    if "threshold" not in info:
        return "'threshold' (null or the model's calibrated threshold)"
    if index["rows"] != counts["faces"]:
        return f"index rows ({index['rows']}) equal to counts.faces ({counts['faces']})"
    return None


def read_rows(folder: Path, info: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    """The rows of the generation gallery.json names: gallery.npz, or gallery.next.npz when a write committed
    gallery.json but was cut off before its last rename. Checked against gallery.json."""
    path = folder / GALLERY_NPZ
    try:
        arrays = load_npz(path)
    except FaceRecError:
        arrays = None
        if not (folder / NEXT_NPZ).is_file():
            raise
    if arrays is None or arrays["generation"] != info["generation"]:
        following = load_npz(folder / NEXT_NPZ) if (folder / NEXT_NPZ).is_file() else None
        if following is not None and following["generation"] == info["generation"]:
            arrays, path = following, folder / NEXT_NPZ
        elif arrays is None:
            load_npz(path)  # raises the error of gallery.npz itself
        else:
            raise FaceRecError(f"{path}: expected the rows of generation {info['generation']} that {GALLERY_JSON} "
                               f"names, holds generation {arrays['generation']}")
    names, embeddings, photos = arrays["names"], arrays["embeddings"], arrays["photos"]
    counts, dim = info["counts"], info["model"]["dim"]
    if embeddings.shape[1] != dim or len(embeddings) != counts["faces"]:
        raise FaceRecError(f"{path}: expected {counts['faces']} embeddings of {dim} dimensions as {GALLERY_JSON} "
                           f"says, holds {list(embeddings.shape)}")
    if len(np.unique(names)) != counts["people"]:
        raise FaceRecError(f"{path}: expected {counts['people']} people as {GALLERY_JSON} says, "
                           f"holds {len(np.unique(names))}")
    return names, embeddings, photos, path


def load_npz(path: Path) -> dict:
    """names, embeddings, photos, generation of a gallery .npz, each checked for kind and shape."""
    if not path.is_file():
        raise FaceRecError(f"{path}: expected {_NPZ}; file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"names", "embeddings", "photos", "generation"} - set(npz.files)
            if missing:
                raise FaceRecError(f"{path}: expected {_NPZ}; {', '.join(sorted(missing))} missing")
            arrays = {key: npz[key] for key in ("names", "embeddings", "photos", "generation")}
    except FaceRecError:
        raise
    except Exception as exc:  # noqa: BLE001  (not a zip, truncated, a bad CRC, pickled objects: all one to the user)
        raise FaceRecError(f"{path}: expected {_NPZ} ({type(exc).__name__})") from None
    names, embeddings, photos, generation = (arrays[k] for k in ("names", "embeddings", "photos", "generation"))
    n = len(embeddings) if embeddings.ndim == 2 else -1
    if not (names.ndim == 1 and names.dtype.kind == "U" and photos.ndim == 1 and photos.dtype.kind == "U"
            and embeddings.dtype == np.float32 and len(names) == n and len(photos) == n
            and generation.ndim == 0 and generation.dtype.kind == "i"):
        raise FaceRecError(f"{path}: expected {_NPZ}: str names and photos, one per row of float32 embeddings, "
                           "an integer generation")
    if not np.isfinite(embeddings).all() or (names == "").any():
        raise FaceRecError(f"{path}: expected finite embeddings and non-empty names")
    norms = np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings, dtype=np.float64))
    if n and np.abs(norms - 1).max() > _NORM_TOLERANCE:
        raise FaceRecError(f"{path}: expected L2-normalised embeddings (norms within {_NORM_TOLERANCE} of 1)")
    return {"names": names, "embeddings": embeddings, "photos": photos, "generation": int(generation)}
