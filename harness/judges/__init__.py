"""Judges: factories declared with :func:`judge_factory` in the modules of this package.

Each factory declares the judge's one name, its aliases and summary in its decorator,
``@judge_factory("keyword-gcg", aliases=(...), summary="...")``; the registry reads these declarations
without importing the modules (see :mod:`harness.core.discovery`), and the factory hands the name to
the judge it builds, so no other place spells it.

``registries.judges().get(name)`` returns the factory (a :class:`JudgeFactory`); call it with keyword
options (``--judge-arg KEY=VALUE``; every option has a default, environment variables may supply
endpoint settings) to get a judge: an object with ``name``, ``fingerprint() -> dict`` and ``judge(sample, generation) ->
Judgement``, and optionally ``judge_many(pairs) -> list[Judgement]`` for judges that batch (classifier
models, HTTP endpoints). The fingerprint identifies the scoring rule (model id + revision, template
sha256, keyword-list sha256, thresholds) and is part of the judgement cache key; it never contains a
secret. A judge sets ``Judgement.kind`` = "refusal" (decides ``refused``) or "harm" (decides
``unsafe``); an undecidable input (e.g. an unparseable LLM reply) leaves that field None.

This module imports nothing heavy, so listing judges stays cheap.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from harness.core.discovery import declared_functions, register_declarations

if TYPE_CHECKING:
    from harness.core.records import Generation, Judgement, Sample
    from harness.core.registry import Registry

JUDGES_DIR = Path(__file__).resolve().parent


class Judge(Protocol):
    """What the runner needs from a judge."""

    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def judge(self, sample: "Sample", generation: "Generation") -> "Judgement": ...


class JudgeFactory:
    """A judge factory with its declaration: the type the judge registry holds.

    Calling it calls the decorated function with the declared ``name`` added, so the judge is built
    under the one name. Its signature (what ``--judge-arg`` routing inspects) is the function's without
    ``name``; a module may replace ``__signature__`` when the function forwards ``**options``.
    """

    def __init__(self, make: Callable[..., Judge], name: str, aliases: tuple[str, ...], summary: str):
        parameters = inspect.signature(make).parameters
        if "name" not in parameters or parameters["name"].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"judge factory {make.__qualname__} must take the keyword-only argument `name`")
        self.make = make
        self.name = name
        self.aliases = tuple(aliases)
        self.summary = summary
        self.__name__ = make.__name__
        self.__qualname__ = make.__qualname__
        self.__module__ = make.__module__
        self.__doc__ = make.__doc__
        self.__signature__ = inspect.signature(make).replace(
            parameters=[p for key, p in parameters.items() if key != "name"]
        )

    def __call__(self, *args: Any, **options: Any) -> Judge:
        if "name" in options:
            raise TypeError(f"judge {self.name!r}: its name is declared, not an option")
        return self.make(*args, name=self.name, **options)

    def __repr__(self) -> str:
        return f"JudgeFactory({self.name!r}, {self.__module__}.{self.__qualname__})"


def judge_factory(
    name: str, *, aliases: tuple[str, ...] = (), summary: str = ""
) -> Callable[[Callable[..., Judge]], JudgeFactory]:
    """Declare a judge: its one name, aliases and ``harness list judges`` summary.

    The arguments must be literals: the registry reads them from the source without importing it.
    """

    def declare(make: Callable[..., Judge]) -> JudgeFactory:
        return JudgeFactory(make, name, aliases, summary)

    return declare


def register_judges(registry: "Registry[JudgeFactory]") -> None:
    register_declarations(registry, declared_functions(JUDGES_DIR, __name__, judge_factory.__name__))
