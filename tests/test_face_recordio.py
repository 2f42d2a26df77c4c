"""MXNet RecordIO format (ARCHITECTURE §5): byte layout, multi-chunk records, padding, index, and a second
reader written here straight from ARCHITECTURE §5 that reads what ``facerec-data pack`` writes."""

import struct

import numpy as np
import pytest

from facerec.cli.data import main
from facerec.data.datasets import FacePack
from facerec.data.recordio import (
    IRHeader,
    RecordReader,
    RecordWriter,
    encode_frames,
    pack_record,
    rebuild_index,
    unpack_record,
    write_face_pack,
)
from facerec.errors import FaceRecError

MAGIC = struct.pack("<I", 0xCED7230A)


# --- an independent reader, from ARCHITECTURE §5 only ------------------------------------------------------
def _design_records(rec_bytes: bytes) -> list[tuple[int, bytes]]:
    """[(offset of first chunk, payload)] reading [magic][lrec][payload][pad to 4] with cflag chunks."""
    out, pos, current, start = [], 0, None, None
    while pos < len(rec_bytes):
        magic, lrec = struct.unpack("<II", rec_bytes[pos:pos + 8])
        assert magic == 0xCED7230A, f"bad magic at {pos}"
        cflag, length = lrec >> 29, lrec & (2 ** 29 - 1)
        chunk = rec_bytes[pos + 8:pos + 8 + length]
        assert len(chunk) == length
        pad = rec_bytes[pos + 8 + length:pos + 8 + length + (4 - length % 4) % 4]
        assert set(pad) <= {0}
        if cflag in (0, 1):
            current, start = chunk, pos
        else:
            current += MAGIC + chunk
        pos += 8 + length + (4 - length % 4) % 4
        if cflag in (0, 3):
            out.append((start, current))
    return out


def _design_payload(payload: bytes) -> tuple[int, tuple, bytes]:
    flag, label, _id, _id2 = struct.unpack("<IfQQ", payload[:24])
    labels = struct.unpack(f"<{flag}f", payload[24:24 + 4 * flag]) if flag else (label,)
    return flag, labels, payload[24 + 4 * flag:]


def _design_idx(text: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (line.split("\t") for line in text.splitlines())}


# --- framing -----------------------------------------------------------------------------------------
def test_frames_split_at_aligned_magic_and_drop_it():
    payload = b"abcd" + MAGIC + b"xy"
    expected = (MAGIC + struct.pack("<I", 1 << 29 | 4) + b"abcd"
                + MAGIC + struct.pack("<I", 3 << 29 | 2) + b"xy" + b"\0\0")
    assert encode_frames(payload) == expected
    # three chunks: first (1), middle (2), last (3); the magic at offset 0 gives an empty first chunk
    frames = encode_frames(MAGIC + b"1234" + MAGIC)
    cflags = [struct.unpack_from("<I", frames, p)[0] >> 29 for p in (4, 12, 24)]
    assert cflags == [1, 2, 3]
    # dmlc only checks aligned words: an unaligned magic stays inside one whole record
    assert encode_frames(b"a" + MAGIC + b"bbb")[4:8] == struct.pack("<I", 8)


@pytest.mark.parametrize("n", range(9))
def test_padding_to_four_bytes(n):
    frames = encode_frames(bytes(range(1, n + 1)))
    assert len(frames) == 8 + n + (-n % 4)
    assert frames[8 + n:] == b"\0" * (-n % 4)


def test_writer_reader_round_trip_multichunk(tmp_path):
    payloads = [b"", b"x", MAGIC, b"abcd" + MAGIC + b"xy", MAGIC + MAGIC + b"1234" + MAGIC, b"a" + MAGIC + b"bbb",
                np.random.default_rng(0).bytes(5000)]
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        for key, payload in enumerate(payloads):
            writer.write(key, payload)
    data = (tmp_path / "a.rec").read_bytes()
    assert [p for _, p in _design_records(data)] == payloads
    index = _design_idx((tmp_path / "a.idx").read_text())
    assert list(index) == list(range(len(payloads)))
    assert [o for o, _ in _design_records(data)] == list(index.values())
    with_idx = RecordReader(tmp_path / "a.rec", tmp_path / "a.idx")
    without_idx = RecordReader(tmp_path / "a.rec")
    for key in reversed(range(len(payloads))):
        assert with_idx.read(key) == payloads[key] == without_idx.read(key)
    assert [p for _, p in without_idx.scan()] == payloads


def test_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
            writer.write(0, b"abc")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_irheader_pack_unpack():
    header, image = unpack_record(pack_record(IRHeader(0, 7.0, 3, 0), b"JPEG"))
    assert (header.flag, header.label, header.id, image) == (0, 7.0, 3, b"JPEG")
    payload = pack_record(IRHeader(2, [5, 9], 1, 0), b"")
    assert payload == struct.pack("<IfQQ", 2, 0.0, 1, 0) + struct.pack("<2f", 5, 9)
    header, image = unpack_record(payload)
    assert header.flag == 2 and header.label.tolist() == [5.0, 9.0] and image == b""
    with pytest.raises(FaceRecError, match="expected an IRHeader of 24 bytes"):
        unpack_record(b"short")


