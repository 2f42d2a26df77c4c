"""facerec-data CLI, FaceDataset, pairs/splits and AdaFace augmentations, on small synthetic folders and on
the real ORL faces."""

import json
import pickle
import shutil
import struct

import cv2
import numpy as np
import pytest
import torch

from eval_protocols.embed import normalize, to_input
from facerec.cli.data import main
from facerec.data.augment import AdaFaceAugment, low_resolution, photometric, random_crop_and_pad
from facerec.data.datasets import (
    FaceDataset,
    FacePack,
    sample_pairs,
    split_identities,
    verification_pairs,
)
from facerec.errors import FaceRecError


def _make_folder(root, identities=4, per_identity=3, seed=0):
    """root/id<i>/<j>.<ext> with jpg, png, bmp and grey pgm files of assorted sizes."""
    rng = np.random.default_rng(seed)
    for i in range(identities):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(per_identity):
            base = np.linspace(30 + 20 * i, 220, 120, dtype=np.float32)[:, None, None]
            img = np.clip(base + rng.normal(0, 6, (120, 100, 3)), 0, 255).astype(np.uint8)
            ext = (".jpg", ".png", ".bmp", ".pgm")[j % 4]
            cv2.imwrite(str(root / f"id{i}" / f"{j}{ext}"), img[:, :, 0] if ext == ".pgm" else img)
    return root


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    folder = _make_folder(root / "faces", identities=4, per_identity=3)
    assert main(["pack", str(folder), str(root / "pack")]) == 0
    return root / "pack"


