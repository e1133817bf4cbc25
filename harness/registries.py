"""The four registries, filled on first use from cheap catalog modules (no torch import).

- models:   ``harness/models/catalog.py`` (ModelSpec data; loading is a lazy builder target)
- tasks:    every ``tasks/*.yaml`` (TaskSpec data; loader and metric are lazy targets)
- defenses: ``defenses/__init__.py`` (name -> lazy "module:Class")
- judges:   ``harness/judges/__init__.py`` (name -> lazy "module:factory")
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from harness.core.registry import Registry

if TYPE_CHECKING:
    from harness.models.spec import ModelSpec
    from harness.core.records import TaskSpec


@cache
def models() -> Registry["ModelSpec"]:
    from harness.models.catalog import register_models

    registry: Registry[ModelSpec] = Registry("model")
    register_models(registry)
    return registry


@cache
def tasks() -> Registry["TaskSpec"]:
    from harness.tasks import register_tasks

    registry: Registry[TaskSpec] = Registry("task")
    register_tasks(registry)
    return registry


@cache
def defenses() -> Registry[Any]:
    from harness.defenses import register_defenses

    registry: Registry[Any] = Registry("defense")
    register_defenses(registry)
    return registry


@cache
def judges() -> Registry[Any]:
    from harness.judges import register_judges

    registry: Registry[Any] = Registry("judge")
    register_judges(registry)
    return registry


REGISTRIES = {"models": models, "tasks": tasks, "defenses": defenses, "judges": judges}
