"""The decoded cache of a face pack (ARCHITECTURE §8): every image of ``train.rec`` decoded once into ``PACK/cache/``.

    images.u8    uint8 [N, H, W, 3] RGB, C order, no header (a raw np.memmap); row i is the i-th key of
                 FacePack.image_keys() (ascending keys)
    labels.npy   int64 [N], the pack identity of each row
    cache.json   {"format", "count", "shape", "rec", "rec_size", "rec_mtime_ns"}, written last: its presence
                 means the cache is complete; a .rec whose size or mtime differs makes the cache stale

A build writes ``images.u8.partial`` and, after every chunk, ``progress.json`` (rows done + the .rec's
size and mtime). A killed build rerun continues after the last recorded chunk; a partial build of a .rec
that has changed since starts again. CASIA-WebFace (490,623 images of 112x112x3) is 18.5 GB.
"""

from __future__ import annotations

import errno
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.data.datasets import FacePack
from facerec.errors import FaceRecError
from nas_core.io import atomic_write, atomic_write_json
from nas_core.runlog import progress_bar

CACHE_FOLDER = "cache"
FORMAT = 1
IMAGES, LABELS, META, PARTIAL, PROGRESS = "images.u8", "labels.npy", "cache.json", "images.u8.partial", "progress.json"
CHUNK = 1024  # images decoded between two progress records


def cache_folder(pack: FacePack) -> Path:
    return (pack.root if pack.root.is_dir() else pack.root.parent) / CACHE_FOLDER


def cache_bytes(num_images: int, image_size) -> int:
    """Bytes of images.u8 for ``num_images`` RGB images of ``image_size`` (h, w)."""
    return int(num_images) * int(image_size[0]) * int(image_size[1]) * 3


def _rec_stamp(pack: FacePack) -> dict:
    stat = pack.reader.rec_path.stat()
    return {"rec": pack.reader.rec_path.name, "rec_size": stat.st_size, "rec_mtime_ns": stat.st_mtime_ns}


def _rebuild_hint(pack: FacePack) -> str:
    return f"stale cache: rebuild with facerec-data cache {pack.root}"


def cache_state(pack: FacePack) -> str:
    """absent, partial (a build was interrupted), stale (the .rec changed since, or a file of the cache does
    not read as open_cache reads it) or complete: the files verify and training check, checked the same way."""
    folder = cache_folder(pack)
    if (folder / META).exists():
        try:
            open_cache(pack)
        except FaceRecError:
            return "stale"
        return "complete"
    return "partial" if (folder / PARTIAL).is_file() else "absent"


