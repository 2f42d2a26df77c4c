"""MobileFaceNet (Chen et al., "MobileFaceNets", 2018) in the layout of InsightFace arcface_torch's
``get_mbf`` / ``get_mbf_large``, so that its ``backbone.pth`` loads key for key (ARCHITECTURE §4).

The net, as arcface_torch builds it at width scale S (2; large 4) with blocks (b1, b2, b3, b4) per stage
((1, 4, 6, 2); large (2, 8, 12, 4)):
- ``layers.0``: conv 3x3 stride 2 (3 → 64S) → BN → PReLU.
- ``layers.1``: for b1 = 1 a grouped conv 3x3 (64S → 64S, 64 groups, *not* depthwise: each group maps 2S
  channels onto 2S) → BN → PReLU; for b1 > 1 a residual stage of b1 bottlenecks with 128 expansion channels.
- ``layers.2..7``: stride-2 bottleneck, residual stage, in three rounds: 64S → 64S (expansion 128, then
  stage of b2 with 128), 64S → 128S (256, then b3 with 256), 128S → 128S (512, then b4 with 256). The
  expansion widths are arcface_torch's constants and do not grow with S.
- A bottleneck ("DepthWise") is conv 1x1 → BN → PReLU, depthwise 3x3 (carries the stride) → BN → PReLU,
  conv 1x1 → BN with no activation, plus the input when it is residual (every block of a stage is).
- ``conv_sep``: conv 1x1 (128S → 512) → BN → PReLU.
- ``features`` (GDC): depthwise 7x7 conv without padding (input_size / 16; the global depthwise conv) →
  BN → flatten → Linear(512 → d, no bias) → BN1d (affine, trained). Output: raw d-d embedding.
Every conv is bias-free; BatchNorm eps 1e-5 and PReLU 0.25 (PyTorch's defaults, which arcface_torch
keeps). Weights start as arcface_torch starts them: Kaiming-normal (fan_out, ReLU gain) for convs and the
Linear, BN scale 1 and shift 0.

Key names come from arcface_torch's nesting: each conv unit keeps its modules under ``layers`` (``conv_sep.
layers.{0,1,2}``), a bottleneck holds its three units under ``layers`` and a residual stage its
bottlenecks (``layers.3.layers.0.layers.1.layers.0.weight`` is stage 2's first depthwise conv). Our one
container type, ``_Chain``, gives every level that name. ``--dropout`` (not in arcface_torch) applies
before the Linear, inside the parameter-free flatten slot, so the keys stay the same.
At 112x112 with a 512-d embedding, get_mbf(False, 512) has 2,059,520 parameters and get_mbf_large 6,314,880.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.errors import FaceRecError

# arcface_torch's get_mbf and get_mbf_large: (blocks per stage, width scale S).
MOBILEFACENETS = {"mobilefacenet": ((1, 4, 6, 2), 2), "mobilefacenet_large": ((2, 8, 12, 4), 4)}
# The three stride-2 rounds: input and output width in units of 64S, then the expansion widths of the
# stride-2 bottleneck and of the residual stage after it (arcface_torch's constants, not scaled with S).
_ROUNDS = ((1, 1, 128, 128), (1, 2, 256, 256), (2, 2, 512, 256))
_STEM_GROUPS = 64  # layers.1 when b1 = 1: a 64-group 3x3 conv
_HEAD_WIDTH = 512  # conv_sep's output and the GDC width, fixed in arcface_torch


class _Chain(nn.Module):
    """Modules applied in order, held under ``layers`` as arcface_torch names them; plus the input when
    ``residual``."""

    def __init__(self, *modules: nn.Module, residual: bool = False):
        super().__init__()
        self.layers = nn.Sequential(*modules)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


def _unit(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, prelu: bool = True,
          pad: int | None = None) -> _Chain:
    """conv (no bias; padding k//2 unless given) → BN [→ PReLU]."""
    pad = kernel // 2 if pad is None else pad
    modules = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return _Chain(*modules, nn.PReLU(cout)) if prelu else _Chain(*modules)


def _bottleneck(cin: int, cout: int, expansion: int, stride: int, residual: bool) -> _Chain:
    return _Chain(_unit(cin, expansion), _unit(expansion, expansion, 3, stride, groups=expansion),
                  _unit(expansion, cout, prelu=False), residual=residual)


def _stage(width: int, blocks: int, expansion: int) -> _Chain:
    return _Chain(*[_bottleneck(width, width, expansion, 1, residual=True) for _ in range(blocks)])


def _check(blocks, scale, embedding_size, input_size, dropout) -> None:
    # A checkpoint's space settings reach here as read: wrong types and ranges are user errors.
    values = {"scale": scale, "embedding_size": embedding_size, "input_size": input_size}
    values.update({f"blocks[{i}]": b for i, b in enumerate(blocks)})
    if len(blocks) != 4:
        raise FaceRecError(f"MobileFaceNet: expected 4 block counts, got {list(blocks)!r:.40}")
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FaceRecError(f"MobileFaceNet: expected a positive integer {name}, got {value!r:.40}")
    if input_size % 16:
        raise FaceRecError(f"MobileFaceNet: input_size {input_size}: expected a multiple of 16 (112 → 7)")
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise FaceRecError(f"MobileFaceNet: expected a dropout probability in [0, 1), got {dropout!r:.40}")


class MobileFaceNet(nn.Module):
    """arcface_torch's MobileFaceNet (module docstring) for RGB input (x/255 − 0.5)/0.5 of input_size².
    Output: the raw ``embedding_size``-d embedding."""

    def __init__(self, blocks: tuple[int, ...] = (1, 4, 6, 2), scale: int = 2, embedding_size: int = 512,
                 input_size: int = 112, dropout: float = 0.0):
        super().__init__()
        blocks = tuple(blocks)
        _check(blocks, scale, embedding_size, input_size, dropout)
        self.embedding_size = self.num_features = embedding_size
        narrow, wide = 64 * scale, 128 * scale  # the widths of the first and the last stage
        self.layers = nn.ModuleList([_unit(3, narrow, 3, 2)])
        if blocks[0] == 1:
            self.layers.append(_unit(narrow, narrow, 3, groups=_STEM_GROUPS))
        else:
            self.layers.append(_stage(narrow, blocks[0], _ROUNDS[0][3]))
        for (cin, cout, down, expansion), count in zip(_ROUNDS, blocks[1:]):
            self.layers.append(_bottleneck(narrow * cin, narrow * cout, down, 2, residual=False))
            self.layers.append(_stage(narrow * cout, count, expansion))
        self.conv_sep = _unit(wide, _HEAD_WIDTH)
        side = input_size // 16
        self.features = _Chain(_unit(_HEAD_WIDTH, _HEAD_WIDTH, side, groups=_HEAD_WIDTH, prelu=False, pad=0),
                               nn.Sequential(nn.Flatten(), nn.Dropout(dropout)),
                               nn.Linear(_HEAD_WIDTH, embedding_size, bias=False), nn.BatchNorm1d(embedding_size))
        self._init_weights()
        # timm's data config reads this: input convention of ARCHITECTURE §6.
        self.pretrained_cfg = {"input_size": (3, input_size, input_size), "mean": (0.5, 0.5, 0.5),
                               "std": (0.5, 0.5, 0.5), "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": 0}
        # What rebuilds this net (set by the backbone registry; read by save_checkpoint).
        self.facenas_architecture: dict = {}

    def _init_weights(self) -> None:
        # arcface_torch's start; BN (scale 1, shift 0) and PReLU (0.25) keep PyTorch's defaults, as there.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.conv_sep(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.forward_features(x))


def fixed_mobilefacenet(arch: str, embedding_size: int = 512, input_size: int = 112,
                        dropout: float = 0.0) -> MobileFaceNet:
    """The ``arch`` MobileFaceNet of MOBILEFACENETS, carrying what rebuilds it."""
    blocks, scale = MOBILEFACENETS[arch]
    model = MobileFaceNet(blocks, scale, embedding_size, input_size, dropout)
    model.facenas_architecture = {
        "arch": arch,
        "space": {"embedding_size": embedding_size, "input_size": input_size, "dropout": dropout},
    }
    return model
