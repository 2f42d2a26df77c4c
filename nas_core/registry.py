"""One small timm-style registry per kind of thing (search spaces, datasets, heads, protocols)."""

import fnmatch
from collections.abc import Callable
from typing import Any

from nas_core.errors import NasError


class Registry:
    """Name → constructor. ``register`` is a decorator, ``create`` builds, ``list`` takes wildcards."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._entries and self._entries[key] is not fn:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = fn
            return fn

        return add

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.list()) or "none"
            raise NasError(f"{name}: unknown {self.kind}; expected one of {known}") from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries
