"""The calibrated verification threshold (facerec.deploy.threshold): calibrated by hand, recorded by facerec-train
in model.pt and metrics.json, copied by facerec-export into fp32 / fp16 / int8 ONNX metadata, read back checked;
and facerec-verify on real photos of one person and of two (../shared/data/raw_faces/pins)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from facerec.cli import export as export_cli
from facerec.cli.train import main as train_main
from facerec.cli.verify import main as verify_main
from facerec.deploy.threshold import DEFAULT_FAR, ONNX_KEY, calibrate_threshold, model_threshold
from facerec.errors import FaceRecError
from facerec.model.checkpoint import save_checkpoint
from facerec.model.space import IResNetSpace
from facerec.train.config import TrainConfig
from nas_core.genotype import Genotype
from tests.conftest import SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402

TINY = Genotype.uniform(4, 4)
FAR = 0.02  # 50 different-person pairs among the 100 held-out pairs of the tiny pack: one false accept allowed
LINE = re.compile(r"same person: (yes|no)  cosine (-?\d\.\d{4}) (>=|<) threshold (-?\d\.\d{4}) \((.+)\)")


def _pairs(positives: list[float], negatives: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """2-D embeddings of pairs with exactly these cosines (rows 2i, 2i+1), scaled unevenly, and issame;
    positives and negatives interleaved."""
    cosines = [c for pair in zip(positives, negatives) for c in pair]
    issame = np.array([True, False] * len(positives))
    rows = []
    for i, c in enumerate(cosines):
        angle = np.arccos(c)
        rows += [[1.0 + i, 0.0], [0.5 * np.cos(angle), 0.5 * np.sin(angle)]]  # normalised by the calibration
    return np.array(rows), issame


def test_calibrated_threshold_by_hand():
    embeddings, issame = _pairs([0.9, 0.8, 0.7, 0.4, 0.2], [0.5, 0.3, 0.1, -0.2, -0.5])
    # FAR 0.2 of 5 negatives allows one false accept: just above the 2nd highest negative (0.3); the 0.5 one
    # passes (1/5), and 4 of the 5 positives (not 0.2).
    t = calibrate_threshold(embeddings, issame, far=0.2)
    assert t["cosine"] == pytest.approx(0.3, abs=1e-12)  # the next float above that negative's cosine
    assert t == {**t, "far": 0.2, "far_measured": 0.2, "tar": 0.8, "pairs": 10, "negatives": 5}
    # 5 negatives cannot resolve FAR 0.1 (5 x 0.1 < 1): just above the highest negative, measured FAR 0.
    t = calibrate_threshold(embeddings, issame, far=0.1)
    assert t["cosine"] == pytest.approx(0.5, abs=1e-12) and t["far_measured"] == 0.0 and t["tar"] == 0.6
    # 0.4999 allows 2 of 5 (0.4): above 0.1; every positive passes.
    t = calibrate_threshold(embeddings, issame, far=0.4999)
    assert t["cosine"] == pytest.approx(0.1, abs=1e-12) and t["far_measured"] == 0.4 and t["tar"] == 1.0
    # Counted, not far x m rounded down: 0.29 x 100 is 28.999... in floats, yet 29 of 100 is a FAR of 0.29.
    many, same = _pairs(list(np.linspace(0.5, 0.9, 100)), list(np.linspace(-0.9, 0.9, 100)))
    assert calibrate_threshold(many, same, far=0.29)["far_measured"] == 0.29


def test_tied_negatives_and_bad_inputs():
    negative = [[1.0, 0.0], [0.6, 0.8]]  # cosine 0.6, twice: one of two allowed, but both sit there
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], *negative, *negative])
    issame = np.array([True, False, False])
    t = calibrate_threshold(embeddings, issame, far=0.5)
    assert t["cosine"] > 0.6 and t["far_measured"] == 0.0 and t["tar"] == 1.0
    for far in (0, 1, float("nan"), -0.1):
        with pytest.raises(ValueError, match="far"):
            calibrate_threshold(embeddings, issame, far=far)
    with pytest.raises(FaceRecError, match="different-person pairs"):
        calibrate_threshold(embeddings[:2], np.array([True]))
    collapsed = np.tile([0.0, 2.0], (4, 1))  # every cosine 1: a threshold is never above 1; its FAR says what it accepts
    assert calibrate_threshold(collapsed, np.array([True, False]), far=0.1) == {
        "cosine": 1.0, "far": 0.1, "far_measured": 1.0, "tar": 1.0, "pairs": 2, "negatives": 1}
    assert TrainConfig.far == DEFAULT_FAR


def _train_args(pack: Path, genotype: Path, out: Path, *extra: str) -> list[str]:
    return ["--genotype", str(genotype), "--data", str(pack), "--output", str(out), "--batch-size", "8",
            "--lr", "0.05", "--workers", "0", "--epochs", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained(tiny_pack, tmp_path_factory) -> Path:
    """facerec-train's output folder: one epoch of a tiny net, 2 identities held out, threshold at FAR 0.02 (on
    one thread, as conftest sets it for the tests: a module fixture runs before that fixture)."""
    root = tmp_path_factory.mktemp("trained")
    genotype = root / "result.json"
    genotype.write_text(json.dumps({"genotype": TINY.to_dict(), "space": {"embedding_size": 64}}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(_train_args(tiny_pack, genotype, root / "out", "--holdout-ids", "2", "--far", str(FAR))) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "out"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    assert export_cli.main(["--checkpoint", str(trained / "model.pt"), "--output", str(out), "--batch-size", "2",
                            "--repeats", "1"]) == 0
    return out


def test_training_records_the_threshold_in_model_pt_and_metrics(trained):
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    threshold = ckpt["verification_threshold"]
    assert threshold["far"] == FAR and threshold["pairs"] == 100 and threshold["negatives"] == 50
    assert threshold["far_measured"] <= FAR and -1 <= threshold["cosine"] <= 1
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["verification_threshold"] == threshold
    assert metrics["epochs"][-1]["val"]["holdout"]["verification_threshold"] == threshold
    assert model_threshold(trained / "model.pt") == threshold


def test_export_copies_the_threshold_into_every_precision(trained, exported, tiny_pack, tmp_path, capsys):
    threshold = model_threshold(trained / "model.pt")
    props = {p.key: p.value for p in onnx.load(str(exported), load_external_data=False).metadata_props}
    assert json.loads(props[ONNX_KEY]) == threshold and model_threshold(exported) == threshold
    check_bin = tmp_path / "lfw.bin"
    make_verification_pack(check_bin, np.random.default_rng(0), pairs=20, identities=6)
    for precision, extra in (("fp16", []), ("int8", ["--calibration", str(tiny_pack)])):
        out = tmp_path / f"{precision}.onnx"
        assert export_cli.main(["--checkpoint", str(trained / "model.pt"), "--output", str(out), "--precision",
                                precision, "--check-bin", str(check_bin), "--max-drop", "100", "--batch-size", "4",
                                "--repeats", "1", *extra]) == 0, capsys.readouterr()
        assert model_threshold(out) == threshold, precision
    assert f"with the checkpoint's verification threshold (metadata {ONNX_KEY})" in capsys.readouterr().out


def test_no_held_out_identities_no_threshold(tiny_pack, trained, tmp_path, capsys):
    out = tmp_path / "out"
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps({"genotype": TINY.to_dict(), "space": {"embedding_size": 64}}))
    assert train_main(_train_args(tiny_pack, genotype, out, "--holdout-ids", "0")) == 0
    assert torch.load(out / "model.pt", weights_only=True)["verification_threshold"] is None
    assert model_threshold(out / "model.pt") is None
    assert json.loads((out / "metrics.json").read_text())["verification_threshold"] is None
    assert (out / "train.log").read_text().count("carries no calibrated verification threshold") == 1
    assert train_main(_train_args(tiny_pack, genotype, tmp_path / "o2", "--far", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --far 1: expected a false accept rate")


def _tiny_onnx(path: Path, metadata: dict[str, str]) -> Path:
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


GOOD = {"cosine": 0.3, "far": 0.001, "far_measured": 0.0, "tar": 0.9, "pairs": 3000, "negatives": 1500}


@pytest.mark.parametrize("bad, why", [
    ({**GOOD, "cosine": 1.5}, "'cosine' a finite number in \\[-1, 1\\]"),
    ({**GOOD, "cosine": "NaN"}, "'cosine'"),
    ({**GOOD, "far": 0}, "'far' a finite number in \\(0, 1\\)"),
    ({**GOOD, "far": 1.0}, "'far'"),
    ({**GOOD, "tar": True}, "'tar'"),
    ({**GOOD, "pairs": 0}, "'pairs' a positive count"),
    ([0.3], "expected a verification threshold"),
])
def test_bad_recorded_thresholds_name_the_file(bad, why, tmp_path):
    text = json.dumps(bad).replace('"NaN"', "NaN")
    onnx_path = _tiny_onnx(tmp_path / "m.onnx", {ONNX_KEY: text})
    with pytest.raises(FaceRecError, match=f"^{re.escape(str(onnx_path))}: metadata {ONNX_KEY}: .*{why}"):
        model_threshold(onnx_path)
    pt = tmp_path / "m.pt"
    torch.save({"verification_threshold": json.loads(text) if "NaN" not in text else {**GOOD, "cosine": float("nan")}},
               pt)
    with pytest.raises(FaceRecError, match=f"^{re.escape(str(pt))}: verification_threshold: .*{why}"):
        model_threshold(pt)


def test_recorded_threshold_read_back(tmp_path):
    assert model_threshold(_tiny_onnx(tmp_path / "good.onnx", {ONNX_KEY: json.dumps(GOOD)})) == GOOD
    assert model_threshold(_tiny_onnx(tmp_path / "none.onnx", {"other": "1"})) is None
    with pytest.raises(FaceRecError, match="expected JSON"):
        model_threshold(_tiny_onnx(tmp_path / "junk.onnx", {ONNX_KEY: "{cosine"}))
    (tmp_path / "damaged.onnx").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(FaceRecError, match="damaged.onnx: expected an ONNX model"):
        model_threshold(tmp_path / "damaged.onnx")


# -- facerec-verify -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos() -> dict[str, Path]:
    pins = SHARED_DATA / "raw_faces" / "pins"
    if not pins.is_dir():
        pytest.skip(f"{pins} not present")
    alex = sorted((pins / "Alex_Lawther").glob("*.jpg"))
    return {"alex1": alex[0], "alex2": alex[1], "other": sorted((pins / "Alexandra_Daddario").glob("*.jpg"))[0]}


def _verify(capsys, *argv) -> tuple[int, str, list[str]]:
    rc = verify_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


@pytest.mark.parametrize("model", ["model.pt", "model.onnx"])
def test_verify_one_person_at_the_calibrated_threshold(model, photos, trained, exported, capsys):
    path = trained / "model.pt" if model == "model.pt" else exported
    threshold = model_threshold(path)
    rc, out, err = _verify(capsys, photos["alex1"], photos["alex2"], "--model", path)
    assert rc == 0 and not err, err
    match = LINE.fullmatch(out.strip())
    assert match, out
    same, cosine, sign, shown, why = match.groups()
    assert float(shown) == round(threshold["cosine"], 4) and why == f"calibrated at FAR {FAR:g} on 100 held-out pairs"
    assert (same, sign) in (("yes", ">="), ("no", "<"))


def test_verify_json_and_given_thresholds(photos, trained, capsys):
    model = trained / "model.pt"
    rc, out, _ = _verify(capsys, photos["alex1"], photos["other"], "--model", model, "--json")
    result = json.loads(out)
    assert rc == 0 and result["threshold"] == model_threshold(model)["cosine"] and result["threshold_source"] == "model"
    assert result["same"] == (result["cosine"] >= result["threshold"]) and -1 <= result["cosine"] <= 1
    for key, photo in (("a", photos["alex1"]), ("b", photos["other"])):
        assert result[key]["path"] == str(photo) and len(result[key]["box"]) == 4 and 0.9 <= result[key]["score"] <= 1
    rc, out, _ = _verify(capsys, photos["alex1"], photos["other"], "--model", model, "--threshold", "-1")
    assert rc == 0 and out.startswith("same person: yes  cosine") and out.strip().endswith("(given by --threshold)")
    rc, out, _ = _verify(capsys, photos["alex1"], photos["other"], "--model", model, "--threshold", "1", "--json")
    assert rc == 0 and json.loads(out)["same"] is False and json.loads(out)["threshold_source"] == "--threshold"
    rc, out, err = _verify(capsys, photos["alex1"], photos["other"], "--model", model, "--threshold", "1.01")
    assert rc == 2 and out == "" and err == ["error: --threshold 1.01: expected a cosine in [-1, 1]"]


def test_verify_refuses_with_one_line(photos, trained, tmp_path, capsys):
    bare = tmp_path / "bare.pt"  # a facenas checkpoint without a calibrated threshold
    save_checkpoint(bare, backbone=IResNetSpace(embedding_size=64).build(TINY))
    rc, out, err = _verify(capsys, photos["alex1"], photos["alex2"], "--model", bare)
    assert rc == 2 and out == "" and len(err) == 1
    assert err[0].startswith(f"error: {bare}: the model has no calibrated verification threshold; pass --threshold")
    grey = tmp_path / "grey.jpg"
    cv2.imwrite(str(grey), np.full((160, 120, 3), 128, np.uint8))
    rc, out, err = _verify(capsys, photos["alex1"], grey, "--model", trained / "model.pt")
    assert rc == 2 and out == "" and err == [f"error: {grey}: expected a photo with a face (no face found)"]
    missing = tmp_path / "missing.jpg"
    rc, _, err = _verify(capsys, missing, photos["alex1"], "--model", trained / "model.pt")
    assert rc == 2 and err == [f"error: {missing}: expected a photo file (not found)"]
    rc, _, err = _verify(capsys, photos["alex1"], photos["alex2"], "--model", trained / "model.pt", "--no-detect")
    assert rc == 2 and len(err) == 1 and "expected an aligned 112x112 face with --no-detect" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.pt", "grey.jpg"]  # nothing written


def test_verify_aligned_faces_without_detection(trained, tmp_path, capsys):
    from facerec.data.demo import demo_identities

    faces = []
    for i, images in enumerate(demo_identities(2, 1)):  # drawn 112x112 faces, aligned as the model expects
        faces.append(tmp_path / f"face{i}.png")
        cv2.imwrite(str(faces[-1]), cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
    rc, out, _ = _verify(capsys, *faces, "--model", trained / "model.pt", "--no-detect", "--json")
    result = json.loads(out)
    assert rc == 0 and result["a"] == {"path": str(faces[0]), "box": None, "score": None}
    assert result["same"] == (result["cosine"] >= result["threshold"])
