"""One registry type for models, tasks, defenses and judges.

An entry is registered by name with aliases and a *lazy target*: either the object itself or a
``"module:attribute"`` string imported on first use, so that listing names (``harness list``) and
``harness --help`` never import torch or transformers.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def import_target(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = target.partition(":")
    if not attr_path:
        raise ValueError(f"lazy target {target!r} must look like 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Entry(Generic[T]):
    name: str
    target: Any  # the object, or "module:attr" to import lazily
    aliases: tuple[str, ...] = ()
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    _loaded: Any = None

    def load(self) -> T:
        if self._loaded is None:
            self._loaded = import_target(self.target) if isinstance(self.target, str) else self.target
        return self._loaded


class Registry(Generic[T]):
    """Names -> lazily loaded objects, with aliases and did-you-mean errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str,
        target: Any,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        help: str = "",
        **meta: Any,
    ) -> Entry[T]:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        entry: Entry[T] = Entry(name=name, target=target, aliases=tuple(aliases), help=help, meta=meta)
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def canonical(self, name: str) -> str:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Run `harness list {self.kind}s` for all names."
        )

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
