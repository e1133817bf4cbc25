"""Third-party tasks, defenses and judges: entry points and task folders (as lm-eval's ``--include_path``).

A package adds components by declaring entry points in its own pyproject.toml::

    [project.entry-points."mm_safety_harness.defenses"]
    my-defense = "my_package.defense:MyDefense"        # a Defense subclass whose name is "my-defense"
    [project.entry-points."mm_safety_harness.judges"]
    my-judge = "my_package.judge:make_my_judge"        # a @judge_factory("my-judge") function
    [project.entry-points."mm_safety_harness.tasks"]
    my-tasks = "my_package.tasks"                      # a package whose folder holds task YAML files

The entry point's name is the component's registry name; the component still declares it itself, and a
mismatch is an error when it loads. Nothing is imported to list plugins (entry points are metadata);
a task package is located without being imported. ``--include-path DIR`` (``harness eval``, ``harness
list``; ``include_path`` in a run config) registers the task files of a folder and puts the folder on
``sys.path``, so its loaders may live beside the YAML files.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

GROUPS = {
    "tasks": "mm_safety_harness.tasks",
    "defenses": "mm_safety_harness.defenses",
    "judges": "mm_safety_harness.judges",
}


# (registry, folder) -> task names already registered from it
_INCLUDED: dict[tuple[int, Path], list[str]] = {}


class PluginError(ValueError):
    """A plugin that cannot be registered; the message names its distribution and entry point."""


def _entry_points(kind: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=GROUPS[kind]), key=lambda point: point.name)


def _origin(point: Any) -> str:
    dist = getattr(point, "dist", None)
    return f"plugin {dist.name if dist is not None else '?'}: {point.group} {point.name} = {point.value}"


def register_component_plugins(kind: str, registry: Any) -> None:
    """Register the defenses or judges that installed packages declare (imported when first used)."""
    for point in _entry_points(kind):
        if ":" not in point.value:
            raise PluginError(f"{_origin(point)}: the value must look like 'module:attribute'")
        try:
            registry.register(point.name, point.value, help=f"({_origin(point)})")
        except ValueError as exc:  # a name taken by the harness or by another plugin
            raise PluginError(f"{_origin(point)}: {exc}") from None


def register_task_plugins(registry: Any) -> None:
    """Register the task folders that installed packages declare."""
    for point in _entry_points("tasks"):
        try:
            spec = importlib.util.find_spec(point.value)
        except (ImportError, ValueError) as exc:
            raise PluginError(f"{_origin(point)}: cannot find the package: {exc}") from None
        if spec is None or not spec.submodule_search_locations:
            raise PluginError(f"{_origin(point)}: not an importable package holding task files")
        for location in spec.submodule_search_locations:
            register_task_folder(registry, Path(location), origin=_origin(point))


def register_task_folder(registry: Any, folder: str | Path, origin: str = "") -> list[str]:
    """Register every task file in ``folder``; the folder goes on ``sys.path`` for its loader modules."""
    from harness.tasks import register_tasks

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise PluginError(f"--include-path {folder}: no such folder")
    if (id(registry), folder) in _INCLUDED:  # a second run in the same process includes it again
        return _INCLUDED[(id(registry), folder)]
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    try:
        names = register_tasks(registry, folder, origin=origin or f"from {folder}")
    except ValueError as exc:  # a task name already taken, an unknown key in a file
        raise PluginError(f"{origin or folder}: {exc}") from None
    if not names:
        raise PluginError(f"{origin or folder}: holds no task file (*.yaml)")
    _INCLUDED[(id(registry), folder)] = names
    return names
