"""Run configs as data: what ``harness eval --config run.yaml`` and ``harness.evaluate(...)`` take.

A run config names one model, one or more defenses (each with its parameters) and the tasks (each with
an optional limit and loader arguments), plus generation settings and judges::

    model: smol-llava
    dtype: float32            # optional; "auto" by default
    device: cpu               # optional; "auto" by default
    defenses:
      - none
      - name: self-reminder
      - name: ras
        args: {gamma: 0.3}
    tasks:
      - figstep-tiny
      - name: xstest
        limit: 20
    limit: default            # every task without its own limit: N, "all" or "default"
    generation: {max_new_tokens: 64, batch_size: 4}
    judge: keyword-gcg        # optional: replaces every judged task's default judge
    judge_args: {"*": {}, gpt-harmless: {model: gpt-4o}}
    include_path: [./my_tasks]  # folders of extra task files (harness.plugins)

Every key is checked: an unknown one is an error that names it (with close matches), in the file and
in each defense or task entry. The resolved config (after command-line overrides) is stored in the
run's ``settings.config``; secrets in ``judge_args`` are replaced by their option names there.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.core.options import parse_limit
from harness.pipeline.defaults import DEFAULT_DEFENSE, DEFAULT_MODEL, OFFLINE_SUITE


class ConfigError(ValueError):
    """A run config that cannot be used: the message names the key or value."""


@dataclass
class DefenseChoice:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskChoice:
    name: str
    limit: int | str | None = None  # None: the run's limit
    args: dict[str, Any] = field(default_factory=dict)  # loader arguments, over the task YAML's


@dataclass
class RunConfig:
    model: str = DEFAULT_MODEL
    defenses: list[DefenseChoice] = field(default_factory=lambda: [DefenseChoice(DEFAULT_DEFENSE)])
    tasks: list[TaskChoice] = field(default_factory=lambda: [TaskChoice(name) for name in OFFLINE_SUITE])
    limit: int | str | None = None
    dtype: str = "auto"
    device: str = "auto"
    max_new_tokens: int | None = None
    batch_size: int | None = None
    judge: str | None = None
    judge_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    include_path: list[str] = field(default_factory=list)  # folders of extra task files

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "run config") -> "RunConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        known = ("model", "defenses", "tasks", "limit", "dtype", "device", "generation", "judge", "judge_args",
                 "include_path")
        _check_keys(data, known, where)
        generation = data.get("generation") or {}
        _check_keys(generation, ("max_new_tokens", "batch_size"), f"{where}: generation")
        config = cls(
            model=str(data.get("model", DEFAULT_MODEL)),
            limit=_limit(data.get("limit"), f"{where}: limit"),
            dtype=str(data.get("dtype", "auto")),
            device=str(data.get("device", "auto")),
            max_new_tokens=_positive(generation.get("max_new_tokens"), f"{where}: generation.max_new_tokens"),
            batch_size=_positive(generation.get("batch_size"), f"{where}: generation.batch_size"),
            judge=data.get("judge"),
            judge_args={str(scope): dict(options) for scope, options in (data.get("judge_args") or {}).items()},
            include_path=[str(folder) for folder in _list(data.get("include_path") or [], f"{where}: include_path")],
        )
        if "defenses" in data:
            config.defenses = [_defense(entry, f"{where}: defenses[{i}]") for i, entry in enumerate(_list(data["defenses"], f"{where}: defenses"))]
        if "tasks" in data:
            config.tasks = [_task(entry, f"{where}: tasks[{i}]") for i, entry in enumerate(_list(data["tasks"], f"{where}: tasks"))]
        if not config.defenses or not config.tasks:
            raise ConfigError(f"{where}: name at least one defense and one task")
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read run config {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        config = cls.from_dict(data or {}, where=str(path))
        # relative task folders are relative to the file, so a config works from any directory
        config.include_path = [str((path.parent / folder).resolve()) for folder in config.include_path]
        return config

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as data; judge option values are left out (they may be secrets)."""
        data = dataclasses.asdict(self)
        data["judge_args"] = {scope: sorted(options) for scope, options in self.judge_args.items()}
        return data


def _check_keys(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=2)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; known: {', '.join(known)}")


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str):  # "none,ras" as on the command line
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _defense(entry: Any, where: str) -> DefenseChoice:
    if isinstance(entry, str):
        return DefenseChoice(entry)
    _check_keys(entry, ("name", "args"), where)
    if "name" not in entry:
        raise ConfigError(f"{where}: a defense entry needs a name")
    return DefenseChoice(str(entry["name"]), dict(entry.get("args") or {}))


def _task(entry: Any, where: str) -> TaskChoice:
    if isinstance(entry, str):
        return TaskChoice(entry)
    _check_keys(entry, ("name", "limit", "args"), where)
    if "name" not in entry:
        raise ConfigError(f"{where}: a task entry needs a name")
    return TaskChoice(str(entry["name"]), _limit(entry.get("limit"), f"{where}: limit"), dict(entry.get("args") or {}))


def _limit(value: Any, where: str) -> int | str | None:
    if value is None:
        return None
    try:
        return parse_limit(str(value))
    except Exception as exc:  # noqa: BLE001 - argparse's ArgumentTypeError, with its message
        raise ConfigError(f"{where}: {exc}") from None


def _positive(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {value!r}")
    return value
