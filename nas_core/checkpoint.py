"""The one checkpoint schema of the project (ARCHITECTURE §10), written atomically, loaded with
``weights_only=True`` so opening a checkpoint never runs code.

A file holds ``{"model": state_dict, "genotype": dict | None, "arch": str | None, "space": {...},
"config": {...}, **state}``. ``genotype`` + ``space`` (the search-space name and its kwargs) rebuild a
searched net through the space registry; packages with fixed architectures (facerec's IResNets) use
``arch`` instead and rebuild those themselves. Extra ``state`` holds only tensors, numbers, strings,
lists and dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_core.errors import NasError
from nas_core.genotype import Genotype
from nas_core.io import atomic_torch_save

RESERVED_KEYS = ("model", "genotype", "arch", "space", "config")
# Weights saved from a DDP-wrapped or torch.compile'd net carry one of these prefixes.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str | Path, *, state_dict: dict, genotype: Genotype | None = None,
                    arch: str | None = None, space: dict | None = None, config: dict | None = None,
                    **state: Any) -> None:
    """Write weights with what rebuilds them (a genotype or an arch name, and the space settings)."""
    if genotype is None and arch is None:
        raise NasError(f"{path}: expected a genotype or an arch name to store with the weights")
    bad = [k for k in state if k in RESERVED_KEYS]
    if bad:
        raise ValueError(f"save_checkpoint: {bad} are reserved keys")
    atomic_torch_save(path, {
        "model": state_dict,
        "genotype": genotype.to_dict() if genotype is not None else None,
        "arch": arch,
        "space": dict(space or {}),
        "config": dict(config or {}),
        **state,
    })


def read_checkpoint(path: str | Path, map_location: Any = "cpu", error: type[NasError] = NasError) -> dict:
    """The checkpoint dict, checked for the schema's keys; ``error`` (a NasError) on anything else."""
    import torch

    path = Path(path)
    expected = f"{path}: expected a facenas checkpoint"
    if not path.is_file():
        raise error(f"{expected} (file not found)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (garbage bytes raise anything from KeyError to UnpicklingError)
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0][:100]}" if lines else type(exc).__name__
        raise error(f"{expected} (torch.load cannot read it: {reason})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise error(f"{expected} (no 'model' state dict)")
    if ckpt.get("genotype") is None and not ckpt.get("arch"):
        raise error(f"{expected} (neither 'genotype' nor 'arch' says what to build)")
    if not isinstance(ckpt.get("space") or {}, dict):
        raise error(f"{expected} ('space' must be a dict of settings)")
    return ckpt


def build_searched(ckpt: dict, where: str = "checkpoint", error: type[NasError] = NasError):
    """A fresh net of the genotype and space a checkpoint names (through the space registry)."""
    from nas_core.space import create_space

    space = dict(ckpt.get("space") or {})
    try:
        genotype = Genotype.from_dict(ckpt["genotype"], where=f"{where}: genotype")
        return create_space(space.pop("name"), **space).build(genotype)
    except KeyError:
        raise error(f"{where}: expected a facenas checkpoint ('space' names no search space)") from None
    except NasError as exc:
        raise error(f"{where}: expected a facenas checkpoint ({exc})") from None
    except TypeError as exc:  # unknown space kwargs
        raise error(f"{where}: expected a facenas checkpoint (bad 'space' settings: {exc})") from None


def load_weights(model, state_dict: dict, where: str, error: type[NasError] = NasError) -> None:
    """Load ``state_dict`` strictly (wrapper prefixes stripped); a mismatch names the first bad key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise error(f"{where}: expected a facenas checkpoint (weights do not match its architecture: "
                    f"{detail[:160]})") from None
