"""Task registry: every ``tasks/*.yaml`` is one TaskSpec (data); loaders and metrics are small pure
functions in the modules of this package, referenced from the YAML as ``module:function`` strings
(lazy references, imported when the task runs)."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.core.records import TaskSpec, UnknownKeyError
from harness.core.registry import Registry

TASKS_DIR = Path(__file__).resolve().parent
DATA_DIR = TASKS_DIR / "data"


def load_spec(path: Path) -> TaskSpec:
    """A task file, read strictly: a misspelt key would otherwise be dropped without a word."""
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ValueError(f"{path}: a task file must be a mapping with at least 'name'")
    try:
        return TaskSpec.from_dict(raw, strict=True)
    except UnknownKeyError as exc:
        raise UnknownKeyError(f"{path}: {exc}") from None


def register_tasks(registry: Registry[TaskSpec], folder: Path = TASKS_DIR, origin: str = "") -> list[str]:
    """Register every task file of ``folder`` (the shipped tasks by default); returns their names."""
    names = []
    for path in sorted(Path(folder).glob("*.yaml")):
        spec = load_spec(path)
        help_text = f"{spec.description} ({origin})" if origin else spec.description
        registry.register(spec.name, spec, aliases=spec.aliases, help=help_text)
        names.append(spec.name)
    return names
