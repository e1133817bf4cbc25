"""Statistics for comparing defenses: pure functions, no I/O, deterministic given their seed.

Rates (ASR, refusal rate, accuracy) are proportions; all functions here work on proportions in
[0, 1] unless they say otherwise, and callers convert to percent for display.

The arithmetic is the libraries' (statsmodels, scipy); this module fixes the conventions around them
(empty samples, degenerate tables, seeds) so that every caller gets the same numbers:

- One rate: Wilson score interval (``wilson_interval``: statsmodels ``proportion_confint``,
  ``method="wilson"``); ``harness.core.metrics`` re-exports it. Items that are not independent (the
  same image asked several times) get the design-effect-adjusted Wilson interval
  (``clustered_wilson_interval``, see its docstring).
- Two rates on different samples: Newcombe's hybrid score interval for the difference (Newcombe 1998,
  method 10), built from the two Wilson intervals (``newcombe_difference_interval``: statsmodels
  ``confint_proportions_2indep``, ``method="newcomb"``); the same construction from any two stored
  rate intervals (``newcombe_from_intervals``, for clustered rates).
- Two outcomes on the same samples (a defense vs ``none``): McNemar's test on the discordant pairs
  (``mcnemar``: statsmodels ``contingency_tables.mcnemar``) and a seeded percentile bootstrap over the
  pairs for the difference (or ratio) of means (``paired_bootstrap_difference``,
  ``paired_bootstrap_ratio``: ``scipy.stats.bootstrap`` with ``paired=True``; for binary outcomes the
  equivalent and much faster ``binary_bootstrap_difference``). ``paired_binary_comparison`` runs
  McNemar and the bootstrap on two ``sample id -> bool`` maps.

McNemar variant: with b and c the discordant counts (only base positive, only new positive), the
exact two-sided binomial test ``p = min(1, 2 * P(X <= min(b, c)))``, X ~ Binomial(b + c, 1/2), is used
while ``b + c < EXACT_MAX_DISCORDANT`` (25, where the chi-square approximation is still poor); from 25
on, the chi-square test with Edwards' continuity correction ``(max(|b - c| - 1, 0))^2 / (b + c)`` on one
degree of freedom. No discordant pair at all gives p = 1.

The libraries (numpy too) are imported inside the functions: ``harness.core.metrics`` imports this
module, nearly every command imports that, and statsmodels and scipy.stats take about a second to import.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ALPHA",
    "BOOTSTRAP_RESAMPLES",
    "EXACT_MAX_DISCORDANT",
    "Z_95",
    "BootstrapInterval",
    "binary_bootstrap_difference",
    "cluster_counts",
    "clustered_wilson_interval",
    "design_effect",
    "McNemarResult",
    "PairedBinaryComparison",
    "intervals_overlap",
    "mcnemar",
    "newcombe_difference_interval",
    "newcombe_from_intervals",
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
# The standard normal 97.5 % quantile. statsmodels derives its own from alpha (scipy's norm.isf(0.025)
# = 1.9599639845400545, one unit in the last place away); Z_95 stays the harness's named constant.
Z_95 = 1.959963984540054


def _alpha(z: float) -> float:
    """The two-sided level whose critical value is ``z`` (the libraries take alpha, callers pass z)."""
    if z == Z_95:
        return ALPHA
    from scipy.stats import norm

    return float(2 * norm.sf(z))


# ---------------------------------------------------------------------------------------------------
# one rate


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default); (0, 1) when n == 0.

    statsmodels ``proportion_confint(method="wilson")``, clipped to [0, 1] there. ``successes`` and
    ``n`` may be fractional (an effective sample size, see :func:`clustered_wilson_interval`).
    """
    if n <= 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint

    p = successes / n
    low, high = proportion_confint(successes, n, alpha=_alpha(z), method="wilson")
    # The interval always contains p; rounding alone once put the lower bound at 1.7e-16 for 0 of 200,
    # above the estimate (and broke error bars).
    return min(p, float(low)), max(p, float(high))


def cluster_counts(outcomes: Iterable[tuple[Hashable, bool]]) -> list[tuple[int, int]]:
    """``(hits, size)`` per cluster, in first-seen order, from ``(cluster key, outcome)`` pairs."""
    counts: dict[Hashable, list[int]] = {}
    for key, outcome in outcomes:
        entry = counts.setdefault(key, [0, 0])
        entry[0] += bool(outcome)
        entry[1] += 1
    return [(hits, size) for hits, size in counts.values()]


