"""IResNet space and fixed backbones: every registry entry builds, trains one step, counts right."""

import pytest
import timm
import torch

from facerec.errors import FaceRecError
from facerec.model.backbones import create_backbone, list_backbones, register_genotype
from facerec.model.space import IResNetSpace, resnet_depth, stage_plan
from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.space import create_space, list_spaces, match_width

# A found-like net: mixed ops and kernels, an uneven 4-way split (B=7 → 1, 2, 2, 2).
FOUND = Genotype.uniform(7, 8).with_layer(0, op="conv").with_layer(3, kernel=5).with_layer(6, op="conv", kernel=5)
SPACE_GENOTYPES = [
    Genotype.uniform(4, 4),
    Genotype.uniform(5, 6, op="conv", kernel=5),
    FOUND,
]
# Per space, genotypes to try; a space registered later must add its own here (the test fails until then).
GENOTYPES_FOR = {"iresnet": SPACE_GENOTYPES}



def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _train_step(model: torch.nn.Module, size: int) -> None:
    """Forward + backward on a tiny batch; every trainable parameter gets a finite, non-zero gradient."""
    torch.manual_seed(0)
    model.train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    # A random projection: the sum of a BN output is constant, so it would leave no gradient.
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("space_name", list_spaces("iresnet*"))
def test_every_face_space_builds_and_trains(space_name):
    space = create_space(space_name)
    for genotype in GENOTYPES_FOR[space_name]:
        model = space.build(genotype)
        assert _params(model) == space.count_params(genotype)
        _train_step(model, 112)


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_and_trains(name):
    model = create_backbone(name)
    _train_step(model, 112)


@pytest.mark.parametrize("name", timm.list_models("facenas_*"))
def test_every_timm_name_builds_and_trains(name):
    model = timm.create_model(name)
    assert model.facenas_architecture  # a facenas net: its checkpoints rebuild it
    _train_step(model, 112)


def test_reference_parameter_counts():
    # InsightFace arcface_torch r18 / r50 (fc bias, affine embedding BN with frozen scale).
    assert _params(create_backbone("iresnet18")) == 24_025_600
    assert _params(create_backbone("iresnet50")) == 43_590_848
    assert _params(timm.create_model("facenas_iresnet18")) == 24_025_600


@pytest.mark.parametrize("depth", [4, 5, 6, 7, 9, 13, 28, 49])
@pytest.mark.parametrize("embedding_size,input_size", [(512, 112), (128, 64)])
def test_closed_form_count_equals_numel(depth, embedding_size, input_size):
    space = IResNetSpace(embedding_size=embedding_size, input_size=input_size)
    torch.manual_seed(depth)
    ops = [("sep", "conv")[i] for i in torch.randint(0, 2, (depth,)).tolist()]
    kernels = [(3, 5)[i] for i in torch.randint(0, 2, (depth,)).tolist()]
    for width in (3, 16):
        genotype = Genotype(depth, width, tuple(ops), tuple(kernels))
        assert space.count_params(genotype) == _params(space.build(genotype))


def test_resnet_depth_naming():
    # 2 layers per block + stem + FC: R-10 = 4 blocks (D_min), R-58 = 28, R-100 = 49 (D_max).
    assert [resnet_depth(Genotype.uniform(b, 8)) for b in (4, 28, 49)] == [10, 58, 100]
    # R-58-256: the final stage has 8C = 256 channels at C = 32.
    assert IResNetSpace().build(Genotype.uniform(28, 32)).bn2.num_features == 256


