"""facerec-import: arcface_torch and AdaFace weights become facenas checkpoints that every command takes;
facerec-train --init fine-tunes one. State dicts here are written from the published layouts (key names
and shapes), not from our own modules."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facerec.cli.eval import main as eval_main
from facerec.cli.export import main as export_main
from facerec.cli.import_weights import main as import_main
from facerec.cli.train import main as train_main
from facerec.deploy.importers import ARCH_BLOCKS, import_weights
from facerec.model.backbones import create_backbone
from facerec.model.checkpoint import load_backbone, save_checkpoint
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_fixtures import make_verification_pack  # noqa: E402

# ------------------------------------------------------------------------------ published layouts


def _bn(prefix: str, c: int, g: torch.Generator, affine: bool = True) -> dict[str, torch.Tensor]:
    state = {f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
             f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
             f"{prefix}.num_batches_tracked": torch.tensor(1000)}
    if affine:
        state[f"{prefix}.weight"] = 0.5 + torch.rand(c, generator=g)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
    return state


def _conv(cout: int, cin: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5


def arcface_torch_state(blocks=(2, 2, 2, 2), seed: int = 0) -> dict[str, torch.Tensor]:
    """arcface_torch iresnet.py: conv1/bn1/prelu; layer{s}.{j}.{bn1,conv1,bn2,prelu,conv2,bn3} with
    downsample.{0,1} (1x1 stride-2 conv + BN) opening each stage; bn2, fc (with bias), features (BN1d,
    weight fixed at 1)."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": _conv(64, 3, 3, g), **_bn("bn1", 64, g), "prelu.weight": torch.full((64,), 0.25)}
    cin = 64
    for s, n in enumerate(blocks):
        cout = 64 * 2**s
        for j in range(n):
            p = f"layer{s + 1}.{j}"
            state.update(_bn(f"{p}.bn1", cin, g))
            state[f"{p}.conv1.weight"] = _conv(cout, cin, 3, g)
            state.update(_bn(f"{p}.bn2", cout, g))
            state[f"{p}.prelu.weight"] = 0.1 + 0.2 * torch.rand(cout, generator=g)
            state[f"{p}.conv2.weight"] = _conv(cout, cout, 3, g)
            state.update(_bn(f"{p}.bn3", cout, g))
            if j == 0:
                state[f"{p}.downsample.0.weight"] = _conv(cout, cin, 1, g)
                state.update(_bn(f"{p}.downsample.1", cout, g))
            cin = cout
    state.update(_bn("bn2", 512, g))
    state["fc.weight"] = torch.randn(512, 512 * 7 * 7, generator=g) * (1 / (512 * 49)) ** 0.5
    state["fc.bias"] = 0.01 * torch.randn(512, generator=g)
    state.update(_bn("features", 512, g))
    state["features.weight"] = torch.ones(512)
    return state


class AdaFaceBlock(nn.Module):
    """AdaFace net.py BasicBlockIR: res_layer BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN; shortcut
    MaxPool2d(1, stride) when the width stays, else 1x1 conv(stride) + BN."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.res_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                                       nn.BatchNorm2d(cout), nn.PReLU(cout),
                                       nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceIR(nn.Module):
    """AdaFace net.py Backbone (mode 'ir', 112x112): input_layer conv/BN/PReLU, a flat body, output_layer
    BN2d → Dropout → Flatten → Linear → BatchNorm1d(affine=False). Returns the embedding AdaFace would
    L2-normalise (its forward returns (embedding / norm, norm)). Takes BGR input."""

    def __init__(self, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        body, cin = [], 64
        for s, n in enumerate(blocks):
            cout = 64 * 2**s
            for j in range(n):
                body.append(AdaFaceBlock(cin, cout, 2 if j == 0 else 1))
                cin = cout
        self.body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def _calibrated(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, then BN statistics of one batch, so every layer's output is O(1) in eval."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.momentum = None  # cumulative average: one batch sets the running statistics
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(0.1, 0.3)
        net.train()(torch.randn(4, 3, 112, 112))
    return net.eval()


def lightning_ckpt(net: nn.Module, **extra) -> dict:
    """What AdaFace's Lightning Trainer saves: the net under model.*, its margin head under head.*."""
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state.update({"head.kernel": torch.randn(512, 10), "head.t": torch.zeros(1),
                  "head.batch_mean": torch.ones(1) * 20, "head.batch_std": torch.ones(1) * 100})
    return {"epoch": 25, "global_step": 1000, "pytorch-lightning_version": "1.8.6", "state_dict": state, **extra}


