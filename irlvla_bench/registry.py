"""One registry class for every extension point (agents, traffic policies, ...).

Entries are factories; a factory may be given as ``"module:attribute"`` so that registering an agent that needs
torch does not import torch until someone asks for that agent.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; ours is a sentence
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T] | str] = {}

    def register(self, name: str, factory: Callable[..., T] | str | None = None):
        """``register(name, factory)``, ``register(name, "pkg.module:Factory")`` or ``@register(name)``."""
        if factory is not None:
            self._add(name, factory)
            return factory

        def wrap(obj):
            self._add(name, obj)
            return obj

        return wrap

    def _add(self, name: str, factory) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = factory

    def factory(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry

    def create(self, name: str, *args, **kwargs) -> T:
        return self.factory(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def unregister(self, name: str) -> None:
        """For tests that register throw-away entries."""
        self._entries.pop(name, None)
