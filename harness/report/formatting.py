"""Number formatting and orderings shared by the HTML and LaTeX reports (metric labels, kinds and order
come from the metric table, ``harness.core.metrics.METRICS``)."""

from __future__ import annotations

import math

MISSING = "n/a"
BASELINE_DEFENSE = "none"


def is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: float | None, digits: int = 1) -> str:
    """Fixed decimals (one by default: metric values are percents), "n/a" for None/NaN."""
    if is_missing(value):
        return MISSING
    return f"{value:.{digits}f}"


def format_signed(value: float | None, digits: int = 1) -> str:
    """A difference with its sign ("+3.0", "-1.5"); "n/a" for None/NaN."""
    if is_missing(value):
        return MISSING
    return f"{value:+.{digits}f}"


def format_interval(low: float | None, high: float | None, digits: int = 1, signed: bool = False) -> str:
    """``[low, high]``, or "" when either end is missing."""
    if is_missing(low) or is_missing(high):
        return ""
    fmt = format_signed if signed else format_number
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def format_p(p_value: float | None) -> str:
    """p-values: three decimals, "<0.001" below that, "n/a" when missing."""
    if is_missing(p_value):
        return MISSING
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"  # type: ignore[operator]


def setting_sort_key(model: str, defense: str) -> tuple[str, bool, str]:
    """Models alphabetically; within a model the undefended baseline first."""
    return (model, defense != BASELINE_DEFENSE, defense)
