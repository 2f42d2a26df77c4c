"""facerec-export of a searched-space checkpoint, then facerec-eval on the ONNX file and on the checkpoint:
the parity check passes and both give the same 10-fold numbers (issue: face search, training, export)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from facerec.cli.eval import main as eval_main
from facerec.cli.export import main as export_main
from facerec.model.checkpoint import save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402


def test_exported_onnx_scores_like_its_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    genotype = Genotype(4, 4, ("sep", "conv", "sep", "sep"), (3, 5, 3, 3))
    space = IResNetSpace(embedding_size=64)
    backbone = space.build(genotype).eval()
    # Non-trivial BN statistics, so the exported graph folds real running stats.
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, backbone=backbone, genotype=genotype, space=space.config())
    data = tmp_path / "bins"
    make_verification_pack(data / "lfw.bin", np.random.default_rng(0), pairs=40, identities=8)

    onnx_path = tmp_path / "model.onnx"
    assert export_main(["--checkpoint", str(ckpt), "--output", str(onnx_path), "--batch-size", "3", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "relative L2 error" in printed and "tolerance 0.0001" in printed
    assert onnx_path.is_file()

    results = {}
    for name, model in (("onnx", onnx_path), ("pt", ckpt)):
        out = tmp_path / f"{name}.json"
        assert eval_main(["--model", str(model), "--data", str(data), "--protocol", "lfw", "--device", "cpu",
                          "--output", str(out)]) == 0
        results[name] = json.loads(out.read_text())["results"]["lfw"]
    assert results["onnx"]["pairs"] == results["pt"]["pairs"] == 40
    assert results["onnx"]["accuracy"] == results["pt"]["accuracy"]
    assert results["onnx"]["fold_accuracies"] == results["pt"]["fold_accuracies"]