def _design_effect(clusters: Sequence[tuple[int, int]]) -> Fraction:
    """Exact design effect (see :func:`design_effect`); integer sums, so singletons give exactly 1."""
    n = sum(size for _, size in clusters)
    k = sum(hits for hits, _ in clusters)
    if any(size < 0 or not 0 <= hits <= size for hits, size in clusters):
        raise ValueError("each cluster needs 0 <= hits <= size")
    if n == 0 or k in (0, n):  # no variation observed: nothing to estimate the correlation from
        return Fraction(1)
    g = sum(1 for _, size in clusters if size)
    if g == 1:  # one cluster: no between-cluster variance can be estimated; the subset is one draw
        return Fraction(n)
    # with y_g, m_g the hits and size of cluster g and p = k / n:
    #   V_cluster = G / (G - 1) * sum_g (y_g - p m_g)^2 / n^2     (with-replacement cluster variance)
    #   V_srs     = p (1 - p) / (n - 1)                           (independent items)
    # multiplied out by n^2 so that every sum stays an integer
    spread = sum((n * hits - k * size) ** 2 for hits, size in clusters)
    return Fraction(g * (n - 1) * spread, (g - 1) * n * n * k * (n - k))


def design_effect(clusters: Sequence[tuple[int, int]]) -> float:
    """Estimated design effect of a proportion over clustered binary items, from ``(hits, size)`` per
    cluster: the cluster-robust variance of p over its variance for independent items.

    ``V_cluster / V_srs`` with ``V_cluster = G/(G-1) * sum_g (y_g - p m_g)^2 / n^2`` (the linearisation
    variance of the ratio estimator p = sum y_g / sum m_g when clusters are sampled with replacement;
    the same as statsmodels' CR1 cluster-robust variance of an intercept-only OLS fit) and
    ``V_srs = p (1 - p) / (n - 1)`` (that fit's ordinary variance). It is exactly 1 when every cluster
    has one item and approaches the cluster size when clusters are perfectly correlated. Conventions:
    1 when p is 0 or 1 (no variation to estimate it from), n for a single cluster.
    """
    return float(_design_effect(clusters))


def clustered_wilson_interval(clusters: Sequence[tuple[int, int]], z: float = Z_95) -> tuple[float, float]:
    """Design-effect-adjusted Wilson interval for a proportion over clusters of dependent items.

    ``clusters`` holds ``(hits, size)`` per cluster (an image and all questions asked about it). The
    interval is the Wilson score interval at the observed p with the effective sample size
    ``n_eff = n / deff`` in place of n (Kish, *Survey Sampling*, Wiley 1965: design effect and effective
    sample size; Korn & Graubard, "Confidence intervals for proportions with small expected number of
    positive counts estimated from survey data", Survey Methodology 24:193-201, 1998: score/exact
    intervals at the effective sample size; Dean & Pagano, "Evaluating confidence interval methods for
    binomial proportions in clustered surveys", J. Survey Statistics and Methodology 3:484-503, 2015,
    where the design-effect Wilson interval is among those with the best coverage). ``deff`` is
    :func:`design_effect`. As usual with this interval, a design effect below 1 is taken as 1 (n_eff is
    at most n) and p = 0 or 1 keeps n_eff = n, so the result is never narrower than the plain Wilson
    interval and is exactly that interval when every cluster has one item. No degrees-of-freedom
    (t-quantile) correction is applied: with few clusters (under about 30) the interval is still
    optimistic.
    """
    n = sum(size for _, size in clusters)
    k = sum(hits for hits, _ in clusters)
    deff = _design_effect(clusters)
    if deff <= 1:
        return wilson_interval(k, n, z)
    low, high = wilson_interval(float(k / deff), float(n / deff), z)  # same p, n_eff = n / deff
    p = k / n
    return min(p, low), max(p, high)


# ---------------------------------------------------------------------------------------------------
# unpaired


def newcombe_difference_interval(
    base_successes: int, base_n: int, new_successes: int, new_n: int, z: float = Z_95
) -> tuple[float, float, float]:
    """``(new - base, low, high)`` for two independent proportions (Newcombe's hybrid score interval).

    With p_b, p_n and their Wilson limits (l_b, u_b), (l_n, u_n), d = p_n - p_b:
    low = d - sqrt((p_n - l_n)^2 + (u_b - p_b)^2), high = d + sqrt((u_n - p_n)^2 + (p_b - l_b)^2);
    statsmodels ``confint_proportions_2indep(method="newcomb")``. NaNs when either side has no samples.
    """
    if base_n <= 0 or new_n <= 0:
        return math.nan, math.nan, math.nan
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        new_successes, new_n, base_successes, base_n, compare="diff", method="newcomb", alpha=_alpha(z)
    )
    return new_successes / new_n - base_successes / base_n, float(low), float(high)


def newcombe_from_intervals(
    base: tuple[float, float, float], new: tuple[float, float, float]
) -> tuple[float, float, float]:
    """``(new - base, low, high)`` from each proportion's ``(estimate, low, high)``.

    Newcombe's construction applied to whatever interval each rate carries (the MOVER of Zou & Donner,
    "Construction of confidence limits about effect measures: a general approach", Statistics in
    Medicine 27:1693-1702, 2008); with Wilson intervals it is :func:`newcombe_difference_interval`. Used
    for rates with design-effect-adjusted Wilson intervals, whose counts alone do not give the interval.
    NaNs when an estimate is NaN.
    """
    (p_base, base_low, base_high), (p_new, new_low, new_high) = base, new
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


