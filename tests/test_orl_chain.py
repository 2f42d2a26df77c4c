"""The chain search → train (default AdaFace head) → facerec-export → facerec-eval: the export passes its
parity check on face images of the training pack, and the .onnx and the .pt score the same 10-fold
numbers. Fast on the tiny synthetic pack; on real faces (ORL, 15 epochs) under ``-m slow``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.cli.data import main as data_main
from facerec.cli.eval import main as eval_main
from facerec.cli.export import main as export_main
from facerec.cli.search import main as search_main
from facerec.cli.train import main as train_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402
from orl_demo import SEARCH_FLAGS  # noqa: E402


def _export_and_score(work: Path, train_pack: Path, bins: Path, capsys, pack: str) -> dict:
    """facerec-export with --data TRAIN_PACK, then facerec-eval of model.onnx and model.pt on BINS/PACK.bin,
    scored by its own name (no renaming to lfw.bin)."""
    onnx_path = work / "model.onnx"
    rc = export_main(["--checkpoint", str(work / "model" / "model.pt"), "--output", str(onnx_path),
                      "--data", str(train_pack), "--batch-size", "8", "--repeats", "1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "face images" in printed and "relative L2 error" in printed
    scores = {}
    for name, model in (("onnx", onnx_path), ("pt", work / "model" / "model.pt")):
        out = work / f"eval_{name}.json"
        assert eval_main(["--model", str(model), "--data", str(bins), "--protocol", pack, "--device", "cpu",
                          "--output", str(out)]) == 0
        scores[name] = json.loads(out.read_text())["results"][pack]
    return scores


def test_tiny_chain_search_train_export_eval(tiny_pack, tmp_path, capsys):
    tiny = ["--e-min", "1", "--d-min", "4", "--d-max", "5", "--w-min", "4", "--w-max", "4", "--micro-epochs",
            "1", "--max-trials", "2", "--batch-size", "16", "--workers", "0", "--embedding-size", "32",
            "--no-progress", "--holdout-ids", "2", "--device", "cpu"]
    assert search_main(["--data", str(tiny_pack), "--output", str(tmp_path / "search"), *tiny]) == 0
    assert train_main(["--genotype", str(tmp_path / "search" / "result.json"), "--data", str(tiny_pack),
                       "--output", str(tmp_path / "model"), "--epochs", "1", "--batch-size", "16",
                       "--holdout-ids", "2", "--workers", "0", "--device", "cpu", "--no-progress",
                       "--recipe", "adaface"]) == 0  # the AdaFace head, the recipe of large sets (ARCHITECTURE §4)
    assert torch.load(tmp_path / "model" / "model.pt", weights_only=True)["config"]["head"] == "adaface"
    make_verification_pack(tmp_path / "bins" / "heldout.bin", np.random.default_rng(0), pairs=20, identities=6)
    scores = _export_and_score(tmp_path, tiny_pack, tmp_path / "bins", capsys, "heldout")
    assert scores["onnx"]["pairs"] == scores["pt"]["pairs"] == 20
    assert scores["onnx"]["accuracy"] == scores["pt"]["accuracy"]
    assert scores["onnx"]["fold_accuracies"] == scores["pt"]["fold_accuracies"]


@pytest.mark.slow
def test_orl_chain_adaface_15_epochs(orl_dir, tmp_path, capsys):
    """ORL s1..s30 search + train (AdaFace, 15 epochs); held-out s31..s40 pairs as tools/orl_demo.py builds
    them."""
    held = tmp_path / "heldout_images"
    held.mkdir()
    for i in range(31, 41):
        (held / f"s{i}").symlink_to((orl_dir / f"s{i}").resolve())
    train_pack = tmp_path / "train"
    assert data_main(["pack", str(orl_dir), str(train_pack), "--identities-to", "30"]) == 0
    assert data_main(["make-bin", str(held), str(tmp_path / "heldout" / "orl.bin"), "--pairs", "600"]) == 0
    assert search_main(["--data", str(train_pack), "--output", str(tmp_path / "search"), *SEARCH_FLAGS,
                        "--device", "cpu", "--no-progress"]) == 0
    assert train_main(["--genotype", str(tmp_path / "search" / "result.json"), "--data", str(train_pack),
                       "--output", str(tmp_path / "model"), "--epochs", "15", "--batch-size", "32",
                       "--lr", "0.1", "--holdout-ids", "0", "--workers", "0", "--device", "cpu",
                       "--no-progress", "--recipe", "adaface"]) == 0
    scores = _export_and_score(tmp_path, train_pack, tmp_path / "heldout", capsys, "orl")
    assert scores["onnx"]["pairs"] == 600
    assert scores["onnx"]["accuracy"] == scores["pt"]["accuracy"]
    assert scores["onnx"]["fold_accuracies"] == scores["pt"]["fold_accuracies"]
    assert scores["onnx"]["accuracy"] > 0.6  # it learned faces (chance is 0.5)
