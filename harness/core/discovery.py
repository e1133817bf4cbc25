"""Read component declarations (name, aliases, summary) from source files without importing them.

A component declares its name once, in its own module, as literals:

- a class: ``name = "self-reminder"``, optionally ``aliases = (...)`` and ``summary = "..."`` in its
  body (defenses);
- a function: a decorator call such as ``@judge_factory("keyword-gcg", aliases=(...), summary="...")``
  (judges).

:func:`declared_classes` and :func:`declared_functions` find these with :mod:`ast` so that listing the
registry imports nothing heavy; the registry then checks, when an entry is first loaded, that the
imported object really is of its kind and carries the same name (see :mod:`harness.core.registry`).
Values must be literals for this reason; anything else is reported with its file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.core.registry import LazyRef


class DeclarationError(ValueError):
    """A declaration that cannot be read statically (not a literal, wrong type)."""


@dataclass(frozen=True)
class Declaration:
    name: str
    aliases: tuple[str, ...]
    summary: str
    target: LazyRef[Any]
    where: str  # "path:line", for messages


def component_modules(directory: Path) -> list[Path]:
    """The public modules of a package folder, sorted (``_private.py`` and ``__init__.py`` skipped)."""
    return sorted(path for path in directory.glob("*.py") if not path.name.startswith("_"))


def declared_classes(directory: Path, package: str) -> list[Declaration]:
    """Top-level classes whose body assigns a string literal to ``name``, in file then source order."""
    found = []
    for path in component_modules(directory):
        for node in _parse(path).body:
            if not isinstance(node, ast.ClassDef):
                continue
            values = _class_assignments(node)
            if "name" not in values:
                continue
            where = f"{path}:{node.lineno}"
            found.append(
                _declaration(
                    values["name"], values.get("aliases"), values.get("summary"),
                    LazyRef(f"{package}.{path.stem}:{node.name}"), where, f"class {node.name}",
                )
            )
    return found


def declared_functions(directory: Path, package: str, decorator: str) -> list[Declaration]:
    """Top-level functions decorated with ``@decorator(name, aliases=..., summary=...)``."""
    found = []
    for path in component_modules(directory):
        for node in _parse(path).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in node.decorator_list:
                if not (isinstance(call, ast.Call) and _called_name(call.func) == decorator):
                    continue
                where = f"{path}:{call.lineno}"
                what = f"@{decorator} of {node.name}"
                if len(call.args) != 1 or any(k.arg not in ("aliases", "summary") for k in call.keywords):
                    raise DeclarationError(f"{where}: {what} takes the name, then aliases= and summary=")
                keywords = {k.arg: k.value for k in call.keywords}
                found.append(
                    _declaration(
                        call.args[0], keywords.get("aliases"), keywords.get("summary"),
                        LazyRef(f"{package}.{path.stem}:{node.name}"), where, what,
                    )
                )
    return found


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _class_assignments(node: ast.ClassDef) -> dict[str, ast.expr]:
    values: dict[str, ast.expr] = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("name", "aliases", "summary"):
            values[target.id] = value
    return values


def _declaration(
    name_node: ast.expr,
    aliases_node: ast.expr | None,
    summary_node: ast.expr | None,
    target: LazyRef[Any],
    where: str,
    what: str,
) -> Declaration:
    name = _literal(name_node, str, where, f"{what}: name")
    aliases = _literal(aliases_node, (tuple, list), where, f"{what}: aliases") if aliases_node else ()
    if not all(isinstance(alias, str) for alias in aliases):
        raise DeclarationError(f"{where}: {what}: aliases must be strings")
    summary = _literal(summary_node, str, where, f"{what}: summary") if summary_node else ""
    return Declaration(name=name, aliases=tuple(aliases), summary=summary, target=target, where=where)


def _literal(node: ast.expr, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise DeclarationError(
            f"{where}: {what} must be a literal (it is read without importing the module)"
        ) from None
    if not isinstance(value, kind):
        raise DeclarationError(f"{where}: {what} must be a {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds: Iterable[type] = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def register_declarations(registry: Any, declarations: Iterable[Declaration]) -> None:
    """Register each declaration under its name, lazily."""
    for declaration in declarations:
        try:
            registry.register(
                declaration.name, declaration.target, aliases=declaration.aliases, help=declaration.summary
            )
        except ValueError as exc:  # a name or alias declared twice: say where the second one is
            raise DeclarationError(f"{declaration.where}: {exc}") from None
