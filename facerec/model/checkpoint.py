"""Face checkpoints: the project's one schema (``nas_core.checkpoint``, ARCHITECTURE §10) plus the fixed
backbones (IResNets, MobileFaceNets), which are rebuilt from ``arch`` + ``space`` (backbone kwargs) instead
of a genotype.
Files load with ``weights_only=True`` so opening a checkpoint never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.errors import FaceRecError
from facerec.model.backbones import create_backbone
from facerec.model.space import IResNetSpace  # noqa: F401  (registers the "iresnet" space)
from nas_core import checkpoint as _schema
from nas_core.errors import NasError
from nas_core.genotype import Genotype


def save_checkpoint(
    path: str | Path,
    *,
    backbone: nn.Module,
    genotype: Genotype | None = None,
    arch: str | None = None,
    space: dict | None = None,
    config: dict | None = None,
    **state: Any,
) -> None:
    """Write the backbone weights with what rebuilds it, atomically.

    Without ``genotype``/``arch``/``space`` the description the backbone was built with is used
    (nets from ``IResNetSpace.build`` and ``create_backbone`` carry one).
    """
    model = backbone.module if hasattr(backbone, "module") else backbone  # unwrap DDP
    architecture = getattr(model, "facenas_architecture", None) or {}
    if genotype is None and arch is None:
        arch = architecture.get("arch")
        genotype = Genotype.from_dict(architecture["genotype"]) if "genotype" in architecture else None
    if genotype is None and arch is None:
        raise FaceRecError(f"{path}: expected a genotype or an arch name to store with the weights")
    if space is None:
        # The built-with settings apply only to the same kind of description (genotype vs arch).
        same_kind = ("genotype" in architecture) == (genotype is not None)
        space = architecture.get("space") if same_kind else None
        space = space or ({"name": "iresnet"} if genotype is not None else {})
    _schema.save_checkpoint(path, state_dict=model.state_dict(), genotype=genotype, arch=arch, space=space,
                            config=config, **state)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """The checkpoint dict, checked for the facenas keys; FaceRecError on anything else."""
    return _schema.read_checkpoint(path, map_location, error=FaceRecError)


def build_from_checkpoint(ckpt: dict, where: str = "checkpoint") -> nn.Module:
    """A fresh (untrained) net of the architecture a checkpoint dict describes."""
    if ckpt.get("genotype") is not None:
        # Older face checkpoints may omit the space name: it was always the IResNet space.
        ckpt = {**ckpt, "space": {"name": "iresnet", **(ckpt.get("space") or {})}}
        return _schema.build_searched(ckpt, where, error=FaceRecError)
    try:
        return create_backbone(ckpt["arch"], **dict(ckpt.get("space") or {}))
    except NasError as exc:
        raise FaceRecError(f"{where}: expected a facenas checkpoint ({exc})") from None
    except TypeError as exc:  # unknown backbone kwargs
        raise FaceRecError(f"{where}: expected a facenas checkpoint (bad 'space' settings: {exc})") from None


def load_backbone(path: str | Path, map_location: Any = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the backbone from the file alone, load its weights, and return it in eval mode
    together with the whole checkpoint dict."""
    ckpt = read_checkpoint(path, map_location)
    model = build_from_checkpoint(ckpt, where=str(path))
    _schema.load_weights(model, ckpt["model"], str(path), error=FaceRecError)
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    return model.eval(), ckpt
