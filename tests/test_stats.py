"""harness.core.stats against hand-computed and published values."""

from __future__ import annotations

import math
import random

import pytest

from harness.core import metrics, stats
from harness.core.stats import (
    binary_bootstrap_difference,
    intervals_overlap,
    mcnemar,
    newcombe_difference_interval,
    paired_binary_comparison,
    paired_bootstrap_difference,
    paired_bootstrap_ratio,
    significance_mark,
)


def test_wilson_is_reused_from_metrics():
    assert stats.wilson_interval is metrics.wilson_interval


def test_mcnemar_exact_small_table_by_hand():
    # b = 1, c = 6: P(X <= 1 | n = 7, 1/2) = (C(7,0) + C(7,1)) / 2^7 = 8 / 128; two-sided: 16 / 128
    result = mcnemar(1, 6)
    assert result.method == "exact binomial"
    assert result.p_value == pytest.approx(16 / 128, abs=1e-12)
    assert math.isnan(result.statistic)
    # b = 0, c = 5: 2 * (1 / 32)
    assert mcnemar(0, 5).p_value == pytest.approx(2 / 32, abs=1e-12)
    # b = 2, c = 8 (n = 10): 2 * (1 + 10 + 45) / 1024
    assert mcnemar(2, 8).p_value == pytest.approx(2 * 56 / 1024, abs=1e-12)
    # symmetric in b and c; balanced tables and empty tables give p = 1
    assert mcnemar(6, 1).p_value == mcnemar(1, 6).p_value
    assert mcnemar(4, 4).p_value == 1.0
    assert mcnemar(0, 0).p_value == 1.0


def test_mcnemar_chi_square_with_continuity_correction_by_hand():
    # b = 10, c = 30: (|10 - 30| - 1)^2 / 40 = 361 / 40 = 9.025; chi-square(1) tail = P(|Z| > 3.00416) = 0.00266
    result = mcnemar(10, 30)
    assert result.method == "chi-square, continuity corrected"
    assert result.statistic == pytest.approx(9.025, abs=1e-12)
    assert result.p_value == pytest.approx(0.002663, abs=5e-6)
    # balanced large tables: the corrected statistic is clamped at 0, so p = 1
    assert mcnemar(20, 20).p_value == 1.0


def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs():
    assert mcnemar(10, 14).method == "exact binomial"  # 24 discordant
    assert mcnemar(10, 15).method == "chi-square, continuity corrected"  # 25
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


def test_newcombe_interval_matches_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 - 48/80 = 0.2000, method 10: 0.0524 to 0.3339
    difference, low, high = newcombe_difference_interval(48, 80, 56, 70)
    assert difference == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    # example (f): 0/10 - 0/20, method 10: -0.1611 to 0.2775 (here new - base, so mirrored)
    difference, low, high = newcombe_difference_interval(0, 10, 0, 20)
    assert difference == 0.0
    assert (low, high) == (pytest.approx(-0.2775, abs=1e-4), pytest.approx(0.1611, abs=1e-4))
    assert all(math.isnan(x) for x in newcombe_difference_interval(0, 0, 1, 2))


def test_intervals_overlap():
    assert intervals_overlap((0, 2), (2, 3))
    assert intervals_overlap((0, 5), (1, 2))
    assert not intervals_overlap((0, 1.9), (2, 3))


def _simulated_pairs(rng: random.Random, n: int, base_rate: float, lift: float) -> tuple[list[bool], list[bool]]:
    """Pairs whose true difference (new - base) is exactly ``lift``: new adds successes, never removes."""
    base = [rng.random() < base_rate for _ in range(n)]
    flip = lift / (1 - base_rate)  # P(new | not base) so that P(new) - P(base) = lift
    new = [b or rng.random() < flip for b in base]
    return base, new


def test_paired_bootstrap_contains_true_difference_and_is_seeded():
    base, new = _simulated_pairs(random.Random(7), 300, 0.3, 0.15)
    first = paired_bootstrap_difference(base, new, resamples=2000, seed=3)
    again = paired_bootstrap_difference(base, new, resamples=2000, seed=3)
    other = paired_bootstrap_difference(base, new, resamples=2000, seed=4)
    assert first == again  # deterministic for a seed
    assert (first.low, first.high) != (other.low, other.high)
    assert first.estimate == pytest.approx(sum(new) / 300 - sum(base) / 300)
    assert first.low < 0.15 < first.high
    assert first.low > 0  # a 15-point lift on 300 pairs is clearly non-zero
    assert first.n == 300 and first.resamples == 2000


