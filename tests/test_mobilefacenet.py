"""MobileFaceNet: arcface_torch's get_mbf / get_mbf_large layout key for key, its weights imported give the same
embeddings on real faces, and the fixed net trains, exports and evaluates like the IResNets.

The reference below is written here from the definition in arcface_torch's backbones/mobilefacenet.py (module
names, order, shapes), independently of facerec.model.mobilefacenet. Counted from that definition (bias-free convs,
BN affine 2c, PReLU c, GDC Linear without bias, affine BatchNorm1d), get_mbf(False, 512) has 2,059,520
parameters: stem 3,840; 64-group conv 2,688; stride-2 bottlenecks 34,944 + 102,656 + 270,336; residual stages
4 x 34,944 + 6 x 135,424 + 2 x 135,424; conv_sep 132,608; GDC 26,112 + 262,144 + 1,024. get_mbf_large (blocks
2/8/12/4, scale 4) has 6,314,880.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from facerec.cli.embed import main as embed_main
from facerec.cli.eval import main as eval_main
from facerec.cli.export import main as export_main
from facerec.cli.import_weights import main as import_main
from facerec.cli.train import main as train_main
from facerec.data.images import load_image, read_image_folder
from facerec.model.backbones import create_backbone
from facerec.model.checkpoint import load_backbone
from facerec.train.loop import param_groups

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402

MBF_PARAMS, MBF_LARGE_PARAMS = 2_059_520, 6_314_880

# ------------------------------------------------------------------------------ the published layout


class RefConvBlock(nn.Module):  # conv (no bias) → BN → PReLU, under .layers
    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                    nn.BatchNorm2d(cout), nn.PReLU(cout))

    def forward(self, x):
        return self.layers(x)


class RefLinearBlock(nn.Module):  # conv (no bias) → BN, under .layers
    def __init__(self, cin, cout, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                                    nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.layers(x)


class RefDepthWise(nn.Module):  # 1x1 to `groups` channels, depthwise 3x3 (stride), linear 1x1 out; + x if residual
    def __init__(self, cin, cout, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(RefConvBlock(cin, groups), RefConvBlock(groups, groups, 3, stride, 1, groups),
                                    RefLinearBlock(groups, cout))

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class RefResidual(nn.Module):
    def __init__(self, c, num_block, groups):
        super().__init__()
        self.layers = nn.Sequential(*[RefDepthWise(c, c, True, 1, groups) for _ in range(num_block)])

    def forward(self, x):
        return self.layers(x)


class RefGDC(nn.Module):
    def __init__(self, embedding_size):
        super().__init__()
        self.layers = nn.Sequential(RefLinearBlock(512, 512, 7, 1, 0, 512), nn.Flatten(),
                                    nn.Linear(512, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))

    def forward(self, x):
        return self.layers(x)


class RefMobileFaceNet(nn.Module):
    """arcface_torch MobileFaceNet(fp16=False, num_features, blocks, scale) as its definition builds it."""

    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([RefConvBlock(3, c1, 3, 2, 1)])
        if blocks[0] == 1:
            self.layers.append(RefConvBlock(c1, c1, 3, 1, 1, groups=64))
        else:
            self.layers.append(RefResidual(c1, blocks[0], 128))
        self.layers.extend([RefDepthWise(c1, c1, False, 2, 128), RefResidual(c1, blocks[1], 128),
                            RefDepthWise(c1, c2, False, 2, 256), RefResidual(c2, blocks[2], 256),
                            RefDepthWise(c2, c2, False, 2, 512), RefResidual(c2, blocks[3], 256)])
        self.conv_sep = RefConvBlock(c2, 512)
        self.features = RefGDC(num_features)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def get_mbf(num_features=512):
    return RefMobileFaceNet(num_features)


def get_mbf_large(num_features=512):
    return RefMobileFaceNet(num_features, (2, 8, 12, 4), 4)


def _randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and random BN running statistics, in eval mode: a "trained" net whose every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(1000)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(0.1 + 0.3 * torch.rand(m.weight.shape, generator=g))
    return net.eval()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------ layout


# A few keys with the shapes arcface_torch's definition gives them, spelled out.
NAMED = {
    "mobilefacenet": {"layers.1.layers.0.weight": (128, 2, 3, 3),  # 64-group conv, not depthwise
                      "layers.3.layers.0.layers.1.layers.0.weight": (128, 1, 3, 3),
                      "layers.6.layers.0.layers.0.weight": (512, 256, 1, 1),
                      "conv_sep.layers.2.weight": (512,), "features.layers.0.layers.0.weight": (512, 1, 7, 7),
                      "features.layers.2.weight": (512, 512), "features.layers.3.running_var": (512,)},
    "mobilefacenet_large": {"layers.1.layers.1.layers.0.layers.0.weight": (128, 256, 1, 1),
                            "layers.5.layers.11.layers.2.layers.0.weight": (512, 256, 1, 1),
                            "conv_sep.layers.0.weight": (512, 512, 1, 1)},
}


@pytest.mark.parametrize("arch, reference, params", [("mobilefacenet", get_mbf, MBF_PARAMS),
                                                     ("mobilefacenet_large", get_mbf_large, MBF_LARGE_PARAMS)])
def test_state_dict_is_arcface_torchs_key_for_key(arch, reference, params):
    with torch.device("meta"):  # shapes only
        ours, theirs = create_backbone(arch), reference()
    assert list(ours.state_dict()) == list(theirs.state_dict())  # every key, in order
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key
    for key, shape in NAMED[arch].items():
        assert tuple(ours.state_dict()[key].shape) == shape, key
    assert _params(ours) == _params(theirs) == params


def test_embedding_size_and_timm_name():
    model = timm.create_model("facenas_mobilefacenet", embedding_size=128)
    assert model.num_features == 128 and model.facenas_architecture["arch"] == "mobilefacenet"
    with torch.device("meta"):
        assert list(model.state_dict()) == list(get_mbf(128).state_dict())
    out = model.eval()(torch.zeros(2, 3, 112, 112))
    assert out.shape == (2, 128)
    assert tuple(model.state_dict()["features.layers.2.weight"].shape) == (128, 512)
    # AdaFace's rule (ARCHITECTURE §4): no weight decay on BN and PReLU (every 1-D parameter; no conv or the GDC
    # Linear has a bias), decay on every conv and the Linear
    groups = {g["weight_decay"]: g["params"] for g in param_groups(model, 5e-4)}
    assert all(p.ndim > 1 for p in groups[5e-4]) and all(p.ndim <= 1 for p in groups[0.0])
    assert len(groups[5e-4]) + len(groups[0.0]) == len(list(model.parameters()))


# ------------------------------------------------------------------------------ import parity


@pytest.fixture(scope="module")
def mbf_reference() -> nn.Module:
    return _randomised(get_mbf())


@pytest.fixture(scope="module")
def mbf_file(mbf_reference, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mbf") / "backbone.pth"
    torch.save(mbf_reference.state_dict(), path)
    return path


def _faces(root: Path, people: int = 4) -> tuple[list[Path], torch.Tensor]:
    """The first image of the first ``people`` people: model input (x/255 − 0.5)/0.5, RGB."""
    paths = [images[0] for _, images in read_image_folder(root)[:people]]
    rgb = np.stack([load_image(p) for p in paths])
    return paths, (torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm(dim=1) / expected.norm(dim=1)).max().item()


def test_import_gives_arcface_torchs_embeddings_on_real_faces(mbf_reference, mbf_file, tmp_path):
    from tests.conftest import SHARED_DATA

    lfw = SHARED_DATA / "lfw_train"
    if not lfw.is_dir():
        pytest.skip(f"{lfw} not present")
    faces = tmp_path / "faces"
    paths, batch = _faces(lfw)
    for path in paths:  # a folder of four people for facerec-embed
        (faces / path.parent.name).mkdir(parents=True)
        (faces / path.parent.name / path.name).write_bytes(path.read_bytes())
    ckpt = tmp_path / "mbf.pt"
    assert import_main(["--format", "arcface_torch", "--arch", "mobilefacenet", "--weights", str(mbf_file),
                        "--output", str(ckpt)]) == 0
    model, saved = load_backbone(ckpt)
    assert saved["arch"] == "mobilefacenet" and saved["genotype"] is None
    with torch.no_grad():
        expected, got = mbf_reference(batch), model(batch)
    assert expected.norm(dim=1).min() > 1.0  # a real signal
    cosine = torch.nn.functional.normalize(expected, dim=1) @ torch.nn.functional.normalize(expected, dim=1).T
    assert cosine[~torch.eye(len(paths), dtype=torch.bool)].max() < 0.999  # different faces, different embeddings
    assert _relative_error(got, expected) <= 1e-4
    # facerec-embed rebuilds the same net from the checkpoint alone
    out = tmp_path / "faces.npz"
    assert embed_main(["--model", str(ckpt), "--images", str(faces), "--no-flip", "--device", "cpu",
                       "--output", str(out)]) == 0
    embedded = np.load(out, allow_pickle=False)
    order = [f"{p.parent.name}/{p.name}" for p in paths]
    rows = torch.from_numpy(embedded["embeddings"][[list(embedded["names"]).index(n) for n in order]])
    assert _relative_error(rows, torch.nn.functional.normalize(expected, dim=1)) <= 1e-4


def _import_error(capsys, fmt: str, arch: str, weights: Path, tmp_path: Path) -> str:
    out = tmp_path / "model.pt"
    assert import_main(["--format", fmt, "--arch", arch, "--weights", str(weights), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()
    return err


def test_wrong_arch_or_format_exits_2_in_one_line(mbf_reference, mbf_file, tmp_path, capsys):
    assert "--arch mobilefacenet: expected one of iresnet18" in _import_error(
        capsys, "adaface", "mobilefacenet", mbf_file, tmp_path)
    assert "layers.0.layers.0.weight: shape (128, 3, 3, 3), but mobilefacenet_large expects (256, 3, 3, 3)" in (
        err := _import_error(
        capsys, "arcface_torch", "mobilefacenet_large", mbf_file, tmp_path))
    assert err.rstrip().endswith("the file holds a MobileFaceNet (--arch mobilefacenet)")
    assert "unexpected key layers.0.layers.0.weight" in (err := _import_error(
        capsys, "arcface_torch", "iresnet18", mbf_file, tmp_path))
    assert "(--arch mobilefacenet)" in err
    state = dict(mbf_reference.state_dict())
    state["conv_sep.layers.0.weight"] = state["conv_sep.layers.0.weight"][:, :128]
    torch.save(state, tmp_path / "narrow.pth")
    assert ("conv_sep.layers.0.weight: shape (512, 128, 1, 1), but mobilefacenet expects (512, 256, 1, 1)"
            in _import_error(capsys, "arcface_torch", "mobilefacenet", tmp_path / "narrow.pth", tmp_path))


# ------------------------------------------------------------------------------ train → export → eval


def test_train_on_the_demo_set_then_export_and_eval(tmp_path):
    out = tmp_path / "run"
    assert train_main(["--arch", "mobilefacenet", "--embedding-size", "128", "--output", str(out), "--epochs", "1",
                       "--subset-ids", "4", "--batch-size", "16", "--device", "cpu", "--no-progress"]) == 0
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["arch"] == "mobilefacenet" and saved["space"]["embedding_size"] == 128
    onnx_path = tmp_path / "mbf.onnx"
    assert export_main(["--checkpoint", str(out / "model.pt"), "--output", str(onnx_path), "--batch-size", "2",
                        "--repeats", "1"]) == 0
    data = tmp_path / "bins"
    make_verification_pack(data / "lfw.bin", np.random.default_rng(0), pairs=10, identities=4)
    results = {}
    for name, model in (("onnx", onnx_path), ("pt", out / "model.pt")):
        result = tmp_path / f"{name}.json"
        assert eval_main(["--model", str(model), "--data", str(data), "--protocol", "lfw", "--device", "cpu",
                          "--no-flip", "--batch-size", "20", "--output", str(result)]) == 0
        results[name] = json.loads(result.read_text())["results"]["lfw"]
    assert results["onnx"]["pairs"] == results["pt"]["pairs"] == 10
    assert results["onnx"]["fold_accuracies"] == results["pt"]["fold_accuracies"]