@pytest.fixture(scope="module")
def orl_pack(orl_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("orl") / "pack"
    assert main(["pack", str(orl_dir), str(out)]) == 0
    return out


# --- CLI on good packs -------------------------------------------------------------------------------
def test_inspect_json(small_pack, capsys):
    capsys.readouterr()
    assert main(["inspect", str(small_pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["images"], info["identities"], info["image_size"], info["layout"]) == (12, 4, [112, 112], "face_set")
    assert info["counts"] == [3, 3, 3, 3] and info["per_identity"]["mean"] == 3.0


def test_verify_good_pack(small_pack, capsys):
    assert main(["verify", str(small_pack)]) == 0
    assert "17 records, 12 images decode" in capsys.readouterr().out


def test_pack_identity_range(tmp_path, capsys):
    folder = _make_folder(tmp_path / "faces", identities=5, per_identity=2)
    assert main(["pack", str(folder), str(tmp_path / "a"), "--identities-from", "1", "--identities-to", "4",
                 "--limit-ids", "2"]) == 0
    pack = FacePack(tmp_path / "a")
    assert (pack.num_identities, pack.num_images, pack.names()) == (2, 4, ["id1", "id2"])
    assert main(["pack", str(folder), str(tmp_path / "b"), "--identities-from", "7"]) == 2
    assert "expected an identity range" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_unpack_round_trip(small_pack, tmp_path):
    assert main(["unpack", str(small_pack), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["id0", "id1", "id2", "id3"]
    pack = FacePack(small_pack)
    for identity, name in enumerate(pack.names()):
        for key in pack.identity_keys(identity):
            assert (tmp_path / "out" / name / f"{key}.jpg").read_bytes() == pack.image_bytes(key)
    # packing the unpacked folder again keeps every image (112x112 JPEGs are not resized)
    assert main(["pack", str(tmp_path / "out"), str(tmp_path / "again")]) == 0
    again = FacePack(tmp_path / "again")
    assert again.num_images == 12 and np.abs(again.image(1).astype(int) - pack.image(1)).mean() < 2


def test_make_bin(tmp_path):
    folder = _make_folder(tmp_path / "faces", identities=4, per_identity=3)
    assert main(["make-bin", str(folder), str(tmp_path / "v.bin"), "--pairs", "20", "--seed", "3"]) == 0
    with open(tmp_path / "v.bin", "rb") as f:
        images, issame = pickle.load(f, encoding="bytes")
    assert len(images) == 40 and len(issame) == 20 and sum(issame) == 10
    assert all(isinstance(s, bool) for s in issame)
    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in images]
    assert all(d.shape == (112, 112, 3) for d in decoded)
    for i, same in enumerate(issame):  # a same pair is two different images of one identity
        if same:
            assert not np.array_equal(decoded[2 * i], decoded[2 * i + 1])


# --- bad input: exit 2, one line naming the file/offset and what was expected, nothing left behind ---
def _record_offsets(pack_dir):
    return {int(k): int(v) for k, v in (line.split("\t") for line in (pack_dir / "train.idx").read_text().split("\n")
                                          if line)}


def _truncate(pack):
    rec = pack / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-300])


def _wrong_magic(pack):
    rec = pack / "train.rec"
    data = bytearray(rec.read_bytes())
    offset = _record_offsets(pack)[5]
    data[offset:offset + 4] = b"\x00\x11\x22\x33"
    rec.write_bytes(bytes(data))


def _idx_past_end(pack):
    size = (pack / "train.rec").stat().st_size
    lines = (pack / "train.idx").read_text().splitlines()
    lines[3] = f"3\t{size + 4096}"
    (pack / "train.idx").write_text("\n".join(lines) + "\n")


def _corrupt_jpeg(pack):
    rec = pack / "train.rec"
    data = bytearray(rec.read_bytes())
    offset = _record_offsets(pack)[6]
    length = struct.unpack_from("<I", data, offset + 4)[0] & (2 ** 29 - 1)
    start = offset + 8 + 24  # frame header, IRHeader with flag 0
    data[start:offset + 8 + length] = bytes(length - 24)  # same length: framing intact, JPEG gone
    rec.write_bytes(bytes(data))


BAD_PACKS = {
    "truncated": (_truncate, ["train.rec", "offset", "expected", "truncated"]),
    "wrong_magic": (_wrong_magic, ["train.rec", "offset", "expected RecordIO magic 0xced7230a"]),
    "idx_past_end": (_idx_past_end, ["train.idx", "key 3", "offset", "past the end"]),
    "corrupt_jpeg": (_corrupt_jpeg, ["train.rec", "key 6", "expected", "image"]),
}


def _one_error_line(capsys, words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], (word, err[0])


@pytest.mark.parametrize("case", sorted(BAD_PACKS))
def test_bad_pack(case, small_pack, tmp_path, capsys):
    corrupt, words = BAD_PACKS[case]
    pack = tmp_path / "pack"
    shutil.copytree(small_pack, pack)
    corrupt(pack)
    capsys.readouterr()
    assert main(["verify", str(pack)]) == 2
    _one_error_line(capsys, words)
    assert main(["unpack", str(pack), str(tmp_path / "out")]) == 2
    _one_error_line(capsys, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"]  # no output, no temporary left


def test_verify_reports_first_bad_offset(small_pack, tmp_path, capsys):
    pack = tmp_path / "pack"
    shutil.copytree(small_pack, pack)
    _wrong_magic(pack)
    assert main(["verify", str(pack)]) == 2
    assert f"offset {_record_offsets(pack)[5]}:" in capsys.readouterr().err


def test_index_of_truncated_rec_writes_nothing(small_pack, tmp_path, capsys):
    pack = tmp_path / "pack"
    shutil.copytree(small_pack, pack)
    _truncate(pack)
    assert main(["index", str(pack / "train.rec"), str(tmp_path / "new.idx")]) == 2
    _one_error_line(capsys, ["train.rec", "offset", "truncated"])
    assert not (tmp_path / "new.idx").exists()


def _empty_folder(tmp_path):
    (tmp_path / "faces" / "nobody").mkdir(parents=True)
    return tmp_path / "faces", ["faces", "expected one sub-folder per identity"]


def _missing_folder(tmp_path):
    return tmp_path / "nowhere", ["nowhere", "expected an image folder"]


def _corrupt_image_file(tmp_path):
    folder = _make_folder(tmp_path / "faces", identities=3, per_identity=2)
    (folder / "id2" / "1.png").write_bytes(b"\x89PNG not really")
    return folder, ["id2/1.png", "expected an encoded image"]


@pytest.mark.parametrize("make", [_empty_folder, _missing_folder, _corrupt_image_file])
@pytest.mark.parametrize("command", ["pack", "make-bin"])
def test_bad_image_folder(make, command, tmp_path, capsys):
    folder, words = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = ["--pairs", "6"] if command == "make-bin" else []  # 3 same pairs: every same pair used
    assert main([command, str(folder), str(tmp_path / "out"), *extra]) == 2
    _one_error_line(capsys, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_or_empty_pack(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none")]) == 2
    _one_error_line(capsys, ["none", "expected a face pack folder"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train.rec").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    _one_error_line(capsys, ["train.rec", "expected at least one record"])


# --- datasets ----------------------------------------------------------------------------------------
def test_face_dataset_items(small_pack):
    pack = FacePack(small_pack)
    dataset = FaceDataset(pack, identities=[3, 1])
    assert len(dataset) == 6 and dataset.num_classes == 2
    image, label = dataset[3]
    assert image.shape == (3, 112, 112) and image.dtype == torch.float32 and label == 1
    expected = (torch.from_numpy(pack.image(4)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5  # key 4 = identity 1
    assert torch.allclose(image, expected, atol=1e-6)
    raw, _ = FaceDataset(pack, normalize=False)[3]
    assert raw.dtype == torch.uint8 and torch.equal(raw, torch.from_numpy(pack.image(4)).permute(2, 0, 1))
    # normalised on the device afterwards: the same numbers as the loader's, and as the evaluation's to_input
    assert torch.equal(normalize(raw[None])[0], image)
    assert np.array_equal(to_input(pack.image(4)[None])[0], image.numpy())


def test_dataloader_with_two_workers(small_pack):
    dataset = FaceDataset(small_pack, transform=AdaFaceAugment(seed=0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    images, labels = zip(*loader)
    assert torch.cat(labels).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    batch = torch.cat(images)
    assert batch.shape == (12, 3, 112, 112) and batch.abs().max() <= 1 + 2e-7  # within a float32 ulp


def test_split_identities():
    train, held = split_identities(40, 0.25, seed=1)
    assert len(held) == 10 and len(train) == 30 and sorted(train + held) == list(range(40))
    assert split_identities(40, 10, seed=1) == (train, held)
    assert split_identities(40, 10, seed=2) != (train, held)
    with pytest.raises(FaceRecError, match="holdout"):
        split_identities(5, 5, seed=0)


def test_sample_pairs_small_case():
    pairs, issame = sample_pairs([["a", "b"], ["c"]], 2, seed=0)
    assert issame.tolist() == [True, False]
    assert set(pairs[0]) == {"a", "b"} and "c" in pairs[1] and len(set(pairs[1])) == 2
    with pytest.raises(FaceRecError, match="expected 2 same"):
        sample_pairs([["a", "b"], ["c"]], 4, seed=0)  # only one same-identity pair exists



@pytest.mark.parametrize("big", [30, 700])  # 435 same pairs: listed and drawn; 244,650: rejection-sampled
def test_sample_pairs_by_people_counts_every_person_alike(big):
    """One person with many photos beside 60 people with 2 each: drawn over images, the big person makes
    nearly every same pair; drawn by people, about 1 in 61 of them."""
    groups = [[f"big{i}" for i in range(big)]] + [[f"p{k}a", f"p{k}b"] for k in range(60)]
    share = {}
    for by in ("images", "people"):
        pairs, issame = sample_pairs(groups, 100, seed=0, by=by)
        same = [pair for pair, s in zip(pairs, issame) if s]
        assert len(same) == 50 and len(set(map(frozenset, pairs))) == 100
        assert all(pair[0][:-1] == pair[1][:-1] or pair[0].startswith("big") and pair[1].startswith("big")
                   for pair in same)
        share[by] = sum(pair[0].startswith("big") for pair in same) / len(same)
    assert share["images"] > 0.5 and share["people"] < 0.15
    with pytest.raises(FaceRecError, match="pair sampling"):
        sample_pairs(groups, 10, seed=0, by="faces")

# --- the real faces ----------------------------------------------------------------------------------
def test_orl_pack_inspect_and_labels(orl_dir, orl_pack, capsys):
    capsys.readouterr()
    assert main(["inspect", str(orl_pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["identities"], info["images"], info["image_size"]) == (40, 400, [112, 112])
    assert info["counts"] == [10] * 40
    pack = FacePack(orl_pack)
    names = pack.names()
    assert names[:3] == ["s1", "s2", "s3"] and sorted(names) == sorted(p.name for p in orl_dir.glob("s*"))
    dataset = FaceDataset(pack)
    assert dataset.num_classes == 40 and len(dataset) == 400
    # item 10*i + j is image j+1 of s(i+1): the ORL pixels sit in the middle 92 columns
    for i in (0, 17, 39):
        image, label = dataset[10 * i + 4]
        assert label == i
        original = cv2.imread(str(orl_dir / f"s{i + 1}" / "5.pgm"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        middle = (image[0, :, 10:102].numpy() + 1) * 127.5
        assert np.abs(middle - original).mean() < 3
    subset = FaceDataset(pack, identities=[39, 0])
    assert [subset[0][1], subset[19][1]] == [0, 1]


def test_orl_verification_pairs(orl_pack):
    pack = FacePack(orl_pack)
    _, held = split_identities(pack.num_identities, 10, seed=0)
    images, issame = verification_pairs(pack, held, 60, seed=0)
    assert images.shape == (120, 112, 112, 3) and images.dtype == np.uint8
    assert issame.sum() == 30 and issame[::2].all() and not issame[1::2].any()
    again, _ = verification_pairs(pack, held, 60, seed=0)
    assert np.array_equal(images, again)


def test_verify_orl(orl_pack, capsys):
    assert main(["verify", str(orl_pack)]) == 0
    assert "441 records, 400 images decode" in capsys.readouterr().out


# --- augmentations -----------------------------------------------------------------------------------
@pytest.fixture
def face():
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(128, 40, (112, 112, 3)), 1, 255).astype(np.uint8)


def test_augment_off_is_identity(face):
    assert np.array_equal(AdaFaceAugment(0, 0, 0, flip=False, seed=0)(face), face)


def test_augment_seeded_and_flips(face):
    first = [AdaFaceAugment(seed=5)(face) for _ in range(2)]
    assert np.array_equal(*first)
    flips = AdaFaceAugment(0, 0, 0, flip=True, seed=1)
    outputs = [flips(face) for _ in range(40)]
    flipped = sum(np.array_equal(o, face[:, ::-1]) for o in outputs)
    assert 8 <= flipped <= 32 and flipped + sum(np.array_equal(o, face) for o in outputs) == 40


def test_crop_and_pad_keeps_window_in_place(face):
    out = random_crop_and_pad(face, np.random.default_rng(3))
    rows, cols = np.nonzero(out.any(axis=2))
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert np.array_equal(out[top:bottom, left:right], face[top:bottom, left:right])
    assert out.sum() < face.sum() and (bottom - top) * (right - left) >= 0.2 * 112 * 112 * 0.99


def test_low_resolution_and_photometric(face):
    rng = np.random.default_rng(4)
    low = low_resolution(face, rng)
    assert low.shape == face.shape and low.dtype == np.uint8 and not np.array_equal(low, face)
    assert np.abs(cv2.GaussianBlur(low, (0, 0), 4).astype(int) - cv2.GaussianBlur(face, (0, 0), 4)).mean() < 10
    jittered = photometric(face, np.random.default_rng(5))
    assert jittered.shape == face.shape and jittered.dtype == np.uint8 and not np.array_equal(jittered, face)
    grey = np.full_like(face, 100)  # saturation and contrast leave a flat grey image; brightness scales it
    out = photometric(grey, np.random.default_rng(6))
    assert len(np.unique(out)) == 1 and 50 <= out[0, 0, 0] <= 150


class _Draws(torch.utils.data.Dataset):
    def __init__(self, augment):
        self.augment = augment

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return float(self.augment.rng.random())


def test_augment_workers_draw_differently_and_reproducibly():
    def draws():
        loader = torch.utils.data.DataLoader(_Draws(AdaFaceAugment(seed=7)), batch_size=2, num_workers=2)
        return [v for batch in loader for v in batch.tolist()]

    first = draws()
    assert first == draws()  # seeded from (seed, worker id)
    assert first[0] != first[2]  # batch 0 from worker 0, batch 1 from worker 1


def test_dataset_pickles_for_spawned_workers(small_pack):
    dataset = FaceDataset(small_pack, identities=[2])
    dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[1][0], dataset[1][0]) and clone[1][1] == 0


def test_make_bin_reads_with_eval_reader(tmp_path):
    bins = pytest.importorskip("eval_protocols.bins")
    folder = _make_folder(tmp_path / "faces", identities=3, per_identity=4)
    assert main(["make-bin", str(folder), str(tmp_path / "v.bin"), "--pairs", "36"]) == 0  # every same pair
    images, issame = bins.load_bin(tmp_path / "v.bin")
    assert images.shape == (72, 112, 112, 3) and issame.sum() == 18
    assert issame[::2].all() and not issame[1::2].any()
