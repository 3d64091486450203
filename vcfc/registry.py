"""`Registry`: a named set of implementations of one option kind (codecs, quantizers, layouts,
channel orders, allocators, distances, tasks, dataset kinds).

Each entry IS the implementation (a class, an object or a function), so choosing an option is
`REGISTRY.get(name)` and nothing else branches on its name. The CLI's `choices`, the experiment
loader and the header validator all read the same registry, so registering an entry once makes
it accepted everywhere. Standard library only: every layer, packing included, may import it.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, ValuesView
from typing import Any, Generic, TypeVar

from .errors import InputError

T = TypeVar("T")
_MISSING: Any = object()


class Registry(Generic[T]):
    """Name → entry, in registration order; reads like a dict (``in``, iteration, ``items()``).

    ``get(name)`` raises ``error`` (default InputError) as ``unknown <kind> 'x'; choose from a, b``;
    ``register`` refuses a name twice. Item assignment replaces silently (what test fixtures
    such as ``monkeypatch.setitem`` use to add and remove an entry).
    """

    def __init__(self, kind: str, entries: Iterable[tuple[str, T]] = (), *,
                 error: type[Exception] = InputError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            self.register(name, entry)

    def register(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: object, default: Any = _MISSING) -> T:
        """The entry called ``name``; an unknown name is the one-line error naming the choices
        (or ``default`` when one is given, as dict.get)."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise self.error(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}")

    def check(self, name: object) -> str:
        """``name`` itself when registered, else the error of ``get``."""
        self.get(name)
        return name  # type: ignore[return-value]

    def choices(self) -> tuple[str, ...]:
        return tuple(self._entries)

    # -- reading it like a dict (argparse choices, `in`, iteration) -----------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def keys(self) -> KeysView[str]:
        return self._entries.keys()

    def values(self) -> ValuesView[T]:
        return self._entries.values()

    def items(self) -> ItemsView[str, T]:
        return self._entries.items()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
