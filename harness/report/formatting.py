"""Number formatting, metric labels and orderings shared by the HTML and LaTeX reports."""

from __future__ import annotations

import math

MISSING = "n/a"
BASELINE_DEFENSE = "none"

# Headline metrics first, in this order; any other metric follows alphabetically.
METRIC_ORDER = ("asr", "refusal_rate", "accuracy", "circular_accuracy", "mme_perception", "mme_cognition")
# Display names only; a metric without one is shown under its own name.
METRIC_LABELS = {
    "asr": "ASR (harmful)",
    "refusal_rate": "Refusal rate (benign)",
    "accuracy": "Accuracy",
    "circular_accuracy": "Circular accuracy",
    "vanilla_accuracy": "Vanilla accuracy",
    "mme_perception": "MME perception (score)",
    "mme_cognition": "MME cognition (score)",
    "mme_score": "MME score",
    "acc_plus": "acc+",
    "undecided": "Undecided (count)",
    "empty_answers": "Empty answers (count)",
}
# Counts rather than rates: shown as notes under the headline table, left out of its comparisons.
COUNT_METRICS = frozenset({"undecided", "empty_answers"})
# Rates with no better direction (POPE's yes-ratio: 50 % is unbiased): shown, but never marked best,
# pooled into a utility axis, or gated by `harness compare`.
NEUTRAL_METRICS = frozenset({"yes_ratio"})


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


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def metric_sort_key(metric: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def setting_sort_key(model: str, defense: str) -> tuple[str, bool, str]:
    """Models alphabetically; within a model the undefended baseline first."""
    return (model, defense != BASELINE_DEFENSE, defense)
