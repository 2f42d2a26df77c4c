"""Fixed IResNet-18/34/50/100 and MobileFaceNet references (InsightFace arcface_torch layouts) and found
nets in timm.

Built from the same blocks as the search space (all blocks plain 3x3 convs, widths 64/128/256/512,
512-d embedding). With arcface_torch's details (fc with bias, affine embedding BN whose scale is
frozen at 1, no bias on convs) IResNet-18 has 24,025,600 and IResNet-50 43,590,848 parameters.
MobileFaceNets (facerec.model.mobilefacenet): ``mobilefacenet`` (get_mbf, 2,059,520 parameters) and
``mobilefacenet_large`` (get_mbf_large, 6,314,880).
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import nn

from facerec.errors import FaceRecError
from facerec.model.blocks import IResNet
from facerec.model.mobilefacenet import MOBILEFACENETS, fixed_mobilefacenet
from facerec.model.space import IResNetSpace
from nas_core.genotype import Genotype
from nas_core.registry import Registry

# timm's register_model appends each "facenas_*" entrypoint to this list.
__all__ = ["BACKBONES", "create_backbone", "list_backbones", "register_genotype"]

BACKBONES = Registry("backbone")

# Blocks per stage, from arcface_torch get_model (r18, r34, r50, r100).
_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
_TIMM_PREFIX = "facenas_"
_GENOTYPES: dict[str, tuple[Genotype, dict]] = {}  # found nets added by register_genotype
# timm.create_model passes these to every entrypoint; our nets have no pretrained weights to fetch.
_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _fixed_iresnet(arch: str, embedding_size: int = 512, input_size: int = 112, dropout: float = 0.0) -> IResNet:
    stages = [[("conv", 3)] * n for n in _LAYERS[arch]]
    model = IResNet(64, stages, embedding_size, input_size, dropout)
    model.facenas_architecture = {
        "arch": arch,
        "space": {"embedding_size": embedding_size, "input_size": input_size, "dropout": dropout},
    }
    return model


def _add_fixed(arch: str, make) -> None:
    def build(**kw: Any) -> nn.Module:
        return make(arch, **kw)

    build.__name__ = arch
    BACKBONES.register(arch)(build)
    _register_in_timm(_TIMM_PREFIX + arch, build)


def _register_in_timm(timm_name: str, build) -> None:
    def entrypoint(pretrained: bool = False, **kw: Any) -> nn.Module:
        if pretrained:
            raise FaceRecError(f"{timm_name}: no pretrained weights; load a facenas checkpoint instead")
        for key in _TIMM_ONLY:
            kw.pop(key, None)
        return build(**kw)

    entrypoint.__name__ = timm_name
    entrypoint.__module__ = __name__
    globals()[timm_name] = entrypoint  # timm lists the name in this module's __all__: make it importable
    register_model(entrypoint)


for _arch in _LAYERS:
    _add_fixed(_arch, _fixed_iresnet)
for _arch in MOBILEFACENETS:
    _add_fixed(_arch, fixed_mobilefacenet)


def create_backbone(name: str, **kw: Any) -> nn.Module:
    """A fixed backbone ("iresnet18" ... "iresnet100", "mobilefacenet", "mobilefacenet_large") or a net added
    by ``register_genotype``."""
    return BACKBONES.create(name, **kw)


def list_backbones(pattern: str = "*") -> list[str]:
    return BACKBONES.list(pattern)


def register_genotype(name: str, genotype: Genotype, **space_kw: Any) -> str:
    """Register a found net under ``name`` here and as ``facenas_<name>`` in timm; returns the timm name.

    ``space_kw`` (embedding_size, input_size, dropout) become the defaults; create-time kwargs override.
    Registering the same name again with the same genotype is a no-op.
    """
    if name in _LAYERS or name in MOBILEFACENETS:
        raise FaceRecError(f"{name}: name taken by a fixed backbone; pick another name for the genotype")

    def build(**kw: Any) -> nn.Module:
        return IResNetSpace(**{**space_kw, **kw}).build(genotype)

    build.__name__ = name
    timm_name = _TIMM_PREFIX + name
    known = _GENOTYPES.get(name)
    if known is not None:
        if known != (genotype, space_kw):
            raise FaceRecError(f"{name}: already registered with another genotype ({known[0].key()})")
        return timm_name
    _GENOTYPES[name] = (genotype, dict(space_kw))
    BACKBONES.register(name)(build)
    _register_in_timm(timm_name, build)
    return timm_name

