"""MXNet RecordIO (.rec + .idx) with struct/numpy only, byte-compatible with mxnet/dmlc (ARCHITECTURE §5).

A record on disk is ``[uint32 magic][uint32 lrec][payload][zero pad to 4 bytes]`` where
``lrec = cflag << 29 | length``. dmlc's writer looks for the magic word at every 4-byte aligned
position of the payload; at each hit it ends a chunk there and drops the 4 magic bytes (cflag 1 for
the first chunk, 2 for middle ones, 3 for the last), so a reader can resynchronise on the magic. The
reader puts the magic back between chunks. ``.idx`` is text, one ``key<TAB>offset`` per line, the
offset of the record's first chunk header.

The payload of an image record is an IRHeader ``<IfQQ`` (flag, label, id, id2); when flag > 0 the
label field is 0 and ``flag`` float32 labels follow; then the encoded image.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.errors import FaceRecError
from nas_core.io import atomic_write_text

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
_FRAME_FLAG = struct.Struct("<III")  # magic, lrec, IRHeader flag
IR_SIZE = _IR.size  # 24
_MAX_LENGTH = (1 << 29) - 1


@dataclass
class IRHeader:
    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0


def pack_record(header: IRHeader, image_bytes: bytes = b"") -> bytes:
    """IRHeader + image bytes -> payload, as ``mx.recordio.pack`` builds it (flag taken from the label)."""
    if np.ndim(header.label) == 0:
        return _IR.pack(0, float(header.label), header.id, header.id2) + bytes(image_bytes)
    labels = np.asarray(header.label, dtype="<f4").ravel()
    return _IR.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() + bytes(image_bytes)


def unpack_record(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Payload -> (IRHeader, image bytes). Labels come back as a float32 array when flag > 0."""
    header, start = unpack_header(payload, where)
    return header, bytes(payload[start:])


def unpack_header(payload, where: str = "record") -> tuple[IRHeader, int]:
    """Payload -> (IRHeader, offset of the image bytes in the payload); no copy of the image."""
    if len(payload) < IR_SIZE:
        raise FaceRecError(f"{where}: expected an IRHeader of {IR_SIZE} bytes, record holds {len(payload)}")
    flag, label, id_, id2 = _IR.unpack_from(payload, 0)
    if flag == 0:
        return IRHeader(0, label, id_, id2), IR_SIZE
    end = IR_SIZE + 4 * flag
    if len(payload) < end:
        raise FaceRecError(f"{where}: expected {flag} float32 labels after the IRHeader, record holds "
                           f"{len(payload)} bytes")
    labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=IR_SIZE).copy()
    return IRHeader(flag, labels, id_, id2), end


def encode_frames(payload: bytes) -> bytes:
    """Payload -> the bytes dmlc's RecordIOWriter puts on disk (chunks split at aligned magic words)."""
    n = len(payload)
    if n > _MAX_LENGTH:
        raise FaceRecError(f"record: expected a payload under 2^29 bytes, got {n}")
    lower = n & ~3
    words = np.frombuffer(payload, dtype="<u4", count=lower // 4)
    parts: list[bytes] = []
    start = 0
    for hit in (np.flatnonzero(words == MAGIC) * 4).tolist():
        parts += [_FRAME.pack(MAGIC, (1 if start == 0 else 2) << 29 | (hit - start)), payload[start:hit]]
        start = hit + 4
    parts += [_FRAME.pack(MAGIC, (3 if start else 0) << 29 | (n - start)), payload[start:]]
    parts.append(b"\0" * (-n % 4))
    return b"".join(parts)


def read_index(idx_path: str | Path) -> dict[int, int]:
    """``.idx`` text -> {key: offset}; FaceRecError naming the line when a line is malformed."""
    idx_path = Path(idx_path)
    try:
        text = idx_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceRecError(f"{idx_path}: expected a readable .idx text file ({exc})") from exc
    index: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            key, offset = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):
            raise FaceRecError(f"{idx_path}: line {lineno}: expected 'key<TAB>offset', got {line[:60]!r}") from None
        if offset < 0:
            raise FaceRecError(f"{idx_path}: line {lineno}: expected a non-negative offset, got {offset}")
        index[key] = offset
    return index


