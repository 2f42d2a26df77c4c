"""facerec-eval end to end on the synthetic fixtures (tools/make_fixtures.py), and every bad input."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from facerec.cli.eval import main

_TOOLS = Path(__file__).resolve().parents[1] / "tools" / "make_fixtures.py"


def _make_fixtures(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_fixtures", _TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_fixtures(out, seed=0, train_pack=False)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    return _make_fixtures(tmp_path_factory.mktemp("facefix"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """A tiny fixed random conv net plus raw pooled pixels, exported to ONNX (facerec-eval's --model)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 5, stride=4)
            self.pool = nn.AvgPool2d(8)

        def forward(self, x):
            return torch.cat([torch.relu(self.conv(x)).mean((2, 3)), self.pool(x).flatten(1)], 1)

    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    torch.onnx.export(Net().eval(), torch.zeros(1, 3, 112, 112), str(path), input_names=["input"],
                      dynamic_axes={"input": {0: "n"}}, dynamo=False)
    return path


@pytest.fixture(scope="module")
def full_run(fixture_root, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["--model", str(model_path), "--data", str(fixture_root), "--protocol", "all", "--device", "cpu",
            "--output", str(out / "result.json"), "--features-out", str(out / "features.npz"), "--batch-size", "32"]
    assert main(argv) == 0
    return out


def test_all_writes_the_json_contract(full_run):
    report = json.loads((full_run / "result.json").read_text())
    assert report["protocol"] == "all" and report["model"].endswith("tiny.onnx")
    results = report["results"]
    assert list(results) == ["lfw", "cfp_fp", "cplfw", "agedb_30", "calfw", "ijbb", "ijbc", "tinyface"]
    for name in ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw"):
        r = results[name]
        assert set(r) == {"accuracy", "std", "threshold", "pairs", "fold_accuracies"}
        assert r["pairs"] == 40 and len(r["fold_accuracies"]) == 10
        assert r["accuracy"] > 0.75  # synthetic identities separate well above chance (0.5)
    for name in ("ijbb", "ijbc"):
        r = results[name]
        assert list(r["tar_at_far"]) == ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"]
        assert {"auc", "templates", "pairs"} <= set(r) and r["templates"] == 24 and r["pairs"] == 276
        assert r["auc"] > 0.8 and 0 <= min(r["tar_at_far"].values()) <= 1
        assert set(r["identification"]) == {"rank1", "rank5", "rank10", "probes", "gallery"}
        assert r["identification"]["gallery"] == 8 and r["identification"]["probes"] == 16
    t = results["tinyface"]
    assert set(t) == {"rank1", "rank5", "rank20", "probes", "gallery"}  # aligned copy used: no note
    assert t["probes"] == 20 and t["gallery"] == 30 and t["rank1"] > 0.3
    assert (full_run / "result_roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "lfw" in (full_run / "result.log").read_text()


def test_features_in_rescores_identically(full_run, tmp_path, capsys):
    out = tmp_path / "again.json"
    assert main(["--features-in", str(full_run / "features.npz"), "--output", str(out)]) == 0
    first = json.loads((full_run / "result.json").read_text())["results"]
    assert json.loads(out.read_text())["results"] == first
    assert main(["--features-in", str(full_run / "features.npz"), "--protocol", "ijbc", "--no-detector-score",
                 "--output", str(tmp_path / "ijbc.json")]) == 0
    assert list(json.loads((tmp_path / "ijbc.json").read_text())["results"]) == ["ijbc"]
    assert "| ijbc |" in capsys.readouterr().out


def test_single_protocol_from_the_folder_users_have(fixture_root, model_path, tmp_path):
    out = tmp_path / "r.json"
    assert main(["--model", str(model_path), "--data", str(fixture_root / "IJB_release" / "IJBB"),
                 "--protocol", "ijbb", "--output", str(out), "--no-flip", "--device", "cpu"]) == 0
    assert list(json.loads(out.read_text())["results"]) == ["ijbb"]


def test_tinyface_originals_are_resized_with_a_warning(fixture_root, model_path, tmp_path, capsys):
    root = tmp_path / "tf"
    shutil.copytree(fixture_root / "tinyface", root / "tinyface")
    assert main(["--model", str(model_path), "--data", str(root), "--protocol", "tinyface",
                 "--output", str(tmp_path / "t.json"), "--device", "cpu"]) == 0
    assert "not comparable" in capsys.readouterr().err
    assert "note" in json.loads((tmp_path / "t.json").read_text())["results"]["tinyface"]


def _bad(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_bad_inputs_exit_2_with_one_line(fixture_root, model_path, tmp_path, capsys):
    out = tmp_path / "never.json"
    common = ["--model", str(model_path), "--output", str(out), "--device", "cpu"]
    # A .bin that is not a pickle.
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "lfw.bin").write_bytes(b"\x00garbage, not a pickle")
    _bad([*common, "--data", str(bins), "--protocol", "lfw"], capsys, "lfw.bin", "expected")
    # Missing IJB meta file, then a malformed line in each meta file.
    ijbc = tmp_path / "IJBC"
    shutil.copytree(fixture_root / "IJB_release" / "IJBC", ijbc)
    meta = ijbc / "meta"
    pairs = meta / "ijbc_template_pair_label.txt"
    saved = pairs.read_text()
    pairs.unlink()
    _bad([*common, "--data", str(ijbc), "--protocol", "ijbc"], capsys, "ijbc_template_pair_label.txt", "expected")
    lines = saved.splitlines()
    lines[2] = "1 x 0"
    pairs.write_text("\n".join(lines) + "\n")
    _bad([*common, "--data", str(ijbc), "--protocol", "ijbc"], capsys, "ijbc_template_pair_label.txt", "line 3")
    pairs.write_text(saved)
    tid = meta / "ijbc_face_tid_mid.txt"
    tid_lines = tid.read_text().splitlines()
    tid.write_text("\n".join(tid_lines[:4] + ["5.jpg 2"] + tid_lines[5:]) + "\n")
    _bad([*common, "--data", str(ijbc), "--protocol", "ijbc"], capsys, "ijbc_face_tid_mid.txt", "line 5")
    # Empty folders.
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad([*common, "--data", str(empty), "--protocol", "all"], capsys, str(empty), "expected")
    tf = tmp_path / "tf"
    for group in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        (tf / "tinyface" / "Testing_Set" / group).mkdir(parents=True)
    _bad([*common, "--data", str(tf), "--protocol", "tinyface"], capsys, "Probe", "expected")
    # Missing model; missing data folder; features file that is not one.
    _bad(["--model", str(tmp_path / "nope.onnx"), "--data", str(fixture_root), "--output", str(out)], capsys, "nope.onnx")
    _bad([*common, "--data", str(tmp_path / "absent")], capsys, "absent")
    _bad(["--features-in", str(bins / "lfw.bin"), "--output", str(out)], capsys, "lfw.bin", "expected")
    assert not out.exists()  # nothing written half-way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IJBC", "bins", "empty", "tf"]


def test_fixture_train_pack_reads_back(tmp_path):
    datasets = pytest.importorskip("facerec.data.datasets")
    spec = importlib.util.spec_from_file_location("make_fixtures", _TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import numpy as np

    module.make_train_pack(tmp_path / "faces", np.random.default_rng(0), identities=3, images=2)
    pack = datasets.FacePack(tmp_path / "faces")
    assert (pack.num_identities, pack.num_images) == (3, 6)
    assert pack.image(pack.identity_keys(2)[0]).shape == (112, 112, 3)


def test_a_pack_of_any_name_is_scored_like_lfw(fixture_root, model_path, tmp_path, capsys):
    # facerec-data make-bin output evaluates as it is named: by --protocol all under its stem, and by name,
    # with the numbers the same pack gives when named lfw.bin; --features-in re-scores it under that stem.
    lfw = fixture_root / "faces_webface_112x112" / "lfw.bin"
    named, custom = tmp_path / "named", tmp_path / "custom"
    named.mkdir(), custom.mkdir()
    shutil.copyfile(lfw, named / "lfw.bin")
    shutil.copyfile(lfw, custom / "orl.heldout.bin")
    runs = {"lfw": (named, "lfw"), "all": (custom, "all"), "by name": (custom, "orl.heldout")}
    results = {}
    for label, (data, protocol) in runs.items():
        out = tmp_path / f"{label}.json"
        assert main(["--model", str(model_path), "--data", str(data), "--protocol", protocol, "--device", "cpu",
                     "--output", str(out), "--features-out", str(tmp_path / f"{label}.npz")]) == 0
        results[label] = json.loads(out.read_text())["results"]
    assert list(results["all"]) == list(results["by name"]) == ["orl.heldout"]
    assert results["all"]["orl.heldout"] == results["by name"]["orl.heldout"] == results["lfw"]["lfw"]
    assert 0 < results["lfw"]["lfw"]["pairs"] and len(results["lfw"]["lfw"]["fold_accuracies"]) == 10
    assert "| orl.heldout |" in capsys.readouterr().out
    again = tmp_path / "again.json"
    assert main(["--features-in", str(tmp_path / "all.npz"), "--output", str(again)]) == 0
    assert json.loads(again.read_text())["results"] == results["all"]
    _bad(["--model", str(model_path), "--data", str(custom), "--protocol", "orl", "--device", "cpu"], capsys,
         f"{custom}: expected orl.bin", "its .bin packs: orl.heldout")
    shutil.copyfile(lfw, custom / "ijbc.bin")  # a pack may not take another protocol's name
    _bad(["--model", str(model_path), "--data", str(custom), "--device", "cpu"], capsys, "ijbc.bin", "rename it")


def test_val_bins_take_any_pack_name(fixture_root, tiny_pack, tmp_path):
    # facerec-train / facerec-search --val-bins: a user's own pack by its stem, verified like lfw.
    from facerec.data.run_data import prepare_data
    from facerec.errors import FaceRecError

    pack = tmp_path / "pack"
    shutil.copytree(tiny_pack, pack)
    shutil.copyfile(fixture_root / "faces_webface_112x112" / "lfw.bin", pack / "orl.bin")
    data = prepare_data(pack, tmp_path / "out", val_bins=["orl"], fitness="bins", need_val=True,
                        cache=False)
    assert [vs.name for vs in data.val_sets] == ["orl"] and data.info["val_sets"]["orl"] > 0
    with pytest.raises(FaceRecError, match=r"orl_v2.bin: expected a verification .bin pack .* packs in .*: orl"):
        prepare_data(pack, tmp_path / "out", val_bins=["orl_v2"], fitness="bins", cache=False)
