"""A face gallery in a folder: enrolled faces (one L2-normalised embedding per enrolled photo, with its
person's name and the photo it came from), searched for the top-k *people* of a query face. The files and how a
write commits are in facerec.deploy.gallery_files.

A person's score is the best cosine over their rows. Search is exact with the default ``flat`` index (faiss
IndexFlatIP): the rows are searched for the top m (m = max(4k, 16) at first); each person met among them is
scored by their first (best) row, which is their best row overall, since any better row of theirs would rank
above it. When fewer than k distinct people appear the search widens (m x 4) until k do or m covers the
gallery, so the k people returned are exactly the k best (people of equal score in any order). ``hnsw``
(IndexHNSWFlat, M=32) and ``ivf`` (IndexIVFFlat, nlist ~ 4 sqrt(N)) are approximate, for large galleries: the
same rule then ranks the rows they find.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.deploy.gallery_files import (
    FORMAT,
    GALLERY_JSON,
    INDEX_FILE,
    INDEX_KINDS,
    NEXT_NPZ,
    commit_next,
    faiss,  # imported there, its OpenMP threads waiting passively
    read_gallery_info,
    read_rows,
    sha256_of_file,
    write_index,
)
from facerec.errors import FaceRecError
from nas_core.errors import NasError
from nas_core.io import atomic_write, atomic_write_json
from nas_core.runlock import run_lock

HNSW_M = 32
_BLAS_FROM_QUERIES = 20


def model_fingerprint(path: str | Path) -> str:
    """The first 16 hex digits of the sha256 of the model file's bytes: what a gallery was embedded with."""
    path = Path(path)
    try:
        return sha256_of_file(path)[:16]
    except OSError as exc:
        raise FaceRecError(f"{path}: expected a readable model file ({exc.strerror})") from None


@dataclass(frozen=True)
class GalleryModel:
    """The model a gallery's rows were embedded with: its file as first given, fingerprint and embedding dim."""

    file: str
    fingerprint: str
    dim: int

    @classmethod
    def of(cls, path: str | Path, dim: int) -> GalleryModel:
        return cls(str(path), model_fingerprint(path), int(dim))


# --- faiss indexes: one builder per kind ---------------------------------------------------------------------

def _flat(dim: int, embeddings: np.ndarray) -> faiss.Index:
    return faiss.IndexFlatIP(dim)


def _hnsw(dim: int, embeddings: np.ndarray) -> faiss.Index:
    return faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)


