"""Statistics for comparing defenses: pure functions, no I/O, deterministic given their seed.

Rates (ASR, refusal rate, accuracy) are proportions; all functions here work on proportions in
[0, 1] unless they say otherwise, and callers convert to percent for display.

- One rate: Wilson score interval (``wilson_interval``, reused from ``harness.core.metrics``).
- Two rates on different samples: Newcombe's hybrid score interval for the difference (Newcombe 1998,
  method 10), built from the two Wilson intervals (``newcombe_difference_interval``).
- Two outcomes on the same samples (a defense vs ``none``): McNemar's test on the discordant pairs
  (``mcnemar``) and a seeded percentile bootstrap over the pairs for the difference (or ratio) of
  means (``paired_bootstrap_difference``, ``paired_bootstrap_ratio``; for binary outcomes the
  equivalent and much faster ``binary_bootstrap_difference``). ``paired_binary_comparison`` runs
  McNemar and the bootstrap on two ``sample id -> bool`` maps.

McNemar variant: with b and c the discordant counts (only base positive, only new positive), the
exact two-sided binomial test ``p = min(1, 2 * P(X <= min(b, c)))``, X ~ Binomial(b + c, 1/2), is used
while ``b + c < EXACT_MAX_DISCORDANT`` (25, where the chi-square approximation is still poor); from 25
on, the chi-square test with Edwards' continuity correction ``(max(|b - c| - 1, 0))^2 / (b + c)`` on one
degree of freedom. No discordant pair at all gives p = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from harness.core.metrics import Z_95, wilson_interval

__all__ = [
    "ALPHA",
    "BOOTSTRAP_RESAMPLES",
    "EXACT_MAX_DISCORDANT",
    "BootstrapInterval",
    "binary_bootstrap_difference",
    "McNemarResult",
    "PairedBinaryComparison",
    "intervals_overlap",
    "mcnemar",
    "newcombe_difference_interval",
    "paired_binary_comparison",
    "paired_bootstrap_difference",
    "paired_bootstrap_ratio",
    "significance_mark",
    "wilson_interval",
]

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
EXACT_MAX_DISCORDANT = 25
SIGNIFICANCE_MARK = "*"


# ---------------------------------------------------------------------------------------------------
# unpaired


def newcombe_difference_interval(
    base_successes: int, base_n: int, new_successes: int, new_n: int, z: float = Z_95
) -> tuple[float, float, float]:
    """``(new - base, low, high)`` for two independent proportions (Newcombe's hybrid score interval).

    With p_b, p_n and their Wilson limits (l_b, u_b), (l_n, u_n), d = p_n - p_b:
    low = d - sqrt((p_n - l_n)^2 + (u_b - p_b)^2), high = d + sqrt((u_n - p_n)^2 + (p_b - l_b)^2).
    NaNs when either side has no samples.
    """
    if base_n <= 0 or new_n <= 0:
        return math.nan, math.nan, math.nan
    p_base, p_new = base_successes / base_n, new_successes / new_n
    base_low, base_high = wilson_interval(base_successes, base_n, z)
    new_low, new_high = wilson_interval(new_successes, new_n, z)
    difference = p_new - p_base
    low = difference - math.sqrt((p_new - new_low) ** 2 + (base_high - p_base) ** 2)
    high = difference + math.sqrt((new_high - p_new) ** 2 + (p_base - base_low) ** 2)
    return difference, low, high


def intervals_overlap(first: tuple[float, float], second: tuple[float, float]) -> bool:
    """True when two closed intervals share at least one point."""
    return max(first[0], second[0]) <= min(first[1], second[1])


# ---------------------------------------------------------------------------------------------------
# paired: McNemar


@dataclass(frozen=True)
class McNemarResult:
    base_only: int  # b: pairs where only the base outcome is positive
    new_only: int  # c: pairs where only the new outcome is positive
    statistic: float  # chi-square statistic; NaN for the exact test
    p_value: float
    method: str  # "exact binomial" or "chi-square, continuity corrected"


def _binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer sums, one division)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def mcnemar(base_only: int, new_only: int, exact_below: int = EXACT_MAX_DISCORDANT) -> McNemarResult:
    """McNemar's test from the discordant counts b (``base_only``) and c (``new_only``); see module doc."""
    if base_only < 0 or new_only < 0:
        raise ValueError("discordant counts must be non-negative")
    discordant = base_only + new_only
    if discordant < exact_below:
        p_value = 1.0 if discordant == 0 else min(1.0, 2 * _binomial_half_cdf(min(base_only, new_only), discordant))
        return McNemarResult(base_only, new_only, math.nan, p_value, "exact binomial")
    statistic = max(abs(base_only - new_only) - 1, 0) ** 2 / discordant
    # survival function of chi-square with one degree of freedom
    p_value = math.erfc(math.sqrt(statistic / 2))
    return McNemarResult(base_only, new_only, statistic, p_value, "chi-square, continuity corrected")


# ---------------------------------------------------------------------------------------------------
# paired: bootstrap


@dataclass(frozen=True)
class BootstrapInterval:
    estimate: float  # the statistic on the observed pairs
    low: float
    high: float
    n: int  # pairs
    resamples: int
    seed: int
    confidence: float


def _paired_bootstrap(
    base: Sequence[float],
    new: Sequence[float],
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    resamples: int,
    seed: int,
    confidence: float,
) -> BootstrapInterval:
    """Percentile bootstrap: resample pair indices with replacement, ``statistic`` per resample row."""
    base_array = np.asarray(base, dtype=float)
    new_array = np.asarray(new, dtype=float)
    if base_array.shape != new_array.shape or base_array.ndim != 1:
        raise ValueError("paired bootstrap needs two equally long 1-d sequences")
    n = base_array.size
    if n == 0:
        return BootstrapInterval(math.nan, math.nan, math.nan, 0, resamples, seed, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(statistic(base_array[None, :], new_array[None, :])[0])
        indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
        values = statistic(base_array[indices], new_array[indices])
    values = values[np.isfinite(values)]  # a ratio whose resampled denominator is 0 says nothing
    if values.size == 0:
        return BootstrapInterval(estimate, math.nan, math.nan, n, resamples, seed, confidence)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return BootstrapInterval(estimate, float(low), float(high), n, resamples, seed, confidence)


def paired_bootstrap_difference(
    base: Sequence[float],
    new: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Interval for ``mean(new) - mean(base)`` over pairs (base[i], new[i]) of the same sample."""
    return _paired_bootstrap(
        base, new, lambda b, n: n.mean(axis=1) - b.mean(axis=1), resamples, seed, confidence
    )


def paired_bootstrap_ratio(
    base: Sequence[float],
    new: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Interval for ``mean(new) / mean(base)`` over pairs (e.g. latency of a defense vs ``none``)."""
    return _paired_bootstrap(
        base, new, lambda b, n: n.mean(axis=1) / b.mean(axis=1), resamples, seed, confidence
    )


# ---------------------------------------------------------------------------------------------------
# paired binary outcomes


@dataclass(frozen=True)
class PairedBinaryComparison:
    """A defense's binary outcomes against the baseline's on the samples both have (rates in [0, 1])."""

    n_pairs: int
    base_rate: float
    new_rate: float
    difference: BootstrapInterval  # new_rate - base_rate with its percentile bootstrap interval
    test: McNemarResult

    @property
    def p_value(self) -> float:
        return self.test.p_value

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.n_pairs > 0 and self.test.p_value < alpha


def paired_binary_comparison(
    base: Mapping[str, bool],
    new: Mapping[str, bool],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedBinaryComparison:
    """Pair two ``sample id -> outcome`` maps on their shared ids; McNemar plus bootstrap difference."""
    shared = set(base) & set(new)
    base_only = sum(1 for sample_id in shared if base[sample_id] and not new[sample_id])
    new_only = sum(1 for sample_id in shared if new[sample_id] and not base[sample_id])
    count = len(shared)
    return PairedBinaryComparison(
        n_pairs=count,
        base_rate=sum(1 for sample_id in shared if base[sample_id]) / count if count else math.nan,
        new_rate=sum(1 for sample_id in shared if new[sample_id]) / count if count else math.nan,
        difference=binary_bootstrap_difference(
            base_only, new_only, count, resamples=resamples, seed=seed, confidence=confidence
        ),
        test=mcnemar(base_only, new_only),
    )


def binary_bootstrap_difference(
    base_only: int,
    new_only: int,
    n_pairs: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """``paired_bootstrap_difference`` for binary pairs, from the discordant counts alone.

    With binary outcomes, new - base per pair is +1 (new only), -1 (base only) or 0, so resampling n
    pairs with replacement is drawing the three counts from Multinomial(n, observed shares): the same
    bootstrap distribution as resampling indices, at O(resamples) instead of O(resamples x n).
    """
    if n_pairs <= 0:
        return BootstrapInterval(math.nan, math.nan, math.nan, 0, resamples, seed, confidence)
    shares = [base_only / n_pairs, new_only / n_pairs]
    shares.append(max(0.0, 1.0 - shares[0] - shares[1]))
    counts = np.random.default_rng(seed).multinomial(n_pairs, shares, size=resamples)
    values = (counts[:, 1] - counts[:, 0]) / n_pairs
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return BootstrapInterval((new_only - base_only) / n_pairs, float(low), float(high), n_pairs, resamples, seed, confidence)


def significance_mark(p_value: float | None, alpha: float = ALPHA) -> str:
    """``*`` when p < alpha, else the empty string (also for a missing or NaN p)."""
    if p_value is None or math.isnan(p_value):
        return ""
    return SIGNIFICANCE_MARK if p_value < alpha else ""
