"""``none``: the undefended baseline row of every comparison. Requests reach the model unchanged."""

from __future__ import annotations

from harness.defense_api.defense import Defense


class NoDefense(Defense):
    name = "none"
    summary = "Undefended baseline"