def test_bootstrap_coverage_is_close_to_95_percent():
    rng = random.Random(11)
    covered = 0
    trials = 200
    for trial in range(trials):
        base, new = _simulated_pairs(rng, 120, 0.4, 0.1)
        n = len(base)
        interval = binary_bootstrap_difference(
            sum(b and not x for b, x in zip(base, new)), sum(x and not b for b, x in zip(base, new)), n,
            resamples=1000, seed=trial,
        )
        covered += interval.low <= 0.1 <= interval.high
    assert 0.88 <= covered / trials <= 0.99


def test_binary_shortcut_agrees_with_index_resampling():
    base, new = _simulated_pairs(random.Random(5), 200, 0.5, 0.2)
    by_index = paired_bootstrap_difference(base, new, resamples=4000, seed=1)
    comparison = paired_binary_comparison(
        {str(i): b for i, b in enumerate(base)}, {str(i): x for i, x in enumerate(new)}, resamples=4000, seed=1
    )
    shortcut = comparison.difference
    assert shortcut.estimate == pytest.approx(by_index.estimate)
    assert shortcut.low == pytest.approx(by_index.low, abs=0.02)
    assert shortcut.high == pytest.approx(by_index.high, abs=0.02)


def test_paired_bootstrap_ratio():
    base = [1.0, 2.0, 3.0, 4.0]
    doubled = paired_bootstrap_ratio(base, [2 * x for x in base], seed=0)
    assert doubled.estimate == pytest.approx(2.0)
    assert doubled.low == pytest.approx(2.0) and doubled.high == pytest.approx(2.0)  # every resample is 2
    empty = paired_bootstrap_ratio([], [])
    assert empty.n == 0 and math.isnan(empty.estimate)
    with pytest.raises(ValueError):
        paired_bootstrap_ratio([1.0], [1.0, 2.0])


def test_paired_binary_comparison_uses_shared_ids_only():
    base = {"a": True, "b": True, "c": False, "d": False, "only-base": True}
    new = {"a": True, "b": False, "c": False, "d": True, "only-new": False}
    comparison = paired_binary_comparison(base, new, seed=0)
    assert comparison.n_pairs == 4
    assert (comparison.test.base_only, comparison.test.new_only) == (1, 1)  # b flips off, d flips on
    assert comparison.base_rate == 0.5 and comparison.new_rate == 0.5
    assert comparison.difference.estimate == 0.0
    assert comparison.p_value == 1.0 and not comparison.significant()


def test_significant_paired_comparison():
    ids = [f"s{i}" for i in range(40)]
    base = {sid: i < 5 for i, sid in enumerate(ids)}  # 5 / 40
    new = {sid: i < 25 for i, sid in enumerate(ids)}  # 25 / 40: 20 discordant pairs, all one way
    comparison = paired_binary_comparison(base, new)
    assert comparison.test.method == "exact binomial"
    assert comparison.p_value == pytest.approx(2 / 2**20)
    assert comparison.significant()
    assert comparison.difference.estimate == pytest.approx(0.5)
    assert comparison.difference.low > 0


def test_significance_mark():
    assert significance_mark(0.01) == "*"
    assert significance_mark(0.05) == ""  # strictly below alpha
    assert significance_mark(0.2) == ""
    assert significance_mark(None) == "" and significance_mark(float("nan")) == ""
    assert significance_mark(0.02, alpha=0.01) == ""


# ---------------------------------------------------------------------------------------------------
# cross-checks against the libraries (and by hand) on fixed tables, edge cases included

from fractions import Fraction  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint  # noqa: E402

from harness.core.stats import Z_95, newcombe_from_intervals, wilson_interval  # noqa: E402

TABLES = [(0, 1), (1, 1), (0, 20), (20, 20), (1, 29), (15, 148), (81, 263), (8, 10), (150, 300), (3, 2000)]


