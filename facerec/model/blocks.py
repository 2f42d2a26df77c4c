"""IResNet building blocks shared by the search space and the fixed IResNet-18/34/50/100 (ARCHITECTURE §4).

Module names follow InsightFace's arcface_torch ``iresnet.py`` (conv1, bn1, prelu, layer1..4, bn2,
dropout, fc, features; blocks bn1/conv1/bn2/prelu/conv2/bn3/downsample), so a fixed IResNet built
here loads an arcface_torch state dict as is. A "sep" conv is a Sequential (depthwise, pointwise),
so only all-"conv" nets share InsightFace's key names.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facerec.errors import FaceRecError

# (op, kernel) per block, one list per stage; stage s has width C·2^s (ARCHITECTURE §4).
StagePlan = Sequence[Sequence[tuple[str, int]]]

_BN_EPS = 1e-5  # arcface_torch passes eps=1e-05 explicitly everywhere
# Far above any face backbone (IResNet-100: 65M; the paper's searched nets: 15-37M), far below what would
# exhaust memory the moment the net is built: widths and embedding sizes come from files.
MAX_PARAMS = 10**10


def make_conv(cin: int, cout: int, op: str, kernel: int, stride: int = 1) -> nn.Module:
    """The searched convolution: "sep" = depthwise k×k (carries the stride) → pointwise 1x1, nothing
    between them (ARCHITECTURE §3/§4); "conv" = one plain k×k. No bias: a BN always follows."""
    pad = kernel // 2
    if op == "conv":
        return nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
    if op == "sep":
        return nn.Sequential(
            nn.Conv2d(cin, cin, kernel, stride, pad, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )
    raise FaceRecError(f"{op}: unknown op; expected 'sep' or 'conv'")


def _conv_params(cin: int, cout: int, op: str, kernel: int) -> int:
    if op == "conv":
        return cin * cout * kernel * kernel
    return cin * kernel * kernel + cin * cout


class IResNetBlock(nn.Module):
    """BN → conv(k) → BN → PReLU → conv(k, stride) → BN, plus shortcut; no activation after the add."""

    def __init__(self, cin: int, cout: int, stride: int = 1, op: str = "conv", kernel: int = 3):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=_BN_EPS)
        self.conv1 = make_conv(cin, cout, op, kernel)
        self.bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = make_conv(cout, cout, op, kernel, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=_BN_EPS)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


def block_params(cin: int, cout: int, stride: int, op: str, kernel: int) -> int:
    """Closed form of ``IResNetBlock`` parameters (BN affine 2c, PReLU c)."""
    total = 2 * cin + _conv_params(cin, cout, op, kernel) + 3 * cout
    total += _conv_params(cout, cout, op, kernel) + 2 * cout
    if stride != 1 or cin != cout:
        total += cin * cout + 2 * cout
    return total


def _feature_size(input_size: int) -> int:
    if input_size < 16 or input_size % 16:
        raise FaceRecError(f"input_size {input_size}: expected a multiple of 16 (four stride-2 stages, 112 → 7)")
    return input_size // 16


def _check_settings(width, embedding_size, input_size, dropout) -> None:
    # A checkpoint's space settings reach here as read: wrong types and ranges are user errors.
    for name, value in (("width", width), ("embedding_size", embedding_size), ("input_size", input_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FaceRecError(f"IResNet: expected a positive integer {name}, got {value!r:.40}")
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise FaceRecError(f"IResNet: expected a dropout probability in [0, 1), got {dropout!r:.40}")


class IResNet(nn.Module):
    """Stem conv3x3 → BN → PReLU at C; four stages C, 2C, 4C, 8C, each opening with a stride-2 block;
    embedding head BN2d → Dropout → flatten → Linear(8C·s·s → d) → BN1d. Output: raw embedding."""

    def __init__(
        self,
        width: int,
        stages: StagePlan,
        embedding_size: int = 512,
        input_size: int = 112,
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(stages) != 4 or any(len(stage) == 0 for stage in stages):
            raise FaceRecError("IResNet: expected four stages of at least one block each")
        _check_settings(width, embedding_size, input_size, dropout)
        params = iresnet_params(width, stages, embedding_size, input_size)
        if params > MAX_PARAMS:
            raise FaceRecError(f"IResNet: expected a net under {MAX_PARAMS:.0e} parameters, width {width} and "
                               f"embedding size {embedding_size} give {params:.3g}")
        side = _feature_size(input_size)
        self.embedding_size = self.num_features = embedding_size
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=_BN_EPS)
        self.prelu = nn.PReLU(width)
        cin = width
        for s, stage in enumerate(stages):
            cout = width * 2**s
            blocks = []
            for i, (op, kernel) in enumerate(stage):
                blocks.append(IResNetBlock(cin, cout, 2 if i == 0 else 1, op, kernel))
                cin = cout
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(cin, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cin * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=_BN_EPS)
        # arcface_torch fixes the embedding BN scale at 1 (kept: the parameter counts of the
        # reference nets include it; the embedding norm AdaFace reads then comes from the fc).
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        # timm's data config reads this: input convention of ARCHITECTURE §6.
        self.pretrained_cfg = {
            "input_size": (3, input_size, input_size),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "num_classes": 0,
        }
        # What rebuilds this net (set by the space / backbone registry; read by save_checkpoint).
        self.facenas_architecture: dict = {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(self.forward_features(x)), 1))
        return self.features(self.fc(x))


def iresnet_params(width: int, stages: StagePlan, embedding_size: int = 512, input_size: int = 112) -> int:
    """Closed form of ``IResNet(...)`` parameters (all of them, the frozen embedding BN scale too)."""
    side = _feature_size(input_size)
    total = 3 * width * 9 + 3 * width  # stem conv, BN, PReLU
    cin = width
    for s, stage in enumerate(stages):
        cout = width * 2**s
        for i, (op, kernel) in enumerate(stage):
            total += block_params(cin, cout, 2 if i == 0 else 1, op, kernel)
            cin = cout
    total += 2 * cin + cin * side * side * embedding_size + embedding_size + 2 * embedding_size
    return total
