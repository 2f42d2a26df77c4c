"""The paper's classification FCN and its search space "fcn" (ARCHITECTURE §3).

stem conv3x3(in→2C) → BN (no ReLU); L layers ReLU → op → BN, where layer i is a reduction
(stride 2, channels ×2) when i == L//3 or i == 2L//3 and layer 0 maps 2C → C; head global
average pool → Linear. No skip connections, no biases except the Linear's, BN affine on.
"""

from __future__ import annotations

from torch import Tensor, nn

from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.space import SPACES


def layer_channels(genotype: Genotype) -> list[tuple[int, int, int]]:
    """(in channels, out channels, stride) of every layer; the one place the stage rule lives."""
    depth, width = genotype.depth, genotype.width
    reductions = {depth // 3, 2 * depth // 3}
    plan, cin, cout = [], 2 * width, width
    for i in range(depth):
        stride = 1
        if i in reductions:
            cout, stride = cout * 2, 2
        plan.append((cin, cout, stride))
        cin = cout
    return plan


def _op(kind: str, cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
    pad = kernel // 2
    if kind == "conv":
        return nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
    # sep: the depthwise conv carries the stride; nothing between it and the pointwise (reference code)
    return nn.Sequential(
        nn.Conv2d(cin, cin, kernel, stride, pad, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
    )


class FCN(nn.Module):
    def __init__(self, genotype: Genotype, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.genotype = genotype
        width = genotype.width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 2 * width, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * width))
        layers = []
        for (cin, cout, stride), op, kernel in zip(layer_channels(genotype), genotype.ops, genotype.kernels):
            layers.append(nn.Sequential(nn.ReLU(inplace=False), _op(op, cin, cout, kernel, stride), nn.BatchNorm2d(cout)))
        self.layers = nn.Sequential(*layers)
        final = layer_channels(genotype)[-1][1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(final, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.stem(x))
        return self.classifier(self.pool(x).flatten(1))


@SPACES.register("fcn")
class ClassifierSpace:
    """The FCN search space bound to a task (input channels, number of classes, side of the images it
    trains on: 32 for CIFAR and the 28x28 sets, which train on 32x32 crops; 8 for digits)."""

    name = "fcn"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        if int(in_channels) < 1 or int(num_classes) < 2 or int(image_size) < 1:
            raise NasError(f"fcn space: expected in_channels >= 1, num_classes >= 2 and image_size >= 1, got "
                           f"{in_channels}, {num_classes}, {image_size}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)

    @property
    def task(self) -> dict[str, int]:
        """Constructor arguments: saved with a run so replay and checkpoints rebuild the space (the image
        size only when it is not the paper's 32, so runs from before it was a setting read the same)."""
        task = {"in_channels": self.in_channels, "num_classes": self.num_classes}
        return task if self.image_size == 32 else {**task, "image_size": self.image_size}

    def input_shape(self) -> tuple[int, int, int]:
        """One training image (C, H, W): what MFLOPs and latency are measured on (nas_core.cost)."""
        return (self.in_channels, self.image_size, self.image_size)

    def config(self) -> dict[str, int | str]:
        """Space name + task: what a checkpoint stores to rebuild a net of this space."""
        return {"name": self.name, **self.task}

    def build(self, genotype: Genotype) -> nn.Module:
        return FCN(genotype, self.in_channels, self.num_classes)

    def count_params(self, genotype: Genotype) -> int:
        # ARCHITECTURE §3 closed form; BN affine counts 2 per channel.
        width = genotype.width
        total = self.in_channels * 2 * width * 9 + 2 * (2 * width)
        for (cin, cout, _), op, k in zip(layer_channels(genotype), genotype.ops, genotype.kernels):
            total += (cin * cout * k * k if op == "conv" else cin * k * k + cin * cout) + 2 * cout
        final = layer_channels(genotype)[-1][1]
        return total + final * self.num_classes + self.num_classes

    def __repr__(self) -> str:
        return (f"ClassifierSpace(in_channels={self.in_channels}, num_classes={self.num_classes}, "
                f"image_size={self.image_size})")