def test_wilson_by_hand():
    # 8 of 10, z^2 = 3.8414588: centre = (0.8 + z^2 / 20) / (1 + z^2 / 10) = 0.99207 / 1.38415 = 0.716740,
    # half = z * sqrt(0.8 * 0.2 / 10 + z^2 / 400) / 1.38415 = z * 0.160011 / 1.38415 = 0.226578
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.716740 - 0.226578, abs=2e-6), pytest.approx(0.716740 + 0.226578, abs=2e-6))
    # 0 of n: the lower limit is 0 and the upper z^2 / (n + z^2) (the square roots cancel); n of n mirrors it
    z2 = Z_95**2
    assert wilson_interval(0, 20) == (0.0, pytest.approx(z2 / (20 + z2), abs=1e-15))
    assert wilson_interval(20, 20) == (pytest.approx(20 / (20 + z2), abs=1e-15), 1.0)
    # Newcombe (1998), Stat Med 17:857, Table I, method 3 (score): 81/263, 15/148, 0/20, 1/29
    published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}
    for (k, n), (low, high) in published.items():
        assert wilson_interval(k, n) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


@pytest.mark.parametrize(("k", "n"), TABLES)
def test_wilson_matches_statsmodels_and_contains_the_estimate(k, n):
    library = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == (pytest.approx(library[0], abs=1e-15), pytest.approx(library[1], abs=1e-15))
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    # another confidence level goes through alpha = 2 * sf(z)
    library_90 = proportion_confint(k, n, alpha=0.10, method="wilson")
    assert wilson_interval(k, n, z=scipy_stats.norm.isf(0.05)) == (
        pytest.approx(min(library_90[0], k / n), abs=1e-12), pytest.approx(max(library_90[1], k / n), abs=1e-12))


def test_wilson_without_samples_is_the_unit_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("base", "new"), [((48, 80), (56, 70)), ((0, 10), (0, 20)), ((0, 15), (15, 15)),
                                           ((30, 30), (0, 12)), ((5, 40), (5, 40)), ((1, 1), (0, 1))])
def test_newcombe_matches_statsmodels_and_the_construction_from_wilson_limits(base, new):
    difference, low, high = newcombe_difference_interval(*base, *new)
    library = confint_proportions_2indep(new[0], new[1], base[0], base[1], compare="diff", method="newcomb")
    assert (low, high) == (pytest.approx(library[0], abs=1e-12), pytest.approx(library[1], abs=1e-12))
    assert difference == pytest.approx(new[0] / new[1] - base[0] / base[1])
    assert low <= difference <= high
    p_base, p_new = base[0] / base[1], new[0] / new[1]
    from_limits = newcombe_from_intervals((p_base, *wilson_interval(*base)), (p_new, *wilson_interval(*new)))
    assert from_limits == (pytest.approx(difference), pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_newcombe_edge_cases():
    # n = 0 on either side: nothing to compare
    assert all(math.isnan(x) for x in newcombe_difference_interval(0, 0, 3, 4))
    assert all(math.isnan(x) for x in newcombe_difference_interval(3, 4, 0, 0))
    # 0 of n against n of n: the difference is 1, its interval reaches 1 and excludes 0
    difference, low, high = newcombe_difference_interval(0, 10, 10, 10)
    assert difference == 1.0 and high == pytest.approx(1.0) and 0 < low < 1
    # the interval is wider from wider limits (what a clustered rate passes in)
    plain = newcombe_from_intervals((0.5, *wilson_interval(10, 20)), (0.8, *wilson_interval(16, 20)))
    wider = newcombe_from_intervals((0.5, 0.2, 0.8), (0.8, 0.5, 0.95))
    assert wider[1] < plain[1] and wider[2] > plain[2]


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (1, 6), (2, 8), (7, 7), (0, 24), (12, 12), (10, 14),
                                      (0, 25), (10, 15), (10, 30), (20, 20), (21, 20), (100, 140), (0, 300)])
def test_mcnemar_matches_scipy_and_statsmodels(b, c):
    from statsmodels.stats.contingency_tables import mcnemar as library_mcnemar

    result = mcnemar(b, c)
    if b + c == 0:
        assert result.p_value == 1.0 and result.method == "exact binomial"
    elif b + c < 25:
        # the exact test is the two-sided binomial test of min(b, c) successes in b + c at 1/2
        assert result.p_value == pytest.approx(scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)
        assert result.p_value == pytest.approx(min(1.0, float(2 * Fraction(sum(math.comb(b + c, i) for i in range(min(b, c) + 1)), 2 ** (b + c)))), rel=1e-12)
        assert math.isnan(result.statistic)
    else:
        statistic = max(abs(b - c) - 1, 0) ** 2 / (b + c)  # Edwards' correction, clamped at 0
        assert result.statistic == pytest.approx(statistic, rel=1e-12)
        assert result.p_value == pytest.approx(scipy_stats.chi2.sf(statistic, 1), rel=1e-12)
        if b != c:  # statsmodels' corrected test is the same whenever the correction does not overshoot
            assert result.p_value == pytest.approx(library_mcnemar([[0, b], [c, 0]], exact=False).pvalue, rel=1e-12)
        else:  # b == c: statsmodels would report (0 - 1)^2 / (b + c) > 0; the clamped statistic is 0, p = 1
            assert library_mcnemar([[0, b], [c, 0]], exact=False).pvalue < 1.0 and result.p_value == 1.0


