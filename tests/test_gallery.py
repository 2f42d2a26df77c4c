"""facerec-gallery: enroll → identify → remove round trips on real faces (aligned LFW faces with --no-detect, raw
Pins photos through detection), the model fingerprint check, the derived index rebuilt, damaged files refused in
one line, a kill mid-write leaving the old gallery whole, exact top-k people against a NumPy brute force, the
approximate indexes, and bench/gallery_scale.py on a small gallery."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
import torch
from torch import nn

from facerec.cli import gallery as gallery_cli
from facerec.cli.gallery import main
from facerec.data.images import load_image
from facerec.deploy import gallery_files
from facerec.deploy.gallery import Gallery, GalleryModel, model_fingerprint
from facerec.deploy.gallery_files import GALLERY_JSON, GALLERY_NPZ, INDEX_FILE, NEXT_NPZ, read_gallery_info
from facerec.model.checkpoint import save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype
from nas_core.runlock import run_lock
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
LFW_PEOPLE = ["Abdullah_Gul", "Adrien_Brody", "Al_Gore", "Alejandro_Toledo", "Ali_Naimi"]
PINS_PEOPLE = ["Alex_Lawther", "Amanda_Crew"]
THRESHOLD = {"cosine": 0.5, "far": 0.001, "far_measured": 0.001, "tar": 0.9, "pairs": 2000, "negatives": 1000}


def _untrained_model(path: Path, seed: int, calibration: np.ndarray, **state) -> Path:
    """A small untrained IResNet (32-d) whose BatchNorm statistics are measured on real faces: deterministic
    embeddings that tell photos apart (different photos at cosine ~0.1, none above ~0.6), no training needed."""
    torch.manual_seed(seed)
    net = IResNetSpace(embedding_size=32).build(Genotype.uniform(4, 4))
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the plain average over the calibration batch
    faces = torch.from_numpy(calibration).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        net.train()(faces)
    save_checkpoint(path, backbone=net.eval(), **state)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    lfw = _shared("lfw_train")
    others = sorted(p for p in lfw.iterdir() if p.is_dir())[-16:]  # people the tests never enroll
    faces = np.stack([load_image(photo) for person in others for photo in sorted(person.glob("*.jpg"))[:2]])
    folder = tmp_path_factory.mktemp("models")
    return {"model": _untrained_model(folder / "model.pt", 1, faces),
            "other": _untrained_model(folder / "other.pt", 2, faces),
            "calibrated": _untrained_model(folder / "calibrated.pt", 1, faces, verification_threshold=THRESHOLD)}


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="module")
def lfw_photos(tmp_path_factory) -> Path:
    """3 aligned 112x112 LFW faces of each of 5 people, one sub-folder per person."""
    source = _shared("lfw_train")
    root = tmp_path_factory.mktemp("lfw")
    for person in LFW_PEOPLE:
        (root / person).mkdir()
        for photo in sorted((source / person).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / person / photo.name)
    return root


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _enroll(capsys, gallery: Path, model: Path, photos: Path, *flags) -> str:
    code, _, err = _run(capsys, "enroll", gallery, "--model", model, photos, "--no-detect", "--no-progress", *flags)
    assert code == 0, err
    return err


def _identify(capsys, gallery: Path, model: Path, *photos, flags=("--no-detect",)) -> dict:
    code, out, err = _run(capsys, "identify", gallery, "--model", model, *photos, "--json", "--no-progress", *flags)
    assert code == 0, err
    return json.loads(out)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_enroll_identify_remove_round_trip(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    said = _enroll(capsys, gallery, model, lfw_photos)
    assert "enrolled 15 faces of 5 people" in said
    assert sorted(p.name for p in gallery.iterdir()) == [GALLERY_JSON, GALLERY_NPZ, INDEX_FILE]
    info = read_gallery_info(gallery)
    assert info["counts"] == {"people": 5, "faces": 15} and info["index"]["kind"] == "flat"
    assert info["model"] == {"file": str(model), "fingerprint": model_fingerprint(model), "dim": 32}

    queries = [lfw_photos / person / sorted(os.listdir(lfw_photos / person))[1] for person in LFW_PEOPLE]
    report = _identify(capsys, gallery, model, *queries, flags=("--no-detect", "--top-k", "3", "--threshold", "0.9"))
    for person, photo in zip(LFW_PEOPLE, report["photos"]):
        face = photo["faces"][0]
        assert face["identity"] == person and face["unknown"] is False
        assert face["top"][0]["name"] == person and face["top"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert len(face["top"]) == 3 and len({hit["name"] for hit in face["top"]}) == 3

    said = _enroll(capsys, gallery, model, lfw_photos)  # the same photos again: nothing added
    assert "enrolled 0 faces" in said and "15 already enrolled" in said
    assert read_gallery_info(gallery)["counts"]["faces"] == 15

    code, _, err = _run(capsys, "remove", gallery, "Al_Gore")
    assert code == 0 and "removed 3 faces of 1 people" in err
    code, _, err = _run(capsys, "remove", gallery, "Al_Gore", "Nobody")
    assert code == 2 and "Al_Gore, Nobody" in _one_error_line(err)  # neither is enrolled now; nothing written
    report = _identify(capsys, gallery, model, queries[2], flags=("--no-detect", "--threshold", "0.9"))
    face = report["photos"][0]["faces"][0]
    assert face["identity"] is None and face["unknown"] is True and face["top"][0]["name"] != "Al_Gore"

    code, out, _ = _run(capsys, "list", gallery, "--json")
    listed = json.loads(out)
    assert listed["people"] == {p: 3 for p in LFW_PEOPLE if p != "Al_Gore"} and listed["index"] == "flat"
    code, out, _ = _run(capsys, "list", gallery)
    assert code == 0 and "12 faces of 4 people" in out and "Ali_Naimi\t3" in out


def test_one_person_with_person_flag_and_the_threshold_in_force(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["calibrated"]
    photos = sorted((lfw_photos / "Adrien_Brody").glob("*.jpg"))
    _enroll(capsys, gallery, model, photos[0], "--person", "Adrien Brody")
    code, _, err = _run(capsys, "enroll", gallery, "--model", model, photos[1], photos[2], "--person", "Adrien Brody",
                        "--no-detect")
    assert code == 0 and "enrolled 2 faces of 1 people" in err and "1 already enrolled" not in err
    assert read_gallery_info(gallery)["threshold"]["cosine"] == THRESHOLD["cosine"]
    report = _identify(capsys, gallery, model, photos[2], lfw_photos / "Al_Gore")
    assert report["threshold"]["cosine"] == 0.5 and report["threshold"]["source"] == "model"
    assert report["photos"][0]["faces"][0]["identity"] == "Adrien Brody"
    assert len(report["photos"]) == 4

    code, out, err = _run(capsys, "identify", gallery, "--model", models["model"], photos[0], "--no-detect")
    assert code == 2 and not out
    line = _one_error_line(err)  # another model: refused, both named
    assert f"built with model {model} (fingerprint {model_fingerprint(model)}" in line
    assert f"not {models['model']} (fingerprint {model_fingerprint(models['model'])})" in line
    code, _, err = _run(capsys, "enroll", gallery, "--model", models["other"], photos[0], "--person", "X", "--no-detect")
    assert code == 2 and "built with model" in _one_error_line(err)


def test_no_threshold_lists_top_k_and_says_so(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    _enroll(capsys, gallery, model, lfw_photos)
    code, out, err = _run(capsys, "identify", gallery, "--model", model, lfw_photos / "Al_Gore", "--no-detect",
                          "--top-k", "2", "--no-progress")
    assert code == 0 and err.count("\n") == 1 and "no threshold" in err and "no face can be called unknown" in err
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(line.split("\t")[1] == "Al_Gore" and line.count("\t") == 3 for line in lines)


def test_enroll_and_identify_through_detection(models, tmp_path, capsys):
    pins = _shared("raw_faces") / "pins"
    photos = tmp_path / "photos"
    for person in PINS_PEOPLE:
        (photos / person).mkdir(parents=True)
        for photo in sorted((pins / person).glob("*.jpg"))[:2]:
            shutil.copy(photo, photos / person / photo.name)
    assert cv2.imwrite(str(photos / PINS_PEOPLE[0] / "wall.jpg"), np.full((160, 140, 3), 128, np.uint8))
    model, gallery = models["model"], tmp_path / "g"

    code, _, err = _run(capsys, "enroll", gallery, "--model", model, photos, "--strict", "--device", "cpu")
    assert code == 2 and "wall.jpg" in _one_error_line(err) and not gallery.exists()  # --strict: nothing written
    code, _, err = _run(capsys, "enroll", gallery, "--model", model, photos, "--device", "cpu")
    assert code == 0 and "enrolled 4 faces of 2 people, 1 without a usable face (no face found 1)" in err

    query = sorted((photos / PINS_PEOPLE[1]).glob("*.jpg"))[1]
    report = _identify(capsys, gallery, model, query, photos / PINS_PEOPLE[0] / "wall.jpg",
                       flags=("--device", "cpu", "--threshold", "0.99"))
    face = report["photos"][0]["faces"][0]
    assert face["identity"] == PINS_PEOPLE[1] and face["top"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(face["box"]) == 4 and report["photos"][1] == {"photo": str(photos / PINS_PEOPLE[0] / "wall.jpg"),
                                                             "reason": "no face found", "faces": []}


@pytest.mark.parametrize("argv, expected", [
    (["identify", "{g}", "--model", "{m}", "{p}", "--top-k", "0"], "--top-k 0: expected"),
    (["identify", "{g}", "--model", "{m}", "{p}", "--threshold", "1.5"], "--threshold 1.5: expected a cosine"),
    (["identify", "{g}", "--model", "{m}", "{p}", "--threshold", "nan"], "--threshold nan: expected a cosine"),
    (["enroll", "{g}", "--model", "{m}", "{p}", "--batch-size", "0"], "--batch-size 0: expected"),
    (["enroll", "{g}", "--model", "{m}", "{p}", "--min-score", "2"], "--min-score 2.0: expected"),
    (["enroll", "{g}", "--model", "{g}/none.pt", "{p}"], "none.pt: expected an .onnx model"),
    (["enroll", "{g}", "--model", "{m}", "{p}/Al_Gore"], "expected one sub-folder of photos per person"),
    (["enroll", "{g}", "--model", "{m}", "{p}", "--person", " x"], "--person ' x': expected a person's name"),
    (["enroll", "{g}", "--model", "{m}", "{p}/none.jpg", "--person", "x"], "none.jpg: expected a photo"),
    (["identify", "{g}", "--model", "{m}", "{p}"], "expected a gallery folder"),
    (["list", "{g}"], "expected a gallery folder"),
])
def test_bad_flags_and_inputs_exit_2_before_anything_is_written(argv, expected, lfw_photos, models, tmp_path, capsys):
    gallery = tmp_path / "g"
    fill = {"g": gallery, "m": models["model"], "p": lfw_photos}
    code, out, err = _run(capsys, *[a.format(**fill) for a in argv], "--no-detect" if argv[0] != "list" else "--json")
    assert code == 2 and not out and expected in _one_error_line(err)
    assert not gallery.exists()


def test_index_rebuilt_when_deleted_or_damaged(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    _enroll(capsys, gallery, model, lfw_photos)
    query = lfw_photos / "Ali_Naimi"
    expected = _identify(capsys, gallery, model, query)["photos"]
    index = gallery / INDEX_FILE
    for damage in (lambda: index.unlink(), lambda: index.write_bytes(index.read_bytes()[:100]),
                   lambda: index.write_bytes(b"\0" * index.stat().st_size)):
        damage()
        assert _identify(capsys, gallery, model, query)["photos"] == expected
        rebuilt = faiss.read_index(str(index))  # written back for the next reader, gallery.json agreeing
        assert rebuilt.ntotal == 15 and gallery_files.sha256_of_file(index) == read_gallery_info(gallery)["index"]["sha256"]


def test_damaged_gallery_files_are_one_line_naming_the_file(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    _enroll(capsys, gallery, model, lfw_photos)
    npz, info = gallery / GALLERY_NPZ, gallery / GALLERY_JSON
    good_npz, good_info = npz.read_bytes(), info.read_text()
    npz.write_bytes(good_npz[: len(good_npz) // 2])
    for argv in (["identify", gallery, "--model", model, lfw_photos, "--no-detect"], ["list", gallery]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and not out and f"{npz}: expected a gallery .npz" in _one_error_line(err)
    rows = dict(np.load(io.BytesIO(good_npz)))
    for bad in ({"embeddings": rows["embeddings"] * 2}, {"embeddings": rows["embeddings"].astype(np.float64)},
                {"names": rows["names"][:-1]}, {"generation": np.asarray(7)}):
        np.savez(npz, **{**rows, **bad})
        code, _, err = _run(capsys, "list", gallery)
        assert code == 2 and str(npz) in _one_error_line(err)
    npz.write_bytes(good_npz)
    for text in ("{", json.dumps({**json.loads(good_info), "counts": {"people": 5, "faces": 14}}),
                 json.dumps({**json.loads(good_info), "format": "other"})):
        info.write_text(text)
        code, _, err = _run(capsys, "list", gallery)
        assert code == 2 and str(info) in _one_error_line(err)
    info.write_text(good_info)
    assert _run(capsys, "list", gallery)[0] == 0


def test_a_kill_mid_write_leaves_the_old_gallery_whole(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    _enroll(capsys, gallery, model, lfw_photos / "Al_Gore", "--person", "Al_Gore")
    before = read_gallery_info(gallery)
    env = {**os.environ, "FACENAS_FAIL_IN_WRITE": f"{GALLERY_JSON}:1", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-m", "facerec.cli.gallery", "enroll", str(gallery), "--model",
                             str(model), str(lfw_photos / "Ali_Naimi"), "--person", "Ali_Naimi", "--no-detect",
                             "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    assert (gallery / NEXT_NPZ).exists() and read_gallery_info(gallery) == before  # the new rows were never committed
    old = Gallery.open(gallery)
    assert old.faces_per_person() == {"Al_Gore": 3} and old.generation == before["generation"]
    report = _identify(capsys, gallery, model, lfw_photos / "Al_Gore")  # the index written before the kill: rebuilt
    assert [p["faces"][0]["top"][0]["name"] for p in report["photos"]] == ["Al_Gore"] * 3
    _enroll(capsys, gallery, model, lfw_photos / "Ali_Naimi", "--person", "Ali_Naimi")
    assert Gallery.open(gallery).faces_per_person() == {"Al_Gore": 3, "Ali_Naimi": 3}
    assert sorted(p.name for p in gallery.iterdir()) == [GALLERY_JSON, GALLERY_NPZ, INDEX_FILE]


def test_a_write_committed_but_cut_before_its_last_rename_is_the_new_gallery(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    gallery = _random_gallery(tmp_path / "g", rng, people=4, dim=8)
    with run_lock(gallery.folder):
        gallery.save()
    monkeypatch.setattr("facerec.deploy.gallery.commit_next", lambda folder: None)  # the kill: no rename
    gallery.remove(["p0"])
    with run_lock(gallery.folder):
        gallery.save()
    assert (gallery.folder / NEXT_NPZ).exists()
    assert "p0" not in Gallery.open(gallery.folder).faces_per_person()
    monkeypatch.undo()
    with run_lock(gallery.folder):
        reopened = Gallery.open(gallery.folder, writer=True)  # the writer finishes the rename
    assert not (gallery.folder / NEXT_NPZ).exists() and "p0" not in reopened.faces_per_person()


def _random_gallery(folder: Path, rng: np.random.Generator, people: int, dim: int, kind: str = "flat",
                    most_rows: int = 12) -> Gallery:
    """``people`` people with 1..most_rows random unit rows each."""
    names = [f"p{i}" for i in range(people) for _ in range(int(rng.integers(1, most_rows + 1)))]
    rows = rng.standard_normal((len(names), dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    gallery = Gallery(folder, GalleryModel("random.pt", "0123456789abcdef", dim), index_kind=kind)
    gallery.add(names, rows, [f"photo{i}.jpg" for i in range(len(names))])
    return gallery


def _brute_force_people(gallery: Gallery, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    scores = queries.astype(np.float64) @ gallery.embeddings.T.astype(np.float64)
    found = []
    for row in scores:
        best = {name: row[gallery.names == name].max() for name in gallery.people}
        found.append(sorted(best.items(), key=lambda item: -item[1])[:k])
    return found


def test_exact_top_k_people_equal_a_numpy_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    gallery = _random_gallery(tmp_path / "g", rng, people=60, dim=16)
    # One person crowds the top rows of the first queries: 40 near copies of them (the search must widen).
    queries = rng.standard_normal((30, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    crowd = queries[:3].repeat(40, axis=0) + 0.01 * rng.standard_normal((120, 16)).astype(np.float32)
    gallery.add(["crowd"] * 120, crowd / np.linalg.norm(crowd, axis=1, keepdims=True), [f"c{i}" for i in range(120)])
    for k in (1, 5, 10, 61, 100):
        found = gallery.search(queries, k)
        expected = _brute_force_people(gallery, queries, k)
        assert [[n for n, _ in q] for q in found] == [[n for n, _ in q] for q in expected]
        np.testing.assert_allclose([[s for _, s in q] for q in found], [[s for _, s in q] for q in expected],
                                   atol=1e-5)
    assert [q[0][0] for q in gallery.search(queries[:3], 5)] == ["crowd"] * 3


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_enrolled_faces(kind, tmp_path):
    rng = np.random.default_rng(5)
    gallery = _random_gallery(tmp_path / "g", rng, people=150, dim=32, kind=kind, most_rows=6)
    with run_lock(gallery.folder):
        gallery.save()
    reopened = Gallery.open(gallery.folder)
    assert isinstance(reopened.index(), {"hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}[kind])
    found = reopened.search(gallery.embeddings, 3)  # every enrolled face as a query: its own person first
    hits = np.mean([q[0][0] == name and q[0][1] > 0.999 for q, name in zip(found, gallery.names)])
    assert hits >= 0.99 and all(len(q) == 3 for q in found)
    exact = _brute_force_people(gallery, gallery.embeddings[:50], 3)
    assert np.mean([f[0][0] == e[0][0] for f, e in zip(found, exact)]) >= 0.9


def test_index_kind_through_the_cli_and_switched_later(lfw_photos, models, tmp_path, capsys):
    gallery, model = tmp_path / "g", models["model"]
    _enroll(capsys, gallery, model, lfw_photos / "Al_Gore", "--person", "Al_Gore", "--index", "hnsw")
    _enroll(capsys, gallery, model, lfw_photos / "Ali_Naimi", "--person", "Ali_Naimi")  # grown in place
    assert read_gallery_info(gallery)["index"]["kind"] == "hnsw"
    assert isinstance(faiss.downcast_index(faiss.read_index(str(gallery / INDEX_FILE))), faiss.IndexHNSWFlat)
    report = _identify(capsys, gallery, model, lfw_photos / "Ali_Naimi")
    assert report["index"] == "hnsw" and {p["faces"][0]["top"][0]["name"] for p in report["photos"]} == {"Ali_Naimi"}
    _enroll(capsys, gallery, model, lfw_photos / "Ali_Naimi", "--person", "Ali_Naimi", "--index", "flat")
    index = read_gallery_info(gallery)["index"]
    assert index["kind"] == "flat" and index["rows"] == 6
    assert isinstance(faiss.downcast_index(faiss.read_index(str(gallery / INDEX_FILE))), faiss.IndexFlatIP)


def test_index_kinds_of_the_parser_are_the_gallery_s():
    from facerec.photos.detect import FACE_POLICIES

    assert gallery_cli.INDEX_KINDS == gallery_files.INDEX_KINDS and gallery_cli.FACE_POLICIES == FACE_POLICIES


def test_bench_gallery_scale_small_run_agrees_with_brute_force(tmp_path):
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gallery_scale.py"), "--size", "20000", "--queries",
                           "200", "--output", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["top1_agreement"] == 1.0 and result["size"] == 20000 and result["queries"] == 200
    assert result["exact_queries_per_second"] > 0 and result["brute_force_queries_per_second"] > 0
    assert "ratio exact / brute force" in done.stdout
