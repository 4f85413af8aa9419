"""One generic registry reused by every pluggable family (models, datasets, optimizers, ...).

Register at the definition site::

    MODELS = Registry("model")

    @MODELS.register("resnet20", family="resnet")
    def resnet20(**kwargs): ...

An unknown name raises :class:`UnknownNameError` listing close matches, so a typo in a
config file is reported as ``unknown model 'resnet19'; did you mean resnet18, resnet110?``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object mapping with metadata, wildcards and helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            self.add(name or getattr(obj, "__name__"), obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, obj, dict(meta))

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        names = sorted(self._entries)
        shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", ..."
        return f"unknown {self.kind} '{name}'{hint} ({len(names)} choices: {shown})"

    def build(self, spec: Any, **extra: Any) -> Any:
        """Construct from a config entry: ``"name"`` or ``{"name": ..., **options}``.

        ``extra`` keyword arguments (e.g. ``num_classes`` known only at run time) are passed
        too. Unknown names and bad options raise ValueError naming the entry.
        """
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
            name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            raise ValueError(f"{self.kind} entry must be a name or a mapping with 'name', "
                             f"got {spec!r}")
        factory = self.get(name)
        try:
            return factory(**options, **extra)
        except TypeError as e:
            raise ValueError(f"{self.kind} '{name}': {e}") from None

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard (``"resnet*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
