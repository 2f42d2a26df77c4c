"""Generic efficient global NAS engine (macro search of depth and width, micro search of ops and kernels)."""

from nas_core.errors import NasError
from nas_core.genotype import Genotype

__all__ = ["Genotype", "NasError"]