def test_stage_split_and_strides():
    # Stage s holds blocks [⌊sB/4⌋, ⌊(s+1)B/4⌋): B=7 → 1, 2, 2, 2; B=28 → 7 each.
    assert [len(s) for s in stage_plan(Genotype.uniform(7, 8))] == [1, 2, 2, 2]
    assert [len(s) for s in stage_plan(Genotype.uniform(28, 8))] == [7, 7, 7, 7]
    assert [len(s) for s in stage_plan(Genotype.uniform(49, 8))] == [12, 12, 12, 13]
    model = IResNetSpace().build(FOUND).eval()
    assert isinstance(model.layer1[0].conv1, torch.nn.Conv2d)  # block 0: plain conv 3x3
    assert model.layer2[0].conv1[0].kernel_size == (3, 3)  # block 1: sep 3x3 (depthwise, pointwise)
    assert model.layer2[0].conv1[1].kernel_size == (1, 1)
    assert model.layer3[0].conv2[0].kernel_size == (5, 5)  # block 3: sep 5x5, stride on the depthwise
    assert model.layer3[0].conv2[0].stride == (2, 2)
    assert model.layer4[1].conv2.kernel_size == (5, 5)  # block 6: conv 5x5
    trace = model.prelu(model.bn1(model.conv1(torch.zeros(1, 3, 112, 112))))
    sizes = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        trace = stage(trace)
        sizes.append(tuple(trace.shape[1:]))
    assert sizes == [(8, 56, 56), (16, 28, 28), (32, 14, 14), (64, 7, 7)]


def test_block_layout_matches_insightface_names():
    # Same key names as arcface_torch's iresnet, so its r50 state dicts load.
    keys = set(create_backbone("iresnet50").state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "prelu.weight", "layer1.0.downsample.0.weight",
                "layer3.13.bn3.weight", "layer3.13.prelu.weight", "bn2.weight", "fc.bias", "features.weight"):
        assert key in keys
    assert "layer1.1.downsample.0.weight" not in keys


def test_space_rejects_bad_input():
    with pytest.raises(FaceRecError, match="depth ≥ 4"):
        IResNetSpace().build(Genotype.uniform(3, 8))
    with pytest.raises(FaceRecError, match="multiple of 16"):
        IResNetSpace(input_size=100).build(Genotype.uniform(4, 8))
    with pytest.raises(NasError, match="unknown backbone"):
        create_backbone("iresnet7")


def test_match_width_uses_closed_form():
    space = IResNetSpace()
    reference = Genotype.uniform(8, 16)
    bigger = reference.with_layer(2, op="conv")
    matched = match_width(space, bigger, space.count_params(reference), slack=10_000)
    assert matched.width < 16
    assert space.count_params(matched) <= space.count_params(reference) + 10_000


def test_register_genotype_in_timm():
    name = register_genotype("test_found_d7", FOUND, dropout=0.1)
    assert name == "facenas_test_found_d7"
    assert register_genotype("test_found_d7", FOUND, dropout=0.1) == name  # same again: no-op
    with pytest.raises(FaceRecError, match="another genotype"):
        register_genotype("test_found_d7", Genotype.uniform(4, 4))
    with pytest.raises(FaceRecError, match="fixed backbone"):
        register_genotype("iresnet18", FOUND)
    model = timm.create_model(name)
    assert model.dropout.p == 0.1
    assert _params(model) == IResNetSpace().count_params(FOUND)
    assert model.facenas_architecture["genotype"] == FOUND.to_dict()
    assert "test_found_d7" in list_backbones("test_*")
    assert timm.create_model(name, embedding_size=128)(torch.randn(2, 3, 112, 112)).shape == (2, 128)
    with pytest.raises(FaceRecError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)


def test_list_backbones_wildcards():
    assert list_backbones("iresnet1*") == ["iresnet100", "iresnet18"]
    assert {"facenas_iresnet18", "facenas_iresnet100"} <= set(timm.list_models("facenas_iresnet*"))


_FRESH = """
import sys
sys.path.insert(0, {root!r})
{imports}
heavy = sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)
print(",".join(heavy) or "-", "|", ",".join(sorted(timm.list_models("facenas_*"))) if "timm" in sys.modules else "")
"""


def _fresh(imports: str) -> tuple[str, str]:
    import subprocess
    import sys
    from pathlib import Path

    code = _FRESH.format(root=str(Path(__file__).resolve().parents[1]), imports=imports)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    heavy, names = (part.strip() for part in done.stdout.split("|"))
    return heavy, names


def test_import_facerec_imports_neither_torch_nor_timm():
    assert _fresh("import facerec") == ("-", "")


@pytest.mark.parametrize("imports", ["import facerec\nimport timm", "import timm\nimport facerec",
                                     "import facerec.model.backbones\nimport timm"])
def test_facenas_models_join_timm_whichever_is_imported_first(imports):
    _, names = _fresh(imports)
    assert set(names.split(",")) == {f"facenas_{name}" for name in list_backbones() if not name.startswith("test_")}