def test_mcnemar_edge_cases_by_hand():
    # every discordant pair one way: p = 2 / 2^(b + c) exactly while exact
    assert mcnemar(0, 24).p_value == pytest.approx(2 / 2**24, rel=1e-12)
    # from 25 on: (25 - 1)^2 / 25 = 23.04 = 4.8^2; P(chi2_1 > 23.04) = P(|Z| > 4.8) = 2 * 7.933e-7 (normal table)
    result = mcnemar(0, 25)
    assert result.statistic == pytest.approx(23.04)
    assert result.p_value == pytest.approx(math.erfc(4.8 / math.sqrt(2)), rel=1e-12)
    assert result.p_value == pytest.approx(2 * 7.933e-7, rel=1e-4)
    # no discordant pair, however many pairs agree: p = 1 (not significant)
    assert paired_binary_comparison({"a": True, "b": False}, {"a": True, "b": False}).p_value == 1.0


def _index_bootstrap(base, new, statistic, resamples, seed, confidence=0.95):
    """The textbook paired percentile bootstrap with numpy alone, for the cross-check."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    indices = np.random.default_rng(seed).integers(0, base.size, size=(resamples, base.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = statistic(base[indices], new[indices])
    values = values[np.isfinite(values)]
    return tuple(np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2]))


def test_paired_bootstrap_is_scipys_and_the_textbook_resampling():
    base, new = _simulated_pairs(random.Random(3), 80, 0.3, 0.2)
    ours = paired_bootstrap_difference(base, new, resamples=1500, seed=9)
    library = scipy_stats.bootstrap((np.asarray(base, float), np.asarray(new, float)),
                                    lambda b, n, axis=-1: n.mean(axis=axis) - b.mean(axis=axis), paired=True,
                                    vectorized=True, n_resamples=1500, rng=np.random.default_rng(9), method="percentile")
    assert (ours.low, ours.high) == (pytest.approx(library.confidence_interval.low, abs=1e-12),
                                     pytest.approx(library.confidence_interval.high, abs=1e-12))
    textbook = _index_bootstrap(base, new, lambda b, n: n.mean(axis=1) - b.mean(axis=1), 1500, 9)
    assert (ours.low, ours.high) == (pytest.approx(textbook[0], abs=1e-12), pytest.approx(textbook[1], abs=1e-12))


def test_paired_bootstrap_ratio_drops_undefined_resamples_only():
    # base latency 0 on most pairs: some resamples have a zero mean denominator; they are left out
    base, new = [0.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 3.0]
    ratio = paired_bootstrap_ratio(base, new, resamples=500, seed=2)
    textbook = _index_bootstrap(base, new, lambda b, n: n.mean(axis=1) / b.mean(axis=1), 500, 2)
    assert ratio.estimate == pytest.approx(3.0)
    assert (ratio.low, ratio.high) == (pytest.approx(textbook[0]), pytest.approx(textbook[1]))
    assert math.isfinite(ratio.low) and math.isfinite(ratio.high)


def test_paired_bootstrap_edge_cases():
    one = paired_bootstrap_difference([0.0], [1.0], seed=0)  # one pair: every resample is that pair
    assert (one.estimate, one.low, one.high, one.n) == (1.0, 1.0, 1.0, 1)
    undefined = paired_bootstrap_ratio([0.0], [1.0])
    assert math.isinf(undefined.estimate) and math.isnan(undefined.low) and math.isnan(undefined.high)
    empty = paired_bootstrap_difference([], [])
    assert empty.n == 0 and math.isnan(empty.low)
    assert binary_bootstrap_difference(0, 0, 0).n == 0
    # no discordant pair: the difference is exactly 0 in every resample
    same = binary_bootstrap_difference(0, 0, 50)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
