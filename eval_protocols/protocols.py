"""PROTOCOLS registry (timm style): every evaluation protocol is looked up by name (ARCHITECTURE §2).

An entry builds an object with four steps, so inputs are checked before any long work and saved
features can be re-scored without a model:

- ``locate(data_dir) -> Path | None``: where its data lies in a folder as users have it (ARCHITECTURE §7);
- ``prepare(path) -> object``: read and check every meta file (cheap; raises EvalError on bad input);
- ``extract(prepared, embedder, flip=, batch_size=) -> dict[str, np.ndarray]``: image features plus all
  arrays scoring needs (saved by ``--features-out``);
- ``score(features, **options) -> Scored``: the metrics of ARCHITECTURE §7.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas_core.registry import Registry

if TYPE_CHECKING:  # an annotation only: the protocol names stay importable without NumPy (facerec-eval --help)
    import numpy as np

PROTOCOLS = Registry("protocol")
_FAMILIES = ("eval_protocols.verification", "eval_protocols.ijb", "eval_protocols.tinyface")


@dataclass
class Scored:
    """A protocol's result dict (JSON contract, fractions) and, for IJB, its ROC curve (fpr, tpr)."""

    result: dict[str, Any]
    roc: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def _load_families() -> None:
    for module in _FAMILIES:
        importlib.import_module(module)


def create_protocol(name: str) -> Any:
    _load_families()
    return PROTOCOLS.create(name)


def list_protocols(pattern: str = "*") -> list[str]:
    _load_families()
    return PROTOCOLS.list(pattern)


# Order in which `--protocol all` runs and reports them (the paper's table order).
PROTOCOL_ORDER = ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw", "ijbb", "ijbc", "tinyface")
