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