# --- face packs --------------------------------------------------------------------------------------
def _faces(rng, per_identity=(3, 1, 4)):
    # smooth gradients + noise, gray and colour, one not 112x112 to exercise fitting
    out = []
    for i, count in enumerate(per_identity):
        images = []
        for j in range(count):
            base = np.linspace(0, 200, 112, dtype=np.float32)[None, :, None] + 40 * i
            img = np.clip(base + rng.normal(0, 8, (112, 112, 3)), 0, 255).astype(np.uint8)
            images.append(img[:, :, 0] if j == 1 else img)
        out.append(images)
    out[0][0] = out[0][0][:, 10:102]  # 112x92 -> padded
    return out


def test_face_pack_layout_read_by_design_reader(tmp_path):
    import cv2

    faces = _faces(np.random.default_rng(1))
    info = write_face_pack(tmp_path / "pack", faces, names=["a", "b", "c"])
    assert info["images"] == 8 and info["identities"] == 3 and info["header"] == [9, 12]
    records = _design_records((tmp_path / "pack" / "train.rec").read_bytes())
    index = _design_idx((tmp_path / "pack" / "train.idx").read_text())
    assert [o for o, _ in records] == [index[k] for k in range(len(records))]
    flag, labels, image = _design_payload(records[0][1])
    assert (flag, labels, image) == (2, (9.0, 12.0), b"")
    ranges = [_design_payload(records[k][1])[1] for k in range(9, 12)]
    assert ranges == [(1.0, 4.0), (4.0, 5.0), (5.0, 9.0)]
    for identity, (start, end) in enumerate(ranges):
        for key in range(int(start), int(end)):
            flag, labels, jpeg = _design_payload(records[key][1])
            assert flag == 0 and labels == (float(identity),)
            decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
            assert decoded.shape == (112, 112, 3)
    assert (tmp_path / "pack" / "property").read_text().strip() == "3,112,112"
    # JPEG of the BGR array: decoding as BGR and flipping gives back the RGB input
    first = cv2.imdecode(np.frombuffer(_design_payload(records[2][1])[2], np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(first[:, :, ::-1].astype(int) - faces[0][1][:, :, None]).mean() < 3


def _jpeg_round_trip(rgb, quality=95):
    import cv2

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]


def test_face_pack_reader(tmp_path):
    faces = _faces(np.random.default_rng(2))
    write_face_pack(tmp_path / "pack", faces)
    pack = FacePack(tmp_path / "pack")
    assert pack.is_face_set and (pack.num_images, pack.num_identities, pack.image_size) == (8, 3, (112, 112))
    assert pack.identity_keys(2) == [5, 6, 7, 8]
    assert [pack.label(k) for k in range(1, 9)] == [0, 0, 0, 1, 2, 2, 2, 2]
    assert np.array_equal(pack.image(8), _jpeg_round_trip(faces[2][3]))
    # 112x92 is fitted without scaling: 10 replicated columns each side; grey becomes 3 equal channels
    assert np.array_equal(pack.image(1), _jpeg_round_trip(np.pad(faces[0][0], ((0, 0), (10, 10), (0, 0)), "edge")))
    assert np.array_equal(pack.image(2), _jpeg_round_trip(np.repeat(faces[0][1][:, :, None], 3, axis=2)))
    # without .idx the pack is scanned and keys are the record ordinals
    (tmp_path / "pack" / "train.idx").unlink()
    assert FacePack(tmp_path / "pack").identity_keys(2) == [5, 6, 7, 8]


def test_plain_pack(tmp_path):
    import cv2

    jpeg = cv2.imencode(".jpg", np.full((112, 112, 3), 90, np.uint8))[1].tobytes()
    with RecordWriter(tmp_path / "plain.rec", tmp_path / "plain.idx") as writer:
        for key, label in enumerate([3, 1, 3, 1, 7]):
            writer.write(key, pack_record(IRHeader(0, float(label), key, 0), jpeg))
    pack = FacePack(tmp_path / "plain.rec")
    assert not pack.is_face_set and pack.num_images == 5 and pack.num_identities == 3
    assert pack.identity_keys(0) == [1, 3] and pack.identity_keys(1) == [0, 2] and pack.label(4) == 2


def test_index_rebuild_matches_original(tmp_path, capsys):
    write_face_pack(tmp_path / "pack", _faces(np.random.default_rng(3)))
    original = (tmp_path / "pack" / "train.idx").read_text()
    assert rebuild_index(tmp_path / "pack" / "train.rec", tmp_path / "re.idx").read_text() == original
    (tmp_path / "pack" / "train.idx").unlink()
    assert main(["index", str(tmp_path / "pack" / "train.rec")]) == 0
    assert (tmp_path / "pack" / "train.idx").read_text() == original
    assert "12 records" in capsys.readouterr().out


def test_reader_is_lazy_and_picklable(tmp_path):
    import pickle

    write_face_pack(tmp_path / "pack", _faces(np.random.default_rng(4)))
    pack = FacePack(tmp_path / "pack")
    clone = pickle.loads(pickle.dumps(pack))
    assert clone.reader._map is None and clone.image_bytes(3) == pack.image_bytes(3)
