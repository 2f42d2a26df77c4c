"""From everyday photos: MTCNN finds the face of real unaligned photos (raw_faces) with its 5 points in
order, alignment puts the eyes on the ArcFace template, facerec-data align handles bad photos, --faces all,
--strict, a rerun after a kill, flag errors, and facerec-embed --detect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from eval_protocols.align import ARCFACE_TEMPLATE, similarity_transform
from facerec.cli.data import main as data_main
from facerec.photos.detect import (
    EMPTY,
    NO_FACE,
    OFF_PHOTO,
    TRUNCATED,
    create_detector,
    faces_in_photos,
    select_faces,
)

PINS = ["Alex_Lawther", "Alexandra_Daddario", "Alvaro_Morte"]
# A real CelebA photo of two faces: the woman it is of, and a man at the top-left corner whose face is cut by
# the border (MTCNN extends his box beyond the photo, so his box is the larger one; hers is the larger visible).
TWO_FACES = "celeba/07358/187562.jpg"


@pytest.fixture(scope="module")
def detector():
    return create_detector("mtcnn", threads=1)


def _photos(raw_faces_dir: Path, person: str, count: int) -> list[Path]:
    return sorted((raw_faces_dir / "pins" / person).glob("*.jpg"))[:count]


def test_face_found_with_its_five_points_in_order(raw_faces_dir, detector):
    photos = [p for person in PINS for p in _photos(raw_faces_dir, person, 2)]
    photos += sorted((raw_faces_dir / "celeba").glob("0000*/*.jpg"))[:4]
    results = list(faces_in_photos(photos, detector))
    assert [r.reason for r in results] == [None] * len(photos)
    for result in results:
        (face,) = result.faces
        eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
        assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]  # left of right, as the image shows them
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])  # eyes above nose above mouth
        x1, y1, x2, y2 = face.box
        assert x1 < nose[0] < x2 and y1 < nose[1] < y2
        assert 0.9 <= face.score <= 1.0
        assert result.crops[0].shape == (112, 112, 3) and result.crops[0].dtype == np.uint8


def test_aligned_eyes_land_within_3_px_of_the_template(raw_faces_dir, detector):
    # The detected eyes carried into the crop by the alignment's own warp: a least-squares fit over all
    # 5 points keeps them within 3 px of the template's eyes (a fit on 3 points, or a reflection, does not).
    photos = [p for person in PINS for p in _photos(raw_faces_dir, person, 3)]
    photos += sorted((raw_faces_dir / "celeba").glob("0000*/*.jpg"))[:6]
    for result in faces_in_photos(photos, detector):
        points = result.faces[0].landmarks
        matrix = similarity_transform(points, ARCFACE_TEMPLATE)
        image = cv2.cvtColor(cv2.imread(str(result.path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(result.crops[0], cv2.warpAffine(image, matrix, (112, 112), borderValue=0.0))
        in_crop = points @ matrix[:, :2].T + matrix[:, 2]
        error = np.linalg.norm(in_crop[:2] - ARCFACE_TEMPLATE[:2], axis=1)
        assert error.max() < 3.0, (result.path, error)


def _two_people(raw_faces_dir: Path) -> np.ndarray:
    # Two real photos of two people side by side: one photo holding two faces.
    left = cv2.imread(str(_photos(raw_faces_dir, PINS[0], 1)[0]))
    right = cv2.imread(str(_photos(raw_faces_dir, PINS[1], 1)[0]))
    h = max(left.shape[0], right.shape[0])
    pad = [cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 20, cv2.BORDER_CONSTANT) for im in (left, right)]
    return np.hstack(pad)


def _photo_folder(raw_faces_dir: Path, root: Path) -> Path:
    """Two people with 3 real photos each, plus a photo without a face, an empty file, a truncated JPEG, two
    real photos side by side and a real photo of two faces."""
    for person in PINS[:2]:
        (root / person).mkdir(parents=True)
        for photo in _photos(raw_faces_dir, person, 3):
            shutil.copyfile(photo, root / person / photo.name.replace(" ", "_"))
    bad = root / "odd"
    bad.mkdir()
    cv2.imwrite(str(bad / "wall.jpg"), np.full((140, 120, 3), (90, 120, 150), np.uint8))
    (bad / "empty.jpg").write_bytes(b"")
    whole = _photos(raw_faces_dir, PINS[2], 1)[0].read_bytes()
    (bad / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    cv2.imwrite(str(bad / "pair.jpg"), _two_people(raw_faces_dir))
    shutil.copyfile(raw_faces_dir / TWO_FACES, bad / "crowd.jpg")
    return root


def test_align_folder_skips_bad_photos_and_aligns_the_rest(raw_faces_dir, tmp_path, capsys):
    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    out = tmp_path / "aligned"
    assert data_main(["align", str(src), str(out), "--no-progress"]) == 0
    summary = json.loads((out / "align.json").read_text())
    assert summary["photos"] == 11 and summary["aligned_photos"] == 8 and summary["faces"] == 8
    reasons = {m["photo"]: m["reason"] for m in summary["misses"]}
    assert reasons == {"odd/wall.jpg": NO_FACE, "odd/empty.jpg": EMPTY, "odd/cut.jpg": TRUNCATED}
    assert summary["sets"]["odd"]["skipped"][NO_FACE] == 1 and summary["sets"][PINS[0]]["detection_rate"] == 1.0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(written) == 8 and "odd/pair.jpg" in written and "odd/crowd.jpg" in written
    assert all(cv2.imread(str(out / w)).shape == (112, 112, 3) for w in written)
    assert "aligned 8 of 11 photos" in capsys.readouterr().out
    crowd = _record(out, "odd/crowd.jpg")
    assert crowd["faces"][0]["box"][0] > 0  # the woman the photo is of, not the cut face at the corner

    # --faces all: two crops of each photo of two faces, largest (visible) first.
    assert data_main(["align", str(src), str(tmp_path / "all"), "--faces", "all", "--no-progress"]) == 0
    for name in ("pair", "crowd"):
        crops = sorted(p.name for p in (tmp_path / "all" / "odd").glob(f"{name}_*.jpg"))
        assert crops == [f"{name}_0.jpg", f"{name}_1.jpg"]
    sizes = [f["box"][2] - f["box"][0] for f in _record(tmp_path / "all", "odd/pair.jpg")["faces"]]
    assert len(sizes) == 2 and sizes[0] >= sizes[1]
    assert [f["box"] for f in _record(tmp_path / "all", "odd/crowd.jpg")["faces"]][0] == crowd["faces"][0]["box"]


def _record(out: Path, photo: str) -> dict:
    lines = (out / "align.jsonl").read_text().splitlines()[1:]
    return next(json.loads(line) for line in lines if json.loads(line)["photo"] == photo)


def test_strict_stops_at_the_first_bad_photo_with_one_line(raw_faces_dir, tmp_path, capsys):
    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    assert data_main(["align", str(src), str(tmp_path / "out"), "--strict", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd/cut.jpg" in err[0] and TRUNCATED in err[0] and "--strict" in err[0]


def test_a_rerun_continues_a_killed_alignment(raw_faces_dir, tmp_path, capsys):
    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    out = tmp_path / "out"
    assert data_main(["align", str(src), str(out), "--no-progress"]) == 0
    complete = (out / "align.jsonl").read_text().splitlines(keepends=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.jpg")}
    # A kill after 4 photos, in the middle of writing the 5th record; the 5th photo's face half written.
    (out / "align.jsonl").write_text("".join(complete[:5]) + complete[5][:17])
    (out / "align.json").unlink()
    victim = out / json.loads(complete[5])["written"][0] if json.loads(complete[5])["written"] else None
    if victim is not None:
        victim.write_bytes(victim.read_bytes()[:100])
    assert data_main(["align", str(src), str(out), "--no-progress"]) == 0
    assert "aligned 8 of 11 photos" in capsys.readouterr().out
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.jpg")} == before
    lines = (out / "align.jsonl").read_text().splitlines()
    assert len(lines) == 12 and len({json.loads(line)["photo"] for line in lines[1:]}) == 11
    summary = json.loads((out / "align.json").read_text())
    assert summary["this_run"]["photos"] == 7 and summary["photos"] == 11
    # Other flags on the same folder: refused, naming the flag.
    assert data_main(["align", str(src), str(out), "--min-face", "40", "--no-progress"]) == 2
    assert "--min-face 40" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [
    (["--faces", "biggest"], "--faces biggest"), (["--min-score", "1.5"], "--min-score 1.5"),
    (["--workers", "0"], "--workers 0"), (["--min-face", "0"], "--min-face 0"),
    (["--detector", "haar"], "haar"),
])
def test_bad_flags_exit_2_with_one_line_and_create_nothing(raw_faces_dir, tmp_path, capsys, flags, named):
    out = tmp_path / "never"
    assert data_main(["align", str(raw_faces_dir / "pins" / PINS[0]), str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert not out.exists()


def test_output_inside_the_photos_or_over_other_files_is_refused(raw_faces_dir, tmp_path, capsys):
    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    assert data_main(["align", str(src), str(src / "aligned")]) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert data_main(["align", str(src), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "outside the photo folder" in err[0] and "holds other files" in err[1]
    assert not (src / "aligned").exists() and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_select_faces_policy_and_reasons(raw_faces_dir, detector):
    (faces,) = detector.detect([cv2.cvtColor(_two_people(raw_faces_dir), cv2.COLOR_BGR2RGB)])
    assert len(faces) == 2
    largest, _ = select_faces(faces, "largest")
    assert len(largest) == 1 and largest[0].area == max(f.area for f in faces)
    assert select_faces(faces, "all", min_face=10_000) == ([], "faces smaller than --min-face")
    assert select_faces([], "all") == ([], NO_FACE)


def test_pack_takes_several_aligned_folders_as_distinct_people(raw_faces_dir, tmp_path):
    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    assert data_main(["align", str(src), str(tmp_path / "a"), "--no-progress"]) == 0
    lfw_like = tmp_path / "b"
    shutil.copytree(tmp_path / "a" / PINS[0], lfw_like / PINS[0])  # the same name in another folder
    assert data_main(["pack", str(tmp_path / "a"), str(lfw_like), str(tmp_path / "pack"), "--no-progress"]) == 0
    names = [line.split("\t")[1] for line in (tmp_path / "pack" / "identities.txt").read_text().splitlines()]
    assert names == [f"a/{PINS[0]}", f"a/{PINS[1]}", "a/odd", f"b/{PINS[0]}"]
    assert json.loads((tmp_path / "pack" / "pack.json").read_text())["images"] == 11


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AvgPool2d(3), nn.Flatten()).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input"],
                      output_names=["embedding"], dynamic_axes={"input": {0: "n"}}, dynamo=False)
    return path


def test_embed_detect_embeds_each_face_with_its_box_score_and_landmarks(raw_faces_dir, tiny_onnx, tmp_path, capsys):
    from facerec import load_embedder
    from facerec.cli.embed import main as embed_main

    src = _photo_folder(raw_faces_dir, tmp_path / "photos")
    out = tmp_path / "faces.npz"
    assert embed_main(["--model", str(tiny_onnx), "--images", str(src), "--detect", "--faces", "all",
                       "--output", str(out), "--no-progress"]) == 0
    assert "10 faces of 11 photos; skipped 3 photo(s)" in capsys.readouterr().err
    with np.load(out, allow_pickle=False) as npz:
        names, photos, boxes = list(npz["names"]), list(npz["photos"]), npz["boxes"]
        embeddings, landmarks, scores = npz["embeddings"], npz["landmarks"], npz["scores"]
        assert sorted(npz["skipped"]) == ["odd/cut.jpg", "odd/empty.jpg", "odd/wall.jpg"]
    assert names.count("odd/pair.jpg#0") == 1 and "odd/pair.jpg#1" in names and len(names) == 10
    assert photos[names.index("odd/pair.jpg#1")] == "odd/pair.jpg"
    assert boxes.shape == (10, 4) and landmarks.shape == (10, 5, 2) and (scores >= 0.9).all()
    # The embedding of a face is that of its aligned crop (the same crop facerec-data align writes).
    first = src / photos[0]
    (result,) = faces_in_photos([first], create_detector("mtcnn", threads=1))
    expected = load_embedder(tiny_onnx).embed(np.stack(result.crops))
    np.testing.assert_allclose(embeddings[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(landmarks[0], result.faces[0].landmarks, atol=1e-4)


def test_embed_detect_flag_errors(raw_faces_dir, tiny_onnx, tmp_path, capsys):
    from facerec.cli.embed import main as embed_main

    base = ["--model", str(tiny_onnx), "--images", str(raw_faces_dir / "pins" / PINS[0]), "--detect",
            "--output", str(tmp_path / "x.npz")]
    assert embed_main([*base, "--faces", "every"]) == 2
    assert embed_main([*base, "--landmarks", str(tmp_path / "l.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--faces every" in err[0] and "--detect/--landmarks" in err[1]
    assert not (tmp_path / "x.npz").exists()


def test_a_face_cut_by_the_border_is_reported_not_raised(raw_faces_dir, detector):
    # A real Pins photo whose detected face has points beyond half the photo's width outside it: the alignment
    # refuses such points, so the photo is skipped with its reason instead of stopping the folder.
    photo = raw_faces_dir / "pins" / "Lili_Reinhart" / "Lili Reinhart245_2807.jpg"
    (found,) = detector.detect([cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)])
    assert found and max(f.landmarks[:, 0].max() for f in found) > 1.5 * 91
    (result,) = faces_in_photos([photo], detector, faces="all")
    assert result.reason == OFF_PHOTO and result.crops == []
