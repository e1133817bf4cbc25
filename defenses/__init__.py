"""The defenses: one file per defense in this package.

A defense is a subclass of :class:`harness.defense_api.defense.Defense` whose body declares, as
literals, its one ``name`` (also its fingerprint's name, hence part of every cache key), its
``aliases`` and a one-line ``summary``. :func:`register_defenses` reads those declarations without
importing the modules (most import torch); a defense class is imported when it is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.discovery import declared_classes, register_declarations

if TYPE_CHECKING:
    from harness.core.registry import Registry
    from harness.defense_api.defense import Defense

DEFENSES_DIR = Path(__file__).resolve().parent


def register_defenses(registry: "Registry[type[Defense]]") -> None:
    register_declarations(registry, declared_classes(DEFENSES_DIR, __name__))
