"""The export parity rule judges relative L2 error per sample: large embeddings export, planted graph
defects (BatchNorm epsilon, PReLU → ReLU, reset running variance) are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from facerec.cli import export as export_cli
from facerec.deploy.export import PARITY_FLOOR, check_parity, compare_embeddings, export_onnx
from facerec.model.checkpoint import save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

GENOTYPE = Genotype(4, 4, ("sep", "conv", "sep", "sep"), (3, 5, 3, 3))


def _net_with_real_bn_statistics(scale: float = 1.0) -> torch.nn.Module:
    """A small net whose BatchNorm running statistics are the true ones of its activations (cumulative
    average over a few batches), far from the initial mean 0 / variance 1, so a BN defect shows."""
    torch.manual_seed(0)
    model = IResNetSpace(embedding_size=32, input_size=32).build(GENOTYPE)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 3, 32, 32) * 2 - 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.fc.weight.mul_(scale)
        model.fc.bias.mul_(scale)
        model.features.running_mean.mul_(scale)  # keeps the embedding at ~scale: BN1d's variance stays
    for bn in norms:
        bn.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _net_with_real_bn_statistics()
    path = tmp_path_factory.mktemp("parity") / "model.onnx"
    export_onnx(model, path)
    return model, path


def _plant(source, target, edit) -> None:
    graph = onnx.load(str(source))
    edit(graph.graph)
    onnx.save(graph, str(target))


def _epsilon(node_name: str):
    def edit(graph):
        node = next(n for n in graph.node if n.op_type == "BatchNormalization" and node_name in n.name)
        next(a for a in node.attribute if a.name == "epsilon").f = 1e-3  # the model's BNs use 1e-5

    return edit


def _reset_variance(initializer: str):
    def edit(graph):
        tensor = next(t for t in graph.initializer if t.name == initializer)
        ones = np.ones_like(numpy_helper.to_array(tensor))
        tensor.CopyFrom(numpy_helper.from_array(ones, initializer))

    return edit


def _prelu_to_relu(graph):
    node = next(n for n in graph.node if n.op_type == "PRelu")
    node.op_type = "Relu"
    del node.input[1:]


def test_clean_export_passes(exported):
    model, path = exported
    parity = check_parity(model, path, batch=4)
    assert parity.passed and parity.samples == 4 and parity.rel_l2 < 1e-5


@pytest.mark.parametrize("defect, edit", [
    ("block pre-conv BN epsilon 1e-3", _epsilon("layer2.0/bn1")),
    ("embedding BatchNorm1d epsilon 1e-3", _epsilon("features")),
    ("PReLU replaced by ReLU", _prelu_to_relu),
    ("embedding BN running variance reset", _reset_variance("features.running_var")),
    ("block BN running variance reset", _reset_variance("layer3.0.bn1.running_var")),
])
def test_planted_defects_are_refused(exported, tmp_path, defect, edit):
    model, path = exported
    graph = onnx.load(str(path))
    assert any(n.op_type == "BatchNormalization" for n in graph.graph.node)  # not all folded into convs
    bad = tmp_path / "bad.onnx"
    _plant(path, bad, edit)
    parity = check_parity(model, bad, batch=4)
    assert not parity.passed and parity.failing == 4, defect
    assert parity.rel_l2 > 2 * 1e-4, defect


def test_epsilon_defect_hides_from_cosine_but_not_from_relative_error(exported, tmp_path):
    model, path = exported
    _plant(path, tmp_path / "eps.onnx", _epsilon("features"))
    parity = check_parity(model, tmp_path / "eps.onnx", batch=4)
    assert parity.cosine > 0.99999  # a cosine rule would let it through
    assert not parity.passed


def test_rule_is_relative_with_an_absolute_floor():
    rng = np.random.default_rng(0)
    expected = rng.normal(size=(5, 16)).astype(np.float32)
    noise = rng.normal(size=(5, 16)).astype(np.float32)
    small = expected + 1e-6 * noise * np.linalg.norm(expected, axis=1, keepdims=True) / 4
    for scale in (1.0, 1e6):  # the same relative error passes at any scale
        parity = compare_embeddings(scale * expected, (scale * small).astype(np.float32))
        assert parity.passed
        assert parity.rel_l2 == pytest.approx(compare_embeddings(expected, small).rel_l2, rel=0.05)
    big = expected + 1e-3 * noise
    assert compare_embeddings(expected, big).failing == 5
    zero = np.zeros((2, 16), np.float32)
    assert compare_embeddings(zero, zero + PARITY_FLOOR / 10).passed  # the floor: no division by a zero norm
    assert not compare_embeddings(zero, zero + 1e-3).passed


def test_output_that_cannot_be_compared_is_refused():
    expected = np.ones((3, 8), np.float32)
    assert "shape" in compare_embeddings(expected, np.ones((3, 4), np.float32)).problem
    assert "dtype" in compare_embeddings(expected, np.ones((3, 8), np.float64)).problem
    nan = expected.copy()
    nan[1, 2] = np.nan
    parity = compare_embeddings(expected, nan)
    assert not parity.passed and "not finite in 1 of 3" in parity.problem
    assert "torch" in compare_embeddings(nan, expected).problem


def test_cli_exports_embeddings_scaled_by_a_million(tmp_path, tiny_pack, capsys):
    model = _net_with_real_bn_statistics(scale=1e6)
    with torch.no_grad():
        norm = model(torch.rand(4, 3, 32, 32) * 2 - 1).norm(dim=1)
    assert norm.min() > 1e5  # raw embeddings as large as those of a barely trained BatchNorm
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, backbone=model)
    out = tmp_path / "out" / "model.onnx"
    rc = export_cli.main(["--checkpoint", str(ckpt), "--output", str(out), "--data", str(tiny_pack),
                          "--batch-size", "4", "--repeats", "1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "4 random + 64 face images" in printed and "relative L2 error" in printed and "cosine" in printed
    rel = float(printed.split("worst relative L2 error ")[1].split()[0])
    assert rel < 1e-5  # float32 rounding is relative: ~1e-7 whatever the scale
    assert out.is_file()


def test_cli_refuses_a_defective_graph_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import facerec.deploy.export

    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, backbone=_net_with_real_bn_statistics())
    real_export = facerec.deploy.export.export_onnx

    def export_with_relu(backbone, path, **kwargs):
        real_export(backbone, path, **kwargs)
        _plant(path, path, _prelu_to_relu)

    monkeypatch.setattr(facerec.deploy.export, "export_onnx", export_with_relu)
    out = tmp_path / "new" / "model.onnx"
    assert export_cli.main(["--checkpoint", str(ckpt), "--output", str(out), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "relative L2 error" in err and "on 2 of 2 samples" in err and err.endswith("not written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # not even the folder
