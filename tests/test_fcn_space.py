"""The paper's FCN: closed-form params == built model == ARCHITECTURE §3 test vectors; forward shapes."""

import pytest
import torch

from nas_core.classify.network import ClassifierSpace, layer_channels
from nas_core.genotype import Genotype
from nas_core.space import create_space, list_spaces, match_width


def _conv_at(genotype, layers):
    for i in layers:
        genotype = genotype.with_layer(i, op="conv")
    return genotype


_C10_26 = _conv_at(Genotype.uniform(26, 46), [0, 2]).with_layer(13, kernel=5).with_layer(17, kernel=5)

VECTORS = [  # (in_channels, classes, genotype, params) from ARCHITECTURE §3
    (3, 10, Genotype.uniform(10, 64), 309_450),
    (3, 100, Genotype.uniform(10, 64), 332_580),
    (1, 47, Genotype.uniform(10, 64), 316_655),
    (3, 10, Genotype.uniform(26, 46), 413_826),
    (3, 10, _C10_26, 466_312),
    (3, 10, _C10_26.with_width(43), 409_714),
    (3, 10, _conv_at(Genotype.uniform(21, 102), [0, 1, 5, 8, 13]), 2_490_340),
]


@pytest.mark.parametrize(("in_channels", "classes", "genotype", "params"), VECTORS)
def test_design_parameter_vectors(in_channels, classes, genotype, params):
    space = ClassifierSpace(in_channels=in_channels, num_classes=classes)
    assert space.count_params(genotype) == params
    assert sum(p.numel() for p in space.build(genotype).parameters()) == params


@pytest.mark.parametrize("genotype", [
    Genotype(5, 8, ("conv", "sep", "conv", "sep", "sep"), (5, 3, 3, 5, 5)),
    Genotype(3, 4, ("sep", "sep", "conv"), (3, 5, 3)),
    Genotype(1, 6, ("conv",), (5,)),
    Genotype(13, 10, ("sep", "conv") * 6 + ("conv",), (5,) * 13),
])
def test_closed_form_equals_built_model(genotype):
    for space in (ClassifierSpace(3, 10), ClassifierSpace(1, 47)):
        assert space.count_params(genotype) == sum(p.numel() for p in space.build(genotype).parameters())


def test_stages_and_reductions():
    plan = layer_channels(Genotype.uniform(10, 16))
    assert plan[0] == (32, 16, 1)  # layer 0 maps 2C -> C
    assert [i for i, (_, _, stride) in enumerate(plan) if stride == 2] == [3, 6]  # L//3, 2L//3
    assert plan[-1][1] == 64  # stages C, 2C, 4C


@pytest.mark.parametrize(("in_channels", "size"), [(3, 32), (1, 28)])
def test_forward_and_backward(in_channels, size):
    space = ClassifierSpace(in_channels=in_channels, num_classes=7)
    model = space.build(Genotype(6, 4, ("sep", "conv") * 3, (3, 5) * 3))
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registered_and_matches_width():
    assert "fcn" in list_spaces()
    space = create_space("fcn", in_channels=1, num_classes=10)
    assert space.config() == {"name": "fcn", "in_channels": 1, "num_classes": 10}
    macro = Genotype.uniform(26, 46)
    reference = ClassifierSpace().count_params(macro)
    # cifar10_64 trace: conv at layers 0 and 2 fits 43 wide within 10,000 params of the macro net
    fitted = match_width(ClassifierSpace(), _conv_at(macro, [0, 2]), reference, 10_000)
    assert fitted.width == 43
