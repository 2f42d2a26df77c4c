"""The SearchSpace protocol: what MacroMicroSearch needs from a task (classification, faces, ...).

A space instance is bound to its task (input channels, classes or embedding size), so
``build`` and ``count_params`` take only the genotype.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

from nas_core.genotype import Genotype
from nas_core.registry import Registry

SPACES = Registry("search space")


@runtime_checkable
class SearchSpace(Protocol):
    name: str

    def build(self, genotype: Genotype) -> nn.Module:
        """The network of this genotype, freshly initialised."""

    def count_params(self, genotype: Genotype) -> int:
        """Trainable parameters of ``build(genotype)``, in closed form (no model is built)."""

    def input_shape(self) -> tuple[int, ...]:
        """Shape (C, H, W) of one input of ``build(genotype)`` as the space trains it: what a candidate's
        MFLOPs and latency are measured on (nas_core.cost, deployment budgets)."""


def match_width(space: SearchSpace, genotype: Genotype, reference_params: int, slack: int) -> Genotype:
    """Lower the width by 1 until params ≤ reference + slack (ARCHITECTURE §3, micro search)."""
    while genotype.width > 1 and space.count_params(genotype) > reference_params + slack:
        genotype = genotype.with_width(genotype.width - 1)
    return genotype


# Packages add spaces through this entry-point group (facerec declares "iresnet" in its pyproject), so the
# engine finds a space named in a run folder without knowing the package that provides it. Entry points
# come from installed distributions only, never from the run folder.
SPACE_ENTRY_POINTS = "facenas.search_spaces"


def load_space_plugin(name: str) -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=SPACE_ENTRY_POINTS, name=name):
        entry.load()  # importing the module registers the space


def create_space(name: str, **task) -> SearchSpace:
    if name not in SPACES:
        load_space_plugin(name)
    return SPACES.create(name, **task)


def list_spaces(pattern: str = "*") -> list[str]:
    return SPACES.list(pattern)
