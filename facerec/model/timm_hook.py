"""The facenas_* models appear in timm whenever timm is imported (ARCHITECTURE §2, "timm registration").

``import facerec`` installs ``register_on_timm_import``: it costs nothing (no torch, no timm), and
``timm.create_model("facenas_iresnet50")`` still works after ``import facerec`` whichever of the two a
program imports first. When timm is already loaded the backbones register at once; otherwise a finder on
``sys.meta_path`` waits for timm's import, lets it finish, then imports ``facerec.model.backbones``, whose
module body registers the fixed backbones in timm, and takes itself off ``sys.meta_path``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType

TIMM = "timm"


def _register_backbones() -> None:
    import facerec.model.backbones  # noqa: F401  (its module body registers the facenas_* models in timm)


class _RegisteringLoader(importlib.abc.Loader):
    """timm's own loader, followed by the backbones' registration once timm's module has run."""

    def __init__(self, loader: importlib.abc.Loader, finder: _TimmFinder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # timm keeps its own loader: the wrapper is only seen while timm's module body runs.
        module.__loader__ = module.__spec__.loader = self._loader
        self._finder.remove()
        self._loader.exec_module(module)
        _register_backbones()


class _TimmFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands timm's spec, found by the other finders, a registering loader."""

    def __init__(self) -> None:
        self._searching = False

    def find_spec(self, fullname: str, path, target=None):
        if fullname != TIMM or self._searching:
            return None
        self._searching = True  # importlib.util.find_spec asks sys.meta_path again, this finder included
        try:
            spec = importlib.util.find_spec(TIMM)
        finally:
            self._searching = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def register_on_timm_import() -> None:
    """Register the facenas_* models in timm now if timm is loaded, else as soon as it is (once)."""
    if TIMM in sys.modules:
        _register_backbones()
    elif not any(isinstance(finder, _TimmFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TimmFinder())
