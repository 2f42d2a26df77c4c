"""Checkpoints rebuild their model from the file alone; ONNX export matches torch at any batch."""

import numpy as np
import pytest
import torch

from facerec.cli import export as export_cli
from facerec.deploy.export import check_parity, export_onnx, ort_session, sample_batch
from facerec.errors import FaceRecError
from facerec.model.backbones import create_backbone
from facerec.model.checkpoint import load_backbone, save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

FOUND = Genotype.uniform(6, 8).with_layer(1, op="conv").with_layer(4, kernel=5)


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Move BN statistics and weights off their initial values, so a bad load would show."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, *model.pretrained_cfg["input_size"][1:]))
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def test_genotype_checkpoint_round_trip(tmp_path):
    model = _trained_like(IResNetSpace(embedding_size=128, dropout=0.2).build(FOUND))
    path = tmp_path / "model.pt"
    save_checkpoint(path, backbone=model, config={"lr": 0.1}, epoch=3)
    loaded, ckpt = load_backbone(path)
    assert not loaded.training
    assert ckpt["genotype"] == FOUND.to_dict() and ckpt["arch"] is None
    assert ckpt["space"] == {"name": "iresnet", "embedding_size": 128, "input_size": 112, "dropout": 0.2}
    assert ckpt["config"] == {"lr": 0.1} and ckpt["epoch"] == 3
    images = sample_batch(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_arch_checkpoint_round_trip(tmp_path):
    model = _trained_like(create_backbone("iresnet18", input_size=32, embedding_size=64))
    path = tmp_path / "r18.pt"
    save_checkpoint(path, backbone=model)
    loaded, ckpt = load_backbone(path)
    assert ckpt["arch"] == "iresnet18" and ckpt["genotype"] is None
    images = sample_batch(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_explicit_genotype_and_ddp_prefix(tmp_path):
    model = _trained_like(IResNetSpace().build(FOUND))
    wrapped = torch.nn.Module()
    wrapped.module = model  # what DDP looks like to save_checkpoint
    path = tmp_path / "ddp.pt"
    save_checkpoint(path, backbone=wrapped)  # what it was built with is read through the wrapper
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["genotype"] == FOUND.to_dict() and ckpt["space"] == IResNetSpace().config()
    assert not any(k.startswith("module.") for k in ckpt["model"])  # unwrapped on save
    # A state dict saved by hand from the DDP wrapper still loads.
    torch.save({**ckpt, "model": {f"module.{k}": v for k, v in ckpt["model"].items()}}, path)
    loaded, _ = load_backbone(path)
    images = sample_batch(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FaceRecError, match="file not found"):
        load_backbone(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(FaceRecError, match="junk.pt: expected a facenas checkpoint"):
        load_backbone(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(FaceRecError, match="neither 'genotype' nor 'arch'"):
        load_backbone(tmp_path / "bare.pt")
    model = IResNetSpace().build(FOUND)
    save_checkpoint(tmp_path / "wrong.pt", backbone=model, genotype=FOUND.with_width(10))
    with pytest.raises(FaceRecError, match="weights do not match"):
        load_backbone(tmp_path / "wrong.pt")
    save_checkpoint(tmp_path / "explicit.pt", backbone=torch.nn.Linear(2, 2), genotype=FOUND)
    assert torch.load(tmp_path / "explicit.pt", weights_only=True)["space"] == {"name": "iresnet"}
    with pytest.raises(FaceRecError, match="weights do not match"):
        load_backbone(tmp_path / "explicit.pt")
    with pytest.raises(FaceRecError, match="genotype or an arch"):
        save_checkpoint(tmp_path / "x.pt", backbone=torch.nn.Linear(2, 2))


def test_export_parity_and_dynamic_batch(tmp_path):
    model = _trained_like(IResNetSpace().build(FOUND))
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    parity = check_parity(model, path, batch=4)
    assert parity.passed and parity.rel_l2 <= 1e-5
    session = ort_session(path)
    assert session.get_inputs()[0].type == "tensor(float)"
    for batch in (1, 3):
        images = sample_batch(model, batch, seed=batch)
        got = session.run(["embedding"], {"input": images.numpy()})[0]
        with torch.no_grad():
            expected = model(images).numpy()
        assert got.shape == (batch, 512)
        assert np.linalg.norm(got - expected, axis=1).max() <= 1e-4 * np.linalg.norm(expected, axis=1).min()
    with pytest.raises(FaceRecError, match="opset 13"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)


def test_export_cli(tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, backbone=_trained_like(IResNetSpace().build(FOUND)))
    out = tmp_path / "out" / "model.onnx"
    assert export_cli.main(["--checkpoint", str(ckpt), "--output", str(out), "--batch-size", "2", "--repeats", "2"]) == 0
    printed = capsys.readouterr().out
    assert "relative L2 error" in printed and "max abs diff" in printed
    assert "onnxruntime" in printed and "torch eager" in printed
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    # Embeddings that cannot be compared (NaN weights) leave nothing behind and exit 1.
    broken = _trained_like(IResNetSpace().build(FOUND))
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", backbone=broken)
    failed = tmp_path / "failed.onnx"
    rc = export_cli.main(["--checkpoint", str(tmp_path / "nan.pt"), "--output", str(failed), "--batch-size", "2"])
    assert rc == 1
    assert "embeddings are not finite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "nan.pt", "out"]


def test_export_cli_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert export_cli.main(["--checkpoint", str(bad), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: expected a facenas checkpoint") and err.count("\n") == 1
    assert export_cli.main(["--checkpoint", str(tmp_path / "none.pt"), "--output", "m.onnx"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert export_cli.main(["--checkpoint", str(bad), "--output", "m.onnx", "--opset", "11"]) == 2
    assert "--opset 11: expected 17 or newer" in capsys.readouterr().err
