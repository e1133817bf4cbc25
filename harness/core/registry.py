"""One registry type for models, tasks, defenses and judges, typed per kind.

A ``Registry`` knows the type of what it holds (models: ``ModelSpec`` instances, tasks: ``TaskSpec``
instances, defenses: subclasses of ``Defense``, judges: ``JudgeFactory`` instances) and refuses
anything else with a message naming the kind, the entry and the expected type.

Entries are lazy: an entry's target is either the object itself or a :class:`LazyRef`
(``"module:attribute"``) imported on first use, so that listing names (``harness list``) and
``harness --help`` never import torch or transformers. An object is type-checked when registered, a
reference when it is first loaded.

Names are declared once, next to the code (see :mod:`harness.core.discovery`): a defense class carries
``name``, ``aliases`` and ``summary``; a judge factory carries them in its ``@judge_factory(...)``
decorator. The registry of those kinds is filled by reading these declarations *statically* (with
``ast``, without importing the modules): a generated manifest would be a second copy of every name
to keep in step, and importing the modules would import torch. On load, an entry whose object has a
``name`` is checked against the name it is registered under, so a declaration the scan misread cannot
go unnoticed.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class RegistrationError(TypeError):
    """Raised when an entry is not of its registry's type, or names itself differently."""


class LazyRef(Generic[T]):
    """A reference to ``"package.module:attr.sub"``, imported by :meth:`load` (never earlier).

    Immutable and hashable; ``str(ref)`` is the reference string, which is how records store it
    (YAML, JSON). It equals another ``LazyRef`` with the same string, never a plain string: compare
    ``str(ref)`` for that. Nothing is cached, so a monkeypatched attribute is what the next
    :meth:`load` returns.
    """

    __slots__ = ("target",)
    target: str

    def __init__(self, target: str):
        if not isinstance(target, str):
            raise TypeError(f"a lazy reference is a 'module:attribute' string, got {type(target).__name__}")
        module_name, colon, attr_path = target.partition(":")
        if not (module_name and colon and attr_path):
            raise ValueError(f"lazy reference {target!r} must look like 'module:attribute'")
        object.__setattr__(self, "target", target)

    @classmethod
    def of(cls, value: "str | LazyRef[T]") -> "LazyRef[T]":
        """``value`` as a reference: a reference is returned as is, a string is parsed."""
        return value if isinstance(value, LazyRef) else cls(value)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2]

    def load(self) -> T:
        obj: Any = importlib.import_module(self.module)
        for part in self.attribute.split("."):
            obj = getattr(obj, part)
        return obj

    def __str__(self) -> str:
        return self.target

    def __repr__(self) -> str:
        return f"LazyRef({self.target!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyRef) and other.target == self.target

    def __hash__(self) -> int:
        return hash((LazyRef, self.target))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LazyRef is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # copy/deepcopy/pickle rebuild through __init__
        return (LazyRef, (self.target,))


@dataclass
class Entry(Generic[T]):
    name: str
    target: Any  # the object, or a LazyRef imported on first load
    aliases: tuple[str, ...] = ()
    help: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # the owning registry's type check, run on the loaded object (raises RegistrationError)
    check: Callable[[str, Any, str], None] | None = field(default=None, repr=False)
    _loaded: Any = None

    def load(self) -> T:
        if self._loaded is None:
            if isinstance(self.target, LazyRef):
                obj = self.target.load()
                if self.check is not None:
                    self.check(self.name, obj, f"{self.target} (loaded)")
            else:
                obj = self.target
            self._loaded = obj
        return self._loaded


class Registry(Generic[T]):
    """Names -> lazily loaded objects of one type, with aliases and did-you-mean errors.

    ``base`` is the type entries must have: instances of it, or with ``subclasses=True`` classes
    deriving from it (defenses).
    """

    def __init__(self, kind: str, base: type, *, subclasses: bool = False):
        self.kind = kind
        self.base = base
        self.subclasses = subclasses
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    @property
    def expected(self) -> str:
        qualified = f"{self.base.__module__}.{self.base.__qualname__}"
        return f"a subclass of {qualified}" if self.subclasses else f"an instance of {qualified}"

    def check(self, name: str, obj: Any, origin: str = "") -> None:
        """Raise :class:`RegistrationError` unless ``obj`` may be registered as ``name``."""
        if self.subclasses:
            fits = isinstance(obj, type) and issubclass(obj, self.base)
        else:
            fits = isinstance(obj, self.base)
        source = f" ({origin})" if origin else ""
        if not fits:
            raise RegistrationError(
                f"{self.kind} {name!r}{source}: expected {self.expected}, got {describe(obj)}"
            )
        declared = getattr(obj, "name", name)
        if declared != name:  # one name per component: the registered name is the declared one
            raise RegistrationError(f"{self.kind} {name!r}{source} declares the name {declared!r}")

    def register(
        self,
        name: str,
        target: Any,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        help: str = "",
        **meta: Any,
    ) -> Entry[T]:
        """Register ``target``: the object (checked now), a :class:`LazyRef` or a ``"module:attr"``
        string (checked when first loaded)."""
        if isinstance(target, str):
            target = LazyRef(target)
        if not isinstance(target, LazyRef):
            self.check(name, target)
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        entry: Entry[T] = Entry(
            name=name, target=target, aliases=tuple(aliases), help=help, meta=meta, check=self.check
        )
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


def describe(obj: Any) -> str:
    """A short description of an object for error messages."""
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{type(obj).__name__} {getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return f"{type(obj).__name__} {obj!r:.80}"
