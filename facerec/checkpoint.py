"""Checkpoints that rebuild their own model (DESIGN §2, STYLE "config in the checkpoint").

A file holds ``{"model": state_dict, "genotype": dict | None, "arch": str | None, "space": {...},
"config": {...}, **state}``. ``genotype`` + ``space`` (search-space name and kwargs) rebuild a
searched net; ``arch`` + ``space`` (backbone kwargs) rebuild a fixed one. Extra ``state`` (epoch,
optimizer, ...) must be plain tensors, numbers, strings, lists and dicts: files load with
``weights_only=True`` so opening a checkpoint never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.backbones import create_backbone
from facerec.errors import FaceRecError
from facerec.space import IResNetSpace  # noqa: F401  (registers the "iresnet" space)
from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.io import atomic_torch_save
from nas_core.space import create_space

_RESERVED = ("model", "genotype", "arch", "space", "config")


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
    built_with = getattr(model, "facenas_arch", None) or {}
    if genotype is None and arch is None:
        arch = built_with.get("arch")
        genotype = Genotype.from_dict(built_with["genotype"]) if "genotype" in built_with else None
    if genotype is None and arch is None:
        raise FaceRecError(f"{path}: expected a genotype or an arch name to store with the weights")
    if space is None:
        # The built-with settings apply only to the same kind of description (genotype vs arch).
        same_kind = ("genotype" in built_with) == (genotype is not None)
        space = built_with.get("space") if same_kind else None
        space = space or ({"name": "iresnet"} if genotype is not None else {})
    bad = [k for k in state if k in _RESERVED]
    if bad:
        raise ValueError(f"save_checkpoint: {bad} are reserved keys")
    atomic_torch_save(
        path,
        {
            "model": model.state_dict(),
            "genotype": genotype.to_dict() if genotype is not None else None,
            "arch": arch,
            "space": dict(space),
            "config": dict(config or {}),
            **state,
        },
    )


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """The checkpoint dict, checked for the facenas keys; FaceRecError on anything else."""
    path = Path(path)
    expected = f"{path}: expected a facenas checkpoint"
    if not path.is_file():
        raise FaceRecError(f"{expected} (file not found)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (garbage bytes raise anything from KeyError to UnpicklingError)
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0][:100]}" if lines else type(exc).__name__
        raise FaceRecError(f"{expected} (torch.load cannot read it: {reason})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise FaceRecError(f"{expected} (no 'model' state dict)")
    if ckpt.get("genotype") is None and not ckpt.get("arch"):
        raise FaceRecError(f"{expected} (neither 'genotype' nor 'arch' says what to build)")
    return ckpt


def build_from_checkpoint(ckpt: dict, where: str = "checkpoint") -> nn.Module:
    """A fresh (untrained) net of the architecture a checkpoint dict describes."""
    space = dict(ckpt.get("space") or {})
    try:
        if ckpt.get("genotype") is not None:
            genotype = Genotype.from_dict(ckpt["genotype"], where=f"{where}: genotype")
            return create_space(space.pop("name", "iresnet"), **space).build(genotype)
        return create_backbone(ckpt["arch"], **space)
    except NasError as exc:
        raise FaceRecError(f"{where}: expected a facenas checkpoint ({exc})") from None
    except TypeError as exc:  # unknown space/backbone kwargs
        raise FaceRecError(f"{where}: expected a facenas checkpoint (bad 'space' settings: {exc})") from None


def load_backbone(path: str | Path, map_location: Any = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the backbone from the file alone, load its weights, and return it in eval mode
    together with the whole checkpoint dict."""
    ckpt = read_checkpoint(path, map_location)
    model = build_from_checkpoint(ckpt, where=str(path))
    state = ckpt["model"]
    # Weights saved from a DDP-wrapped or torch.compile'd net carry a prefix; strip it.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise FaceRecError(
            f"{path}: expected a facenas checkpoint (weights do not match its architecture: {detail[:160]})"
        ) from None
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    return model.eval(), ckpt
