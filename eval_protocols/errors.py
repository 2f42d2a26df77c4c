"""User-facing errors of eval_protocols (bad .bin, missing IJB meta, ...)."""

from nas_core.errors import NasError


class EvalError(NasError):
    """Message reads ``<file>[: line/offset]: <what was expected>``."""
