"""A small registry of named things (engines, extractors, optimizers, loss functions).

Entries may be objects or lazy ``"module:attr"`` strings imported on first lookup.
A duplicate name raises ``ValueError``; an unknown name raises
:class:`~parafit.errors.UnknownNameError` listing the known names and a suggestion.
"""

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from parafit.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Map of lowercase names to objects, with aliases and lazy imports.

    Args:
        kind: what is registered, used in messages (e.g. ``"extractor"``).
        hint: a sentence appended to unknown-name errors (how to register one).
    """

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self, name: str, obj: T | str, *, aliases: tuple[str, ...] = ()
    ) -> None:
        """Add ``obj`` under ``name`` (and ``aliases``); a duplicate raises ValueError."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known + sorted(self._aliases), n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else "."
        message = f"unknown {self.kind} {name!r}{suggestion} Known: {', '.join(known)}."
        if self.hint:
            message += " " + self.hint
        raise UnknownNameError(message)

    def get(self, name: str) -> T:
        """The object registered under ``name`` (importing it on first use)."""
        key = self.canonical(name)
        obj = self._entries[key]
        if isinstance(obj, str) and ":" in obj:
            module_name, attr = obj.split(":", 1)
            obj = getattr(importlib.import_module(module_name), attr)
            self._entries[key] = obj
        return obj  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        """Registered names (without aliases), sorted."""
        return sorted(self._entries)
