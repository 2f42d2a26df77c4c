"""User-facing errors of facerec (bad face data, bad checkpoint). Caught by ``nas_core.errors.run_cli``."""

from nas_core.errors import NasError


class FaceRecError(NasError):
    """Message reads ``<file>[: offset/line]: <what was expected>``."""