def _ivf(dim: int, embeddings: np.ndarray) -> faiss.Index:
    # nlist ~ 4 sqrt(N) (faiss's guideline), at most N/39 so k-means has the 39 points per centroid it asks for.
    n = len(embeddings)
    nlist = max(1, min(round(4 * math.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(embeddings)
    return index


_INDEX_BUILDERS: dict[str, Callable[[int, np.ndarray], faiss.Index]] = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf}
_INDEX_TYPES = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}


def build_index(kind: str, embeddings: np.ndarray) -> faiss.Index:
    """A faiss index of ``kind`` over the rows (inner product = cosine on L2-normalised rows)."""
    index = _INDEX_BUILDERS[kind](embeddings.shape[1], embeddings)
    index.add(embeddings)
    return index


def _search_rows(index: faiss.Index, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``m`` rows per query (scores, row numbers; -1 where an approximate index found fewer)."""
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = max(64, 2 * m)  # the candidate list must hold at least the m asked for
    elif isinstance(index, faiss.IndexIVFFlat):
        index.nprobe = min(index.nlist, max(1, math.ceil(index.nlist / 16)))  # ~1/16 of the gallery scanned
    else:
        return _flat_search(index, queries, m)
    return index.search(queries, m)


def _flat_search(index: faiss.Index, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    # faiss >= 1.8 scans the rows once per query below 128000 queries (distance_compute_blas_threshold); a
    # batch of 20 or more goes through BLAS instead (faiss <= 1.7's rule): 8x the queries/s for batches of 100
    # on 200k 512-d rows, measured on 2 cores. The setting is faiss's global: set for this search only.
    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = _BLAS_FROM_QUERIES
    try:
        return index.search(queries, m)
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved


# --- the gallery ---------------------------------------------------------------------------------------------

class Gallery:
    """Rows (names, embeddings, photos) of one model, their index, and the folder they live in."""

    def __init__(self, folder: str | Path, model: GalleryModel, *, index_kind: str = "flat",
                 threshold: dict | None = None, names: Iterable[str] = (), embeddings: np.ndarray | None = None,
                 photos: Iterable[str] = (), generation: int = 0, index_sha256: str | None = None):
        if index_kind not in INDEX_KINDS:
            raise FaceRecError(f"--index {index_kind}: expected one of {', '.join(INDEX_KINDS)}")
        self.folder = Path(folder)
        self.model = model
        self.index_kind = index_kind
        self.threshold = threshold
        self.names = np.asarray(names if isinstance(names, np.ndarray) else list(names), dtype=str)
        self.photos = np.asarray(photos if isinstance(photos, np.ndarray) else list(photos), dtype=str)
        self.embeddings = (np.zeros((0, model.dim), np.float32) if embeddings is None
                           else np.ascontiguousarray(embeddings, dtype=np.float32))
        self.generation = generation
        self._index_sha256 = index_sha256
        self._index: faiss.Index | None = None
        self._people()

    def _people(self) -> None:
        # people: sorted distinct names; person_of_row: each row's position in people.
        self.people, self.person_of_row = np.unique(self.names, return_inverse=True)
        self.person_of_row = self.person_of_row.reshape(-1).astype(np.int64)

    @property
    def faces(self) -> int:
        return len(self.names)

    def faces_per_person(self) -> dict[str, int]:
        counts = np.bincount(self.person_of_row, minlength=len(self.people))
        return {str(name): int(c) for name, c in zip(self.people, counts)}

    # -- changing the rows --

    def enrolled(self) -> set[tuple[str, str]]:
        """(name, photo) of every row: a photo enrolled again for the same person is not added twice."""
        return set(zip(self.names.tolist(), self.photos.tolist()))

    def add(self, names: list[str], embeddings: np.ndarray, photos: list[str]) -> int:
        """Append rows, skipping (name, photo) pairs already enrolled; the number of rows added."""
        embeddings = _checked_rows(embeddings, self.model.dim, "embeddings to enroll")
        if not len(names) == len(photos) == len(embeddings):
            raise ValueError("expected one name and one photo per embedding")
        seen = self.enrolled()
        keep = []
        for i, key in enumerate(zip(names, photos)):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        if keep:
            index = self._index if self.index_kind == "hnsw" else None  # an IVF's lists are refitted to the rows
            self.names = np.concatenate([self.names, np.asarray([names[i] for i in keep], dtype=str)])
            self.photos = np.concatenate([self.photos, np.asarray([photos[i] for i in keep], dtype=str)])
            self.embeddings = np.concatenate([self.embeddings, embeddings[keep]])
            self._changed()
            if index is not None:  # an HNSW graph grows in place: rebuilding a large one takes minutes
                index.add(embeddings[keep])
                self._index = index
        return len(keep)

    def remove(self, people: list[str]) -> int:
        """Drop every row of these people (each must be in the gallery); the number of rows removed."""
        missing = [name for name in people if name not in set(self.people.tolist())]
        if missing:
            raise FaceRecError(f"{self.folder}: expected enrolled people; not in the gallery: {', '.join(missing)}")
        drop = np.isin(self.names, people)
        self.names, self.photos, self.embeddings = self.names[~drop], self.photos[~drop], self.embeddings[~drop]
        self._changed()
        return int(drop.sum())

    def use_index(self, kind: str) -> None:
        """Index the rows with ``kind`` from now on (built on the next save or search)."""
        if kind not in INDEX_KINDS:
            raise FaceRecError(f"--index {kind}: expected one of {', '.join(INDEX_KINDS)}")
        if kind != self.index_kind:
            self.index_kind, self._index, self._index_sha256 = kind, None, None

    def _changed(self) -> None:
        self._people()
        self._index, self._index_sha256 = None, None

    # -- searching --

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query, the top-``k`` people as (name, best cosine over their rows), best first (module doc)."""
        queries = _checked_rows(queries, self.model.dim, "query embeddings")
        if self.faces == 0:
            raise FaceRecError(f"{self.folder}: expected enrolled faces to search; the gallery is empty")
        want = min(int(k), len(self.people))
        index = self.index()
        found: list[list[tuple[str, float]] | None] = [None] * len(queries)
        pending, m = np.arange(len(queries)), min(self.faces, max(4 * want, 16))
        while pending.size:
            scores, rows = _search_rows(index, queries[pending], m)
            short = []
            for q, q_scores, q_rows in zip(pending, scores, rows):
                top = self._best_people(q_scores, q_rows, want)
                if len(top) < want and m < self.faces:
                    short.append(q)
                else:
                    found[q] = top
            pending, m = np.asarray(short, dtype=np.int64), min(self.faces, 4 * m)
        return found

    def _best_people(self, scores: np.ndarray, rows: np.ndarray, want: int) -> list[tuple[str, float]]:
        best: dict[int, float] = {}
        for score, row in zip(scores.tolist(), rows.tolist()):
            if row < 0:
                continue
            person = int(self.person_of_row[row])
            if person not in best:
                best[person] = score
                if len(best) == want:
                    break
        return [(str(self.people[p]), s) for p, s in best.items()]

    def index(self, *, save_rebuilt: bool = True) -> faiss.Index:
        """The faiss index over the rows: index.faiss when it matches gallery.json, else built (and, with
        ``save_rebuilt``, saved for the next reader)."""
        if self._index is None:
            self._index = self._read_index()
            if self._index is None:
                self._index = build_index(self.index_kind, self.embeddings)
                if save_rebuilt:
                    self._save_rebuilt_index()
        return self._index

    def _read_index(self) -> faiss.Index | None:
        path = self.folder / INDEX_FILE
        try:
            if self._index_sha256 is None or sha256_of_file(path) != self._index_sha256:
                return None
            index = faiss.downcast_index(faiss.read_index(str(path)))
        except (OSError, RuntimeError):
            return None
        matches = (isinstance(index, _INDEX_TYPES[self.index_kind]) and index.ntotal == self.faces
                   and index.d == self.model.dim and index.metric_type == faiss.METRIC_INNER_PRODUCT)
        return index if matches else None

    def _save_rebuilt_index(self) -> None:
        """Write a rebuilt index for the next reader when this process can take the writer's lock; a reader that
        cannot (another writer, a read-only folder) searches with the index it built and leaves the files be."""
        if not (self.folder / GALLERY_JSON).is_file():
            return
        try:
            with run_lock(self.folder, "facerec-gallery (index rebuild)"):
                if read_gallery_info(self.folder)["generation"] != self.generation:
                    return  # a writer changed the rows since we read them
                self._index_sha256 = write_index(self.folder / INDEX_FILE, self._index)
                atomic_write_json(self.folder / GALLERY_JSON, self.info())
        except NasError:
            return

    # -- files --

    def info(self) -> dict:
        """gallery.json's content."""
        return {"format": FORMAT, "model": {"file": self.model.file, "fingerprint": self.model.fingerprint,
                                            "dim": self.model.dim},
                "index": {"kind": self.index_kind, "file": INDEX_FILE if self.faces else None,
                          "rows": self.faces, "sha256": self._index_sha256},
                "threshold": self.threshold, "counts": {"people": len(self.people), "faces": self.faces},
                "generation": self.generation}

    def save(self) -> None:
        """Commit the rows: gallery.next.npz, index.faiss, gallery.json (the commit point), gallery.npz (module
        doc). The caller holds the folder's lock (nas_core.runlock)."""
        for stray in self.folder.glob(".*.tmp"):  # left by a writer killed mid-write (the lock is ours now)
            stray.unlink(missing_ok=True)
        generation = self.generation + 1
        arrays = {"names": self.names, "embeddings": self.embeddings, "photos": self.photos,
                  "generation": np.asarray(generation, dtype=np.int64)}
        atomic_write(self.folder / NEXT_NPZ, lambda f: np.savez(f, **arrays))
        if self.faces:
            self._index = self._index if self._index is not None else build_index(self.index_kind, self.embeddings)
            self._index_sha256 = write_index(self.folder / INDEX_FILE, self._index)
        else:
            self._index, self._index_sha256 = None, None
        self.generation = generation
        atomic_write_json(self.folder / GALLERY_JSON, self.info())
        commit_next(self.folder)
        if not self.faces:
            (self.folder / INDEX_FILE).unlink(missing_ok=True)

    @classmethod
    def open(cls, folder: str | Path, *, writer: bool = False) -> Gallery:
        """Read a gallery folder, every file checked; ``writer``: the caller holds the lock, so a committed write
        whose last rename was cut off is finished here."""
        folder = Path(folder)
        info = read_gallery_info(folder)
        names, embeddings, photos, source = read_rows(folder, info)
        if writer and source.name == NEXT_NPZ:
            commit_next(folder)
        model = info["model"]
        return cls(folder, GalleryModel(model["file"], model["fingerprint"], model["dim"]),
                   index_kind=info["index"]["kind"], threshold=info["threshold"], names=names,
                   embeddings=embeddings, photos=photos, generation=info["generation"],
                   index_sha256=info["index"]["sha256"])


def _checked_rows(rows: np.ndarray, dim: int, what: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != dim or rows.dtype.kind != "f":
        raise FaceRecError(f"{what}: expected float [N, {dim}] embeddings of the gallery's model, "
                           f"got {rows.dtype} {list(rows.shape)}")
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if not np.isfinite(rows).all():
        raise FaceRecError(f"{what}: expected finite embeddings")
    return rows
