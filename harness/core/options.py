"""Parsing ``KEY=VALUE`` options (defense, task, judge and calibration arguments) into typed values.

Shared by the command line, the lm-eval bridge and the benches, so that an option means the same
everywhere.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

# Option values are YAML (numbers, booleans, lists) except these, which are always kept as typed: a
# key "0123" must not become the integer 83, nor a model named "no" the boolean False.
RAW_STRING_OPTIONS = frozenset({"api_key", "model", "base_url", "model_id", "revision", "checkpoint"})


def parse_option_value(key: str, value: str) -> Any:
    import yaml

    return value if key in RAW_STRING_OPTIONS else yaml.safe_load(value)


def parse_scoped(pairs: Sequence[str], flag: str, default_scope: str | None) -> dict[str, dict[str, Any]]:
    """``SCOPE:KEY=VALUE`` pairs -> scope -> {key: YAML value}; ``KEY=VALUE`` goes to ``default_scope``
    (an error when it is None, i.e. when the scope is required)."""
    scoped: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, value = pair.partition("=")
        scope, colon, key = target.rpartition(":")
        if not sep or not key or (not colon and default_scope is None):
            form = "SCOPE:KEY=VALUE" if default_scope is None else "[SCOPE:]KEY=VALUE"
            raise ValueError(f"{flag} expects {form}, got {pair!r}")
        scoped.setdefault(scope if colon else default_scope, {})[key] = parse_option_value(key, value)  # type: ignore[index]
    return scoped


def parse_params(pairs: Sequence[str], flag: str = "--defense-arg") -> dict[str, Any]:
    """key=value pairs; values are parsed as YAML scalars (numbers, booleans, lists) when possible."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects key=value, got {pair!r}")
        params[key] = yaml.safe_load(value)
    return params


def parse_limit(text: str) -> int | str | None:
    """'all' -> every sample; '' or 'default' -> each task's documented default; N -> first N."""
    text = text.strip().lower()
    if text in ("", "default"):
        return None
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit takes a whole number, 'all' or 'default', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--limit must be at least 1")
    return value
