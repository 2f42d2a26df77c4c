"""The IResNet face search space (ARCHITECTURE §4): genotype.depth = number of IResNet blocks B,
genotype.width = stem width C; per block the op (sep/conv) and kernel (3/5) are searched."""

from __future__ import annotations

from torch import nn

from facerec.errors import FaceRecError
from facerec.model.blocks import IResNet, StagePlan, iresnet_params
from nas_core.genotype import Genotype
from nas_core.space import SPACES

MIN_BLOCKS = 4  # one block per stage at least (D_min 4 blocks = R-10)


def stage_plan(genotype: Genotype) -> StagePlan:
    """Stage s holds blocks [⌊sB/4⌋, ⌊(s+1)B/4⌋): the classifier's fixed-fraction rule (ARCHITECTURE §4)."""
    blocks = genotype.depth
    if blocks < MIN_BLOCKS:
        raise FaceRecError(f"genotype {genotype.key()}: expected depth ≥ {MIN_BLOCKS} blocks (one per stage)")
    layers = list(zip(genotype.ops, genotype.kernels))
    return [layers[s * blocks // 4 : (s + 1) * blocks // 4] for s in range(4)]


def resnet_depth(genotype: Genotype) -> int:
    """Depth the ResNet way: 2 layers per block + stem + FC (R-58 = 28 blocks)."""
    return 2 * genotype.depth + 2


@SPACES.register("iresnet")
class IResNetSpace:
    """IResNetSpace(embedding_size=512, input_size=112, dropout=0.0); ``build`` gives image
    [N, 3, input_size, input_size] → raw embedding [N, embedding_size]."""

    name = "iresnet"

    def __init__(self, embedding_size: int = 512, input_size: int = 112, dropout: float = 0.0):
        self.embedding_size = embedding_size
        self.input_size = input_size
        self.dropout = dropout

    def config(self) -> dict:
        """Space name + kwargs: what a checkpoint stores to rebuild a net of this space."""
        return {
            "name": self.name,
            "embedding_size": self.embedding_size,
            "input_size": self.input_size,
            "dropout": self.dropout,
        }

    def build(self, genotype: Genotype) -> nn.Module:
        model = IResNet(genotype.width, stage_plan(genotype), self.embedding_size, self.input_size, self.dropout)
        model.facenas_architecture = {"genotype": genotype.to_dict(), "space": self.config()}
        return model

    def input_shape(self) -> tuple[int, int, int]:
        """One input image (C, H, W): what MFLOPs and latency are measured on (nas_core.cost)."""
        return (3, self.input_size, self.input_size)

    @staticmethod
    def paper_name(genotype: Genotype) -> str:
        """R-<layers>-<8C>: 2 layers per block + stem + FC; final stage width 8C (R-58-256: 28 blocks, C 32)."""
        return f"R-{resnet_depth(genotype)}-{8 * genotype.width}"

    def count_params(self, genotype: Genotype) -> int:
        return iresnet_params(genotype.width, stage_plan(genotype), self.embedding_size, self.input_size)