@pytest.fixture(scope="module")
def adaface18():
    return _calibrated(AdaFaceIR())


@pytest.fixture(scope="module")
def adaface_file(adaface18, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("adaface") / "adaface_ir18.ckpt"
    torch.save(lightning_ckpt(adaface18), path)
    return path


@pytest.fixture(scope="module")
def arcface_state() -> dict:
    return arcface_torch_state()


@pytest.fixture(scope="module")
def arcface_file(arcface_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(arcface_state, path)
    return path


# ------------------------------------------------------------------------------ mapping and numbers


def test_arch_table_matches_the_backbones():
    for arch, blocks in ARCH_BLOCKS.items():
        with torch.device("meta"):
            model = create_backbone(arch)
        assert tuple(len(getattr(model, f"layer{s}")) for s in (1, 2, 3, 4)) == blocks


def test_arcface_torch_loads_key_for_key(arcface_file):
    model, notes = import_weights(arcface_file, "arcface_torch", "iresnet18")
    source = torch.load(arcface_file, weights_only=True)
    ours = model.state_dict()
    assert notes == [] and sorted(ours) == sorted(source)
    for key, value in source.items():
        assert torch.equal(ours[key], value), key


def test_adaface_keys_map_onto_ours(adaface18, adaface_file):
    model, _ = import_weights(adaface_file, "adaface", "iresnet18")
    ours, theirs = model.state_dict(), adaface18.state_dict()
    assert torch.equal(ours["conv1.weight"], theirs["input_layer.0.weight"].flip(1))  # BGR → RGB
    assert torch.equal(ours["bn1.running_var"], theirs["input_layer.1.running_var"])
    assert torch.equal(ours["prelu.weight"], theirs["input_layer.2.weight"])
    # body.{i}: stage from the output width; block inside it in order
    for body, layer in ((0, "layer1.0"), (1, "layer1.1"), (2, "layer2.0"), (5, "layer3.1"), (7, "layer4.1")):
        for adaface, mine in (("res_layer.0.weight", "bn1.weight"), ("res_layer.1.weight", "conv1.weight"),
                              ("res_layer.2.running_mean", "bn2.running_mean"), ("res_layer.3.weight", "prelu.weight"),
                              ("res_layer.4.weight", "conv2.weight"), ("res_layer.5.bias", "bn3.bias")):
            assert torch.equal(ours[f"{layer}.{mine}"], theirs[f"body.{body}.{adaface}"]), (body, adaface)
    assert torch.equal(ours["layer2.0.downsample.0.weight"], theirs["body.2.shortcut_layer.0.weight"])
    assert torch.equal(ours["layer4.0.downsample.1.running_var"], theirs["body.6.shortcut_layer.1.running_var"])
    # MaxPool2d(1, 2) shortcut of layer1.0 → identity 1x1 conv + identity BN
    assert torch.equal(ours["layer1.0.downsample.0.weight"][:, :, 0, 0], torch.eye(64))
    assert torch.equal(ours["layer1.0.downsample.1.running_mean"], torch.zeros(64))
    assert torch.equal(ours["bn2.weight"], theirs["output_layer.0.weight"])
    assert torch.equal(ours["fc.weight"], theirs["output_layer.3.weight"])
    assert torch.equal(ours["features.running_var"], theirs["output_layer.4.running_var"])
    assert torch.equal(ours["features.weight"], torch.ones(512)) and torch.equal(ours["features.bias"], torch.zeros(512))


def test_adaface_import_gives_the_same_embedding(adaface18, adaface_file):
    model, _ = import_weights(adaface_file, "adaface", "iresnet18")
    rgb = torch.rand(2, 3, 112, 112) * 2 - 1
    # In float64 the two nets agree to rounding: the mapping itself is exact.
    reference = AdaFaceIR().double()
    reference.load_state_dict(adaface18.state_dict())
    with torch.no_grad():
        expected = reference.eval()(rgb.double().flip(1))  # AdaFace reads BGR
        got = copy.deepcopy(model).double()(rgb.double())
    assert expected.abs().max() > 0.5  # a real signal, not a vanishing one
    assert (got - expected).abs().max().item() <= 1e-5
    # In float32 reversing conv1's input channels changes its summation order (an ulp), which 18 layers of
    # random weights amplify to ~1e-5 absolute; relative to the embedding it stays at float32 rounding.
    with torch.no_grad():
        expected, got = adaface18(rgb.flip(1)), model(rgb)
    assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max().item() <= 1e-5


def test_lightning_objects_are_skipped_never_run(adaface18, tmp_path, capsys):
    """A ckpt holding hyper-parameters that weights_only refuses still imports; the objects are not built."""
    marker = tmp_path / "ran"
    path = tmp_path / "adaface.ckpt"
    torch.save(lightning_ckpt(adaface18, hyper_parameters=argparse.Namespace(arch="ir_18"),
                              callbacks={"tripwire": _Tripwire(marker)}), path)
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)
    out = tmp_path / "model.pt"
    assert import_main(["--format", "adaface", "--arch", "iresnet18", "--weights", str(path),
                        "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "argparse.Namespace" in printed and "skipped" in printed
    assert not marker.exists()
    model, _ = load_backbone(out)
    reference, _ = import_weights(_edited(tmp_path, lightning_ckpt(adaface18), "plain.ckpt"), "adaface", "iresnet18")
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def _touch(path: str) -> None:
    Path(path).write_text("ran")


class _Tripwire:
    """Unpickling this with plain pickle writes a file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return _touch, (str(self.path),)


# ------------------------------------------------------------------------------ every command takes it


def test_import_then_export_then_eval(arcface_file, tmp_path, capsys):
    ckpt = tmp_path / "r18.pt"
    assert import_main(["--format", "arcface_torch", "--arch", "iresnet18", "--weights", str(arcface_file),
                        "--output", str(ckpt)]) == 0
    assert "wrote" in capsys.readouterr().out
    saved = torch.load(ckpt, weights_only=True)
    assert saved["arch"] == "iresnet18" and saved["config"]["imported"]["format"] == "arcface_torch"

    onnx_path = tmp_path / "r18.onnx"  # a small parity batch and one timing run: IResNet-18 is slow on CI CPUs
    assert export_main(["--checkpoint", str(ckpt), "--output", str(onnx_path), "--batch-size", "2", "--repeats", "1"]) == 0
    assert onnx_path.is_file()
    data = tmp_path / "bins"
    make_verification_pack(data / "lfw.bin", np.random.default_rng(0), pairs=10, identities=4)
    results = {}
    for name, model in (("onnx", onnx_path), ("pt", ckpt)):
        out = tmp_path / f"{name}.json"
        assert eval_main(["--model", str(model), "--data", str(data), "--protocol", "lfw", "--device", "cpu",
                          "--no-flip", "--batch-size", "20", "--output", str(out)]) == 0
        results[name] = json.loads(out.read_text())["results"]["lfw"]
    assert results["onnx"]["pairs"] == results["pt"]["pairs"] == 10
    assert results["onnx"]["fold_accuracies"] == results["pt"]["fold_accuracies"]


TINY = Genotype.uniform(4, 4)


def _tiny_checkpoint(path: Path) -> dict:
    torch.manual_seed(5)
    model = _calibrated(IResNetSpace(embedding_size=64).build(TINY))
    save_checkpoint(path, backbone=model)
    return model.state_dict()


def _train_args(pack: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(pack), "--output", str(out), "--batch-size", "8", "--epochs", "1", "--lr", "0.01",
            "--workers", "0", "--holdout-ids", "2", "--no-progress", *extra]


def test_train_init_starts_a_new_run_from_the_checkpoint_weights(tiny_pack, tmp_path):
    start = tmp_path / "start.pt"
    weights = {k: v.clone() for k, v in _tiny_checkpoint(start).items()}
    out = tmp_path / "run"
    # lr 0: the trained weights must be exactly the --init ones, while BN statistics show the steps ran.
    assert train_main(_train_args(tiny_pack, out, "--init", str(start), "--lr", "0")) == 0
    trained = torch.load(out / "model.pt", weights_only=True)
    assert trained["genotype"] == TINY.to_dict() and trained["space"]["embedding_size"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and 1 <= metrics["global_step"] <= 6  # 48 images / batch 8, from step 0
    log = (out / "train.log").read_text()
    assert "weights from" in log and "resumed" not in log
    for key, value in weights.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(trained["model"][key], value), key
    assert not torch.equal(trained["model"]["bn1.running_mean"], weights["bn1.running_mean"])


def test_train_init_and_resume_exclude_each_other(tiny_pack, tmp_path, capsys):
    for name in ("a.pt", "b.pt"):
        (tmp_path / name).write_bytes(b"")
    args = _train_args(tiny_pack, tmp_path / "o", "--init", str(tmp_path / "a.pt"), "--resume", str(tmp_path / "b.pt"))
    assert train_main(args) == 2
    assert capsys.readouterr().err == "error: --resume: expected either --resume or --init, not both\n"


@pytest.mark.parametrize("bad", ["garbage", "missing", "other_net"])
def test_train_init_bad_file_exits_2_before_writing(bad, tiny_pack, tmp_path, capsys):
    path = tmp_path / "init.pt"
    extra = []
    if bad == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif bad == "other_net":
        _tiny_checkpoint(path)
        extra = ["--arch", "iresnet18"]
    out = tmp_path / "run"
    assert train_main(_train_args(tiny_pack, out, "--init", str(path), *extra)) == 2
    err = capsys.readouterr().err
    # a missing file is refused as the flag is parsed, a bad one when the job reads it: both before OUT exists
    said = f"error: --init {path}: expected" if bad == "missing" else f"error: {path}: expected"
    assert err.startswith(said) and err.count("\n") == 1
    assert not out.exists()


# ------------------------------------------------------------------------------ bad input


def _run_import(capsys, *argv: str) -> str:
    assert import_main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _edited(tmp_path: Path, obj, name: str = "edited.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_bad_format_and_arch(arcface_file, tmp_path, capsys):
    out = tmp_path / "model.pt"
    common = ["--weights", str(arcface_file), "--output", str(out)]
    assert "--format insightface: expected one of adaface, arcface_torch" in _run_import(
        capsys, "--format", "insightface", "--arch", "iresnet18", *common)
    assert "--arch iresnet200: expected one of iresnet18" in _run_import(
        capsys, "--format", "arcface_torch", "--arch", "iresnet200", *common)
    assert not out.exists()


def _shape(state):
    state["fc.weight"] = state["fc.weight"][:, :100]


def _se_block(ckpt):
    ckpt["state_dict"]["model.body.3.res_layer.6.fc1.weight"] = torch.zeros(8, 64, 1, 1)


def _adaface_shape(ckpt):
    ckpt["state_dict"]["model.body.4.res_layer.4.weight"] = torch.zeros(256, 256, 1, 1)


# case → (layout written, --format, --arch, in-place edit of it or None, what the one error line says)
BAD_FILES = {
    "shape": ("arcface_torch", "arcface_torch", "iresnet18", _shape,
              "fc.weight: shape (512, 100), but iresnet18 expects (512, 25088)"),
    "missing": ("arcface_torch", "arcface_torch", "iresnet18", lambda state: state.pop("layer3.1.bn2.running_var"),
                "missing key layer3.1.bn2.running_var"),
    "unexpected": ("arcface_torch", "arcface_torch", "iresnet18",
                   lambda state: state.update({"layer1.0.se.weight": torch.zeros(3)}),
                   "unexpected key layer1.0.se.weight"),
    "not_a_tensor": ("arcface_torch", "arcface_torch", "iresnet18", lambda state: state.update({"fc.weight": "w"}),
                     "fc.weight: expected a tensor"),
    "wrong_arch": ("arcface_torch", "arcface_torch", "iresnet34", None,
                   "missing key layer1.2.bn1.weight; expected an arcface_torch backbone.pth (an IResNet or MobileFaceNet "
                   "state dict) "
                   "of iresnet34; the file holds 2/2/2/2 blocks per stage (--arch iresnet18)"),
    "adaface_as_arcface": ("adaface", "arcface_torch", "iresnet18", None, "this looks like --format adaface"),
    "arcface_as_adaface": ("arcface_torch", "adaface", "iresnet18", None, "this looks like --format arcface_torch"),
    "adaface_wrong_arch": ("adaface", "adaface", "iresnet34", None,
                           "missing key body.2.res_layer.0.weight (our layer1.2.bn1.weight)"),
    "adaface_se": ("adaface", "adaface", "iresnet18", _se_block, "unexpected key body.3.res_layer.6.fc1.weight"),
    "adaface_shape": ("adaface", "adaface", "iresnet18", _adaface_shape,
                      "body.4.res_layer.4.weight (our layer3.0.conv2.weight): shape (256, 256, 1, 1)"),
    "adaface_missing": ("adaface", "adaface", "iresnet18",
                        lambda ckpt: ckpt["state_dict"].pop("model.output_layer.3.bias"),
                        "missing key output_layer.3.bias (our fc.bias)"),
    "adaface_unexpected": ("adaface", "adaface", "iresnet18",
                           lambda ckpt: ckpt["state_dict"].update({"optimizer.step": torch.zeros(1)}),
                           "unexpected key optimizer.step"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_weight_file_exits_2_naming_the_first_bad_key(case, arcface_state, arcface_file, adaface18, adaface_file,
                                                          tmp_path, capsys):
    layout, fmt, arch, edit, message = BAD_FILES[case]
    weights = adaface_file if layout == "adaface" else arcface_file
    if edit is not None:
        obj = lightning_ckpt(adaface18) if layout == "adaface" else dict(arcface_state)
        edit(obj)
        weights = _edited(tmp_path, obj)
    out = tmp_path / "model.pt"
    err = _run_import(capsys, "--format", fmt, "--arch", arch, "--weights", str(weights), "--output", str(out))
    assert message in err
    assert not out.exists()


def test_missing_garbage_and_non_dict_weight_files(tmp_path, capsys):
    out = tmp_path / "model.pt"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01 definitely not torch")
    for weights, message in ((tmp_path / "nope.pth", "file not found"), (garbage, "not a file torch.save wrote"),
                             (_edited(tmp_path, [1, 2]), "found list")):
        assert message in _run_import(capsys, "--format", "arcface_torch", "--arch", "iresnet18",
                                      "--weights", str(weights), "--output", str(out))
    assert not out.exists()


def test_output_is_replaced_atomically_or_refused(arcface_file, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"old")
    assert import_main(["--format", "arcface_torch", "--arch", "iresnet18", "--weights", str(arcface_file),
                        "--output", str(out)]) == 0
    assert torch.load(out, weights_only=True)["arch"] == "iresnet18"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left beside it
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "expected a file name" in _run_import(capsys, "--format", "arcface_torch", "--arch", "iresnet18",
                                                 "--weights", str(arcface_file), "--output", str(folder))
    assert list(folder.iterdir()) == []