def _check_meta(pack: FacePack, path: Path) -> dict:
    """cache.json read and compared with the pack; FaceRecError 'stale cache: rebuild ...' when it differs."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FaceRecError(f"{path}: {_rebuild_hint(pack)} (unreadable: {exc})") from None
    keys = pack.image_keys()
    shape = [len(keys), *pack.image_size, 3]
    expected = {"format": FORMAT, "count": len(keys), "shape": shape, **_rec_stamp(pack)}
    for name, value in expected.items():
        if not isinstance(meta, dict) or meta.get(name) != value:
            found = meta.get(name) if isinstance(meta, dict) else meta
            raise FaceRecError(f"{path}: {_rebuild_hint(pack)} ({name} {found!r:.40}, the pack has {value!r})")
    images = path.parent / IMAGES
    size = images.stat().st_size if images.is_file() else None
    if size != cache_bytes(len(keys), pack.image_size):
        raise FaceRecError(f"{images}: {_rebuild_hint(pack)} (expected {cache_bytes(len(keys), pack.image_size)} "
                           f"bytes, found {'no file' if size is None else size})")
    return meta


@dataclass
class DecodedCache:
    """An opened cache that matches its pack: ``images`` (read-only memmap, N x H x W x 3), ``labels``, ``keys``."""

    folder: Path
    images: np.ndarray
    labels: np.ndarray
    keys: np.ndarray

    def rows(self, keys) -> np.ndarray:
        """Rows of the given image keys (keys are ascending in the cache)."""
        return np.searchsorted(self.keys, np.asarray(keys, dtype=np.int64))


def open_cache(pack: FacePack) -> DecodedCache | None:
    """The pack's decoded cache, None when it has no complete one; FaceRecError when it is stale."""
    folder = cache_folder(pack)
    if not (folder / META).exists():
        return None
    meta = _check_meta(pack, folder / META)
    try:
        labels = np.load(folder / LABELS, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (missing, truncated, an object array, a damaged header: NumPy
        # raises anything from ValueError to tokenize.TokenError)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a numeric .npy array"
        raise FaceRecError(f"{folder / LABELS}: {_rebuild_hint(pack)} (unreadable: {reason})") from None
    if not isinstance(labels, np.ndarray) or labels.shape != (meta["count"],) or labels.dtype.kind not in "iu":
        found = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise FaceRecError(f"{folder / LABELS}: {_rebuild_hint(pack)} (expected {meta['count']} integer labels, "
                           f"found {found})")
    if len(labels) and not (0 <= labels.min() and labels.max() < pack.num_identities):
        raise FaceRecError(f"{folder / LABELS}: {_rebuild_hint(pack)} (expected identities 0..{pack.num_identities - 1}, "
                           f"found {labels.min()}..{labels.max()})")
    try:
        images = np.memmap(folder / IMAGES, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    except (OSError, ValueError) as exc:
        raise FaceRecError(f"{folder / IMAGES}: {_rebuild_hint(pack)} (unreadable: {exc})") from None
    return DecodedCache(folder, images, labels, np.asarray(pack.image_keys(), dtype=np.int64))


# --- building --------------------------------------------------------------------------------------

def _resume_point(folder: Path, stamp: dict, shape: list[int]) -> int:
    """Rows a killed build of this .rec already wrote (0: start again)."""
    progress, partial = folder / PROGRESS, folder / PARTIAL
    if not (progress.is_file() and partial.is_file()):
        return 0
    try:
        record = json.loads(progress.read_text())
    except (OSError, ValueError):
        return 0
    same = isinstance(record, dict) and all(record.get(k) == v for k, v in {**stamp, "shape": shape}.items())
    if not same or partial.stat().st_size != cache_bytes(shape[0], shape[1:3]):
        return 0
    return int(record.get("done", 0))


def _open_partial(path: Path, total: int, fresh: bool):
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o666)
        if fresh:
            try:  # claim the space now: a full disk fails here, in one line, not hours later
                os.posix_fallocate(fd, 0, total)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                os.ftruncate(fd, total)
        return os.fdopen(fd, "r+b")
    except OSError as exc:
        raise FaceRecError(f"{path}: expected {total / 1e9:.1f} GB of free, writable space for the decoded "
                           f"cache ({exc.strerror})") from None


def _decode(pack: FacePack, key: int, size) -> np.ndarray:
    image = pack.image(key)
    if image.shape != (*size, 3):
        raise FaceRecError(f"{pack.where(key)}: expected a {size[0]}x{size[1]} RGB image (the pack's size), got "
                           f"{'x'.join(map(str, image.shape))}")
    return image


def build_cache(pack: FacePack, *, workers: int = 1, restart: bool = False, chunk: int = CHUNK,
                progress: bool = True) -> Path:
    """Decode every image of ``pack`` into its cache folder (see the module docstring); returns the folder."""
    folder = cache_folder(pack)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)  # from here on the old cache, if any, is not a complete one
    keys = pack.image_keys()
    size = tuple(pack.image_size)
    shape = [len(keys), *size, 3]
    stamp = _rec_stamp(pack)
    done = 0 if restart else _resume_point(folder, stamp, shape)
    row = cache_bytes(1, size)
    with _open_partial(folder / PARTIAL, row * len(keys), fresh=done == 0) as out, \
            ThreadPoolExecutor(max(1, workers)) as pool, \
            progress_bar(total=len(keys), initial=done, unit="img", desc="cache", disable=not progress) as bar:
        for lo in range(done, len(keys), chunk):
            hi = min(len(keys), lo + chunk)
            # cv2.imdecode releases the GIL: threads decode in parallel
            images = list(pool.map(lambda k: _decode(pack, int(k), size), keys[lo:hi]))
            _write_rows(out, folder / PARTIAL, lo * row, np.stack(images))
            atomic_write_json(folder / PROGRESS, {**stamp, "shape": shape, "done": hi})
            bar.update(hi - lo)
    labels = np.asarray([pack.label(int(k)) for k in keys], dtype=np.int64)
    atomic_write(folder / LABELS, lambda f: np.save(f, labels, allow_pickle=False))
    os.replace(folder / PARTIAL, folder / IMAGES)
    atomic_write_json(folder / META, {"format": FORMAT, "count": len(keys), "shape": shape, **stamp,
                                      "bytes": row * len(keys)})
    (folder / PROGRESS).unlink(missing_ok=True)
    return folder


def _write_rows(out, path: Path, offset: int, images: np.ndarray) -> None:
    try:
        out.seek(offset)
        out.write(images.tobytes())
        out.flush()
        os.fsync(out.fileno())  # rows on disk before progress.json says they are
    except OSError as exc:
        raise FaceRecError(f"{path}: expected free, writable space for the decoded cache ({exc.strerror})") from None
