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
from nas_core.safe_pickle import load_weights_only

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
    path = Path(path)
    expected = f"{path}: expected a facenas checkpoint"
    ckpt = load_weights_only(path, "a facenas checkpoint", error=error, map_location=map_location)
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


def tensor_problem(value: Any, expected: Any, *, finite: bool = False) -> str | None:
    """Why a file's tensor cannot stand for the model's ``expected`` one (None: it can): not a tensor, not a
    dense (strided) tensor, a complex or non-floating tensor where the model holds floats, a floating one
    where it holds integer counts, another shape, or (with ``finite``) NaN/inf values. A facenas checkpoint
    with NaN weights is left to the commands that run it (their embeddings are checked); published weights
    are checked here."""
    import torch

    if not isinstance(value, torch.Tensor):
        return f"expected a tensor, found {type(value).__name__}"
    if value.layout != torch.strided:
        return f"expected a dense tensor, found a {str(value.layout).removeprefix('torch.')} one"
    if value.is_complex() or value.dtype == torch.bool or value.is_floating_point() != expected.is_floating_point():
        kind = "floating-point" if expected.is_floating_point() else "integer"
        return f"expected a {kind} tensor, found {str(value.dtype).removeprefix('torch.')}"
    if tuple(value.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, found {tuple(value.shape)}"
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        return "expected finite values, found NaN or inf"
    return None


def state_dict_problem(state_dict: Any, expected: dict) -> str | None:
    """The first reason ``state_dict`` cannot load into a model whose state dict is ``expected``, naming the
    key (None: it loads). Checked before ``load_state_dict``, whose messages quote torch internals."""
    if not isinstance(state_dict, dict):
        return f"expected a state dict, found {type(state_dict).__name__}"
    for key, value in state_dict.items():
        if key not in expected:
            return f"unexpected key {str(key)[:80]}"
        why = tensor_problem(value, expected[key])
        if why is not None:
            return f"{key}: {why}"
    missing = [key for key in expected if key not in state_dict]
    return f"missing key {missing[0]}" if missing else None


def load_weights(model, state_dict: dict, where: str, error: type[NasError] = NasError) -> None:
    """Load ``state_dict`` strictly (wrapper prefixes stripped); a mismatch names the first bad key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(isinstance(k, str) and k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    problem = state_dict_problem(state_dict, model.state_dict())
    if problem is not None:
        raise error(f"{where}: expected a facenas checkpoint (weights do not match its architecture: {problem})")
    model.load_state_dict(state_dict)
