"""Defense registry: one file per defense in this package, registered here by lazy target."""

from __future__ import annotations

from typing import Any

from harness.registry import Registry

# name -> (target, aliases, one-line help). Targets are imported only when the defense is used.
DEFENSES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "none": ("defenses.none:NoDefense", (), "Undefended baseline"),
    "self-reminder": (
        "defenses.self_reminder:SelfReminder",
        ("self_reminder",),
        "Self-Reminder system prompt + reminder around the query (Xie et al., 2023)",
    ),
}


def register_defenses(registry: Registry[Any]) -> None:
    for name, (target, aliases, help_text) in DEFENSES.items():
        registry.register(name, target, aliases=aliases, help=help_text)