_MAPPED: weakref.WeakSet = weakref.WeakSet()


def _forget_maps_in_child() -> None:
    # A forked DataLoader worker maps the file itself (lazily) instead of sharing the parent's map; done
    # once at fork rather than with a getpid() per read, which costs a syscall on the hot path.
    for reader in list(_MAPPED):
        reader._map = None


os.register_at_fork(after_in_child=_forget_maps_in_child)


class RecordReader:
    """Random access by key through ``.idx``, or a sequential scan without it.

    The file is memory-mapped lazily on first use and mapped afresh in a forked child or after
    unpickling, so one reader can be handed to DataLoader workers; nothing is opened in ``__init__``.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        if not self.rec_path.is_file():
            raise FaceRecError(f"{self.rec_path}: expected a RecordIO .rec file, not found")
        if self.idx_path is not None and not self.idx_path.is_file():
            raise FaceRecError(f"{self.idx_path}: expected the .idx of {self.rec_path.name}, not found")
        self._index: dict[int, int] | None = None
        self._map: mmap.mmap | bytes | None = None

    # --- file access -------------------------------------------------------------------------
    def _data(self) -> mmap.mmap | bytes:
        if self._map is None:
            try:
                with open(self.rec_path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            except OSError as exc:
                raise FaceRecError(f"{self.rec_path}: expected a readable RecordIO .rec file ({exc.strerror})") from None
            _MAPPED.add(self)
        return self._map

    @property
    def size(self) -> int:
        return len(self._data())

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        self._map = None

    def __getstate__(self):
        return {**self.__dict__, "_map": None}

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- index -------------------------------------------------------------------------------
    @property
    def index(self) -> dict[int, int]:
        """{key: offset}: from ``.idx`` (offsets checked against the file size) or a scan (keys = ordinals)."""
        if self._index is None:
            if self.idx_path is None:
                self._index = {i: offset for i, (offset, _) in enumerate(self.scan())}
            else:
                index = read_index(self.idx_path)
                size = self.size
                for key, offset in index.items():
                    if offset + _FRAME.size > size:
                        raise FaceRecError(f"{self.idx_path}: key {key}: offset {offset} is past the end of "
                                           f"{self.rec_path.name} ({size} bytes); expected a record start")
                self._index = index
        return self._index

    def keys(self) -> list[int]:
        return list(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def offset(self, key: int) -> int:
        try:
            return self.index[key]
        except KeyError:
            raise FaceRecError(f"{self.idx_path or self.rec_path}: expected key {key}, not in the index") from None

    # --- records -----------------------------------------------------------------------------
    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (chunks joined, magic re-inserted)."""
        return self.read_at(self.offset(key), key)[0]

    def key_note(self, key: int | None) -> str:
        """Where a key's offset came from, for errors: a bad record may be a bad ``.idx`` line instead."""
        if key is None:
            return ""
        return f" (key {key}, offset from {self.idx_path.name})" if self.idx_path is not None else f" (key {key})"

    def read_at(self, offset: int, key: int | None = None) -> tuple[bytes, int]:
        """(payload, offset of the next record) of the record starting at ``offset`` (``key``: named in errors)."""
        data = self._data()
        magic, lrec = self._frame(data, offset, key)
        cflag, length = lrec >> 29, lrec & _MAX_LENGTH
        if magic == MAGIC and cflag == 0:  # the common case, kept short: one chunk
            end = offset + 8 + length
            if end + (-length % 4) <= len(data):
                return data[offset + 8:end], end + (-length % 4)
        return self._read_chunks(data, offset, key)

    def image_bytes_at(self, offset: int, where: str = "record", key: int | None = None) -> bytes:
        """The encoded image of the record at ``offset`` (the bytes after the IRHeader and its labels).
        The data loader's hot path: one struct read and one slice for a whole record (cflag 0)."""
        data = self._map if self._map is not None else self._data()
        if offset + 12 <= len(data):
            magic, lrec, flag = _FRAME_FLAG.unpack_from(data, offset)
            end = offset + 8 + lrec
            start = offset + 8 + IR_SIZE + 4 * flag
            if magic == MAGIC and lrec >> 29 == 0 and start <= end <= len(data) - (-lrec % 4):
                return data[start:end]
        payload = self.read_at(offset, key)[0]
        return payload[unpack_header(payload, where)[1]:]

    def _frame(self, data, offset: int, key: int | None = None) -> tuple[int, int]:
        if offset + 8 > len(data):
            raise FaceRecError(f"{self.rec_path}: offset {offset}{self.key_note(key)}: expected an 8-byte record "
                               f"header, the file ends at {len(data)} (truncated?)")
        return _FRAME.unpack_from(data, offset)

    def _read_chunks(self, data, offset: int, key: int | None = None) -> tuple[bytes, int]:
        parts: list[bytes] = []
        pos = offset
        note = self.key_note(key)
        while True:
            magic, lrec = self._frame(data, pos, key)
            if magic != MAGIC:
                raise FaceRecError(f"{self.rec_path}: offset {pos}{note}: expected RecordIO magic 0x{MAGIC:08x}, "
                                   f"found 0x{magic:08x}")
            cflag, length = lrec >> 29, lrec & _MAX_LENGTH
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                what = "a record start (cflag 0 or 1)" if not parts else "a continuation chunk (cflag 2 or 3)"
                raise FaceRecError(f"{self.rec_path}: offset {pos}{note}: expected {what}, found cflag {cflag}")
            end = pos + 8 + length
            padded = end + (-length % 4)
            if padded > len(data):
                raise FaceRecError(f"{self.rec_path}: offset {pos}{note}: expected {length} payload bytes (+ "
                                   f"padding), the file ends after {len(data) - pos - 8} (truncated?)")
            if parts:
                parts.append(_MAGIC_BYTES)
            parts.append(data[pos + 8:end])
            pos = padded
            if cflag in (0, 3):
                return b"".join(parts), pos

    def scan(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every record in file order as (offset, payload); needs no ``.idx``."""
        data = self._data()
        pos = start
        while pos < len(data):
            payload, following = self._read_chunks(data, pos)
            yield pos, payload
            pos = following


class RecordWriter:
    """Sequential writer of ``.rec`` (+ ``.idx``). Atomic: both land under temporary names in the same
    folder and are renamed on a clean ``close()``; an exception inside ``with`` leaves nothing behind."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp_rec = tempfile.mkstemp(dir=self.rec_path.parent, prefix=f".{self.rec_path.name}.",
                                             suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a pack is shared data, honour the umask
        self._rec = os.fdopen(fd, "w+b")
        self._offsets: dict[int, int] = {}
        self._lengths: dict[int, int] = {}
        self._closed = False

    def write(self, key: int, payload: bytes) -> int:
        """Append one record; returns its offset."""
        key = int(key)
        if key in self._offsets:
            raise FaceRecError(f"{self.rec_path}: expected unique keys, key {key} written twice")
        frames = encode_frames(payload)
        offset = self._rec.tell()
        self._rec.write(frames)
        self._offsets[key] = offset
        self._lengths[key] = len(frames)
        return offset

    def rewrite(self, key: int, payload: bytes) -> None:
        """Overwrite record ``key`` in place with a payload of the same encoded size (the InsightFace
        header record 0 is reserved first and filled in once the counts are known)."""
        frames = encode_frames(payload)
        if len(frames) != self._lengths.get(key):
            raise ValueError(f"rewrite of key {key}: encoded size {len(frames)} != {self._lengths.get(key)}")
        end = self._rec.tell()
        self._rec.seek(self._offsets[key])
        self._rec.write(frames)
        self._rec.seek(end)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._rec.flush()
        os.fsync(self._rec.fileno())
        self._rec.close()
        try:
            if self.idx_path is not None:
                atomic_write_text(self.idx_path, "".join(f"{k}\t{o}\n" for k, o in self._offsets.items()))
            os.replace(self._tmp_rec, self.rec_path)
        except BaseException:
            Path(self._tmp_rec).unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._rec.close()
        Path(self._tmp_rec).unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def rebuild_index(rec_path: str | Path, idx_path: str | Path | None = None) -> Path:
    """Scan ``.rec`` and write its ``.idx`` (atomically). Keys are the record ordinals 0, 1, ..., which is
    how im2rec and InsightFace's packers number them. Returns the ``.idx`` path."""
    rec_path = Path(rec_path)
    idx_path = Path(idx_path) if idx_path is not None else rec_path.with_suffix(".idx")
    reader = RecordReader(rec_path)
    lines = [f"{i}\t{offset}\n" for i, (offset, _) in enumerate(reader.scan())]
    reader.close()
    if not lines:
        raise FaceRecError(f"{rec_path}: expected at least one record, the file is empty")
    atomic_write_text(idx_path, "".join(lines))
    return idx_path


# --- InsightFace face-set layout (ARCHITECTURE §5) ---------------------------------------------------------

def write_face_pack(out_dir: str | Path, identities, *, image_size: tuple[int, int] = (112, 112),
                    quality: int = 95, names: list[str] | None = None) -> dict:
    """Write ``out_dir/train.rec``, ``train.idx`` and ``property`` in InsightFace's layout.

    ``identities``: per identity, its images (RGB uint8 HxWx3 or grey HxW arrays), fitted into
    ``image_size`` (h, w) by ``images.fit_face``. Keys: 0 = header (flag 2, labels (a, b)),
    1..a-1 = images (label = identity), a..b-1 = one record per identity whose labels are its
    [start, end) image-key range. Labels are float32 as in MXNet, exact for keys below 2^24.
    ``names`` (optional) are written to ``identities.txt`` so ``unpack`` restores folder names.
    Nothing is left behind on error: files land under temporary names and are renamed at the end.
    """
    from facerec.data.images import encode_jpeg, fit_face

    out_dir = Path(out_dir)
    created = not out_dir.exists()
    height, width = image_size
    ranges: list[tuple[int, int]] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with RecordWriter(out_dir / "train.rec", out_dir / "train.idx") as writer:
            writer.write(0, pack_record(IRHeader(2, [0, 0])))  # filled in once the counts are known
            key = 1
            for label, images in enumerate(identities):
                start = key
                for image in images:
                    jpeg = encode_jpeg(fit_face(image, (height, width)), quality)
                    writer.write(key, pack_record(IRHeader(0, float(label), key, 0), jpeg))
                    key += 1
                if key == start:
                    raise FaceRecError(f"identity {label}: expected at least one image")
                ranges.append((start, key))
            first_identity = key
            for start, end in ranges:
                writer.write(key, pack_record(IRHeader(2, [start, end], key, 0)))
                key += 1
            writer.rewrite(0, pack_record(IRHeader(2, [first_identity, key])))
        if names is not None:
            atomic_write_text(out_dir / "identities.txt", "".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
        atomic_write_text(out_dir / "property", f"{len(ranges)},{height},{width}\n")
    except BaseException:
        if created:
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {"images": first_identity - 1, "identities": len(ranges), "image_size": [height, width],
            "header": [first_identity, key], "rec": str(out_dir / "train.rec"), "idx": str(out_dir / "train.idx"),
            "property": str(out_dir / "property")}
