"""Name -> factory registries for kernels, acquisitions and strategies, with errors that list the valid names."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A case-sensitive mapping from names to factories; ``what`` names the thing in error messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T], *, overwrite: bool = False) -> Callable[..., T]:
        """Make ``factory`` available as ``name``; ValueError if taken (unless ``overwrite``)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"the {self.what} {name!r} must be callable, got {type(factory).__name__}")
        if name in self._items and not overwrite:
            raise ValueError(f"a {self.what} named {name!r} is already registered; pass overwrite=True to replace it")
        self._items[name] = factory
        return factory

    def unregister(self, name: str) -> Callable[..., T]:
        """Remove ``name`` and return its factory; ValueError listing the valid names if it is not registered."""
        factory = self.get(name)
        del self._items[name]
        return factory

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; ValueError listing the valid names otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.what} {name!r}; valid names: {', '.join(self.names())}") from None

    def accepts(self, name: str, parameter: str) -> bool:
        """Whether the factory registered as ``name`` names a parameter ``parameter`` (not merely ``**kwargs``,
        which GPyTorch's kernels pass on and silently drop): how a composite passes on only what a part takes."""
        factory = self.get(name)  # an unknown name is an error, not "takes nothing"
        try:
            return parameter in inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin or C factory without a signature
            return False

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        """Call the factory registered as ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
