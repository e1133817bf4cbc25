"""The four registries, each typed by what it holds, filled on first use without importing torch.

- models:   ``ModelSpec`` data from ``harness/models/catalog.py``; loading is the spec's lazy ``builder``
- tasks:    ``TaskSpec`` data from every ``tasks/*.yaml``; loader and metric are lazy references
- defenses: subclasses of ``Defense``, found by reading the ``name`` / ``aliases`` / ``summary``
            literals of the classes in ``defenses/*.py`` (imported only when used)
- judges:   ``JudgeFactory`` objects, found by reading the ``@judge_factory(...)`` declarations in
            ``harness/judges/*.py`` (imported only when used)

Installed plugins (entry points) and ``--include-path`` folders add to them: :mod:`harness.plugins`.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from harness.core.registry import Registry
from harness.plugins import register_component_plugins, register_task_folder, register_task_plugins

if TYPE_CHECKING:
    from harness.core.records import TaskSpec
    from harness.defense_api.defense import Defense
    from harness.judges import JudgeFactory
    from harness.models.spec import ModelSpec


@cache
def models() -> Registry["ModelSpec"]:
    from harness.models.catalog import register_models
    from harness.models.spec import ModelSpec

    registry: Registry[ModelSpec] = Registry("model", ModelSpec)
    register_models(registry)
    return registry


@cache
def tasks() -> Registry["TaskSpec"]:
    from harness.core.records import TaskSpec
    from harness.tasks import register_tasks

    registry: Registry[TaskSpec] = Registry("task", TaskSpec)
    register_tasks(registry)
    register_task_plugins(registry)
    return registry


@cache
def defenses() -> Registry["type[Defense]"]:
    from harness.defense_api.defense import Defense
    from harness.defenses import register_defenses

    registry: Registry[type[Defense]] = Registry("defense", Defense, subclasses=True)
    register_defenses(registry)
    register_component_plugins("defenses", registry)
    return registry


@cache
def judges() -> Registry["JudgeFactory"]:
    from harness.judges import JudgeFactory, register_judges

    registry: Registry[JudgeFactory] = Registry("judge", JudgeFactory)
    register_judges(registry)
    register_component_plugins("judges", registry)
    return registry


def include_task_folders(folders: list[str] | tuple[str, ...]) -> None:
    """Add the task files of each folder (``--include-path``) to the task registry."""
    for folder in folders:
        register_task_folder(tasks(), folder)


REGISTRIES = {"models": models, "tasks": tasks, "defenses": defenses, "judges": judges}
