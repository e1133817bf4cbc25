"""Defense registry: one file per defense in this package, registered here by lazy target."""

from __future__ import annotations

from typing import Any

from harness.registry import Registry


def register_defenses(registry: Registry[Any]) -> None:
    registry.register("none", "defenses.none:NoDefense", help="Undefended baseline")
    registry.register(
        "self-reminder",
        "defenses.self_reminder:SelfReminder",
        aliases=("self_reminder",),
        help="Self-Reminder system prompt + reminder around the query (Xie et al., 2023)",
    )