def mcnemar(base_only: int, new_only: int, exact_below: int = EXACT_MAX_DISCORDANT) -> McNemarResult:
    """McNemar's test from the discordant counts b (``base_only``) and c (``new_only``); see module doc.

    statsmodels ``contingency_tables.mcnemar`` on the table [[., b], [c, .]] (the concordant cells do
    not enter the test).
    """
    if base_only < 0 or new_only < 0:
        raise ValueError("discordant counts must be non-negative")
    from statsmodels.stats.contingency_tables import mcnemar as library_mcnemar

    discordant = base_only + new_only
    table = [[0, base_only], [new_only, 0]]
    if discordant < exact_below:
        p_value = 1.0 if discordant == 0 else float(library_mcnemar(table, exact=True).pvalue)
        return McNemarResult(base_only, new_only, math.nan, p_value, "exact binomial")
    # statsmodels subtracts the correction without clamping, so b == c would give (0 - 1)^2 / (b + c) > 0;
    # Edwards' correction is max(|b - c| - 1, 0), i.e. no correction (and a statistic of 0) when b == c.
    result = library_mcnemar(table, exact=False, correction=base_only != new_only)
    return McNemarResult(base_only, new_only, float(result.statistic), float(result.pvalue),
                         "chi-square, continuity corrected")


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
    statistic: Callable[..., "np.ndarray"],
    resamples: int,
    seed: int,
    confidence: float,
) -> BootstrapInterval:
    """Percentile bootstrap over pairs: ``scipy.stats.bootstrap(paired=True)`` draws ``resamples`` rows
    of n pair indices with replacement from ``numpy.random.default_rng(seed)`` and evaluates
    ``statistic(base, new, axis=-1)`` on each row.

    The percentiles (linear interpolation, as scipy's ``method="percentile"``) are taken here over the
    finite values of scipy's bootstrap distribution: a ratio whose resampled denominator is 0 says
    nothing, and scipy's own interval would turn NaN as soon as one resample is undefined.
    """
    import numpy as np

    base_array = np.asarray(base, dtype=float)
    new_array = np.asarray(new, dtype=float)
    if base_array.shape != new_array.shape or base_array.ndim != 1:
        raise ValueError("paired bootstrap needs two equally long 1-d sequences")
    n = base_array.size
    if n == 0:
        return BootstrapInterval(math.nan, math.nan, math.nan, 0, resamples, seed, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(statistic(base_array, new_array, axis=-1))
        if n == 1:  # scipy needs two observations; every resample of one pair is that pair
            values = np.full(resamples, estimate)
        else:
            from scipy.stats import bootstrap

            with warnings.catch_warnings():  # about the NaN interval scipy computes and we do not use
                warnings.simplefilter("ignore")
                result = bootstrap((base_array, new_array), statistic, paired=True, vectorized=True,
                                   n_resamples=resamples, rng=np.random.default_rng(seed),
                                   method="percentile", confidence_level=confidence)
            values = result.bootstrap_distribution
    values = values[np.isfinite(values)]
    if values.size == 0:
        return BootstrapInterval(estimate, math.nan, math.nan, n, resamples, seed, confidence)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return BootstrapInterval(estimate, float(low), float(high), n, resamples, seed, confidence)


def _mean_difference(base: "np.ndarray", new: "np.ndarray", axis: int = -1) -> "np.ndarray":
    return new.mean(axis=axis) - base.mean(axis=axis)


def _mean_ratio(base: "np.ndarray", new: "np.ndarray", axis: int = -1) -> "np.ndarray":
    return new.mean(axis=axis) / base.mean(axis=axis)


def paired_bootstrap_difference(
    base: Sequence[float],
    new: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Interval for ``mean(new) - mean(base)`` over pairs (base[i], new[i]) of the same sample."""
    return _paired_bootstrap(base, new, _mean_difference, resamples, seed, confidence)


def paired_bootstrap_ratio(
    base: Sequence[float],
    new: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    """Interval for ``mean(new) / mean(base)`` over pairs (e.g. latency of a defense vs ``none``)."""
    return _paired_bootstrap(base, new, _mean_ratio, resamples, seed, confidence)


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

    numpy, not ``scipy.stats.bootstrap``: scipy resamples observations (n index draws per resample) and
    has no way to draw counts; the percentiles are the same linear-interpolated ones scipy's
    ``method="percentile"`` takes.
    """
    if n_pairs <= 0:
        return BootstrapInterval(math.nan, math.nan, math.nan, 0, resamples, seed, confidence)
    import numpy as np

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
