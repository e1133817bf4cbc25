"""Cohen's kappa, percent agreement and n: hand-computed tables, degenerate cases, and which verdicts
are compared between two judges."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from harness.core.agreement import (
    agreement,
    cohens_kappa,
    judge_verdict_counts,
    kappa_from_counts,
    pairwise_agreement,
)
from harness.pipeline.judge import JUDGE_ERROR_LABEL
from harness.core.records import Judgement, Sample


def labels(a: int, b: int, c: int, d: int) -> tuple[list[bool], list[bool]]:
    """Two label lists with a 2 x 2 table of (both True, first only, second only, both False)."""
    first = [True] * a + [True] * b + [False] * c + [False] * d
    second = [True] * a + [False] * b + [True] * c + [False] * d
    return first, second


def test_textbook_example_fifty_proposals():
    # The standard worked example (Wikipedia "Cohen's kappa"; also the example of R fmsb::Kappa.test,
    # matrix(c(20, 10, 5, 15), 2, 2)): 50 grant proposals, both readers say yes to 20, no to 15;
    # A yes / B no 5, A no / B yes 10.
    # p_o = (20 + 15) / 50 = 0.70; A says yes 25/50 = 0.5, B 30/50 = 0.6;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.50; kappa = (0.70 - 0.50) / (1 - 0.50) = 0.40.
    table = agreement(*labels(20, 5, 10, 15))
    assert (table.n, table.agreed) == (50, 35)
    assert table.percent == pytest.approx(70.0)
    assert table.kappa == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Same 60 % agreement, different kappa (the "prevalence" paradox pair of the same article):
        # (45, 15, 25, 15): p_e = 0.6 * 0.7 + 0.4 * 0.3 = 0.54 -> (0.60 - 0.54) / 0.46 = 3/23
        ((45, 15, 25, 15), Fraction(3, 23)),
        # (25, 35, 5, 35): p_e = 0.6 * 0.3 + 0.4 * 0.7 = 0.46 -> (0.60 - 0.46) / 0.54 = 7/27
        ((25, 35, 5, 35), Fraction(7, 27)),
        # 20 items, (12, 4, 2, 2): p_o = 0.7, p_e = 0.8 * 0.7 + 0.2 * 0.3 = 0.62 -> 0.08 / 0.38 = 4/19
        ((12, 4, 2, 2), Fraction(4, 19)),
    ],
)
def test_hand_computed_tables(counts, expected):
    assert kappa_from_counts(*counts) == pytest.approx(float(expected), abs=1e-12)
    assert cohens_kappa(*labels(*counts)) == pytest.approx(float(expected), abs=1e-12)
    assert agreement(*labels(*counts)).percent == pytest.approx(100 * (counts[0] + counts[3]) / sum(counts))


def test_kappa_is_symmetric_in_the_raters():
    first, second = labels(12, 4, 2, 2)
    assert cohens_kappa(first, second) == cohens_kappa(second, first)


def test_perfect_and_total_disagreement():
    assert cohens_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    # a = d = 0, b = c = 2: p_o = 0, p_e = 0.5 -> -1
    assert cohens_kappa([True, True, False, False], [False, False, True, True]) == -1.0


def test_degenerate_cases_follow_the_definition():
    # Both raters give every item the same single label: p_o = p_e = 1, kappa = 0/0 = undefined (NaN),
    # while the percent agreement is 100.
    table = agreement([True] * 5, [True] * 5)
    assert math.isnan(table.kappa) and table.percent == 100.0 and table.n == 5
    assert math.isnan(cohens_kappa([False] * 3, [False] * 3))
    # No items: nothing is defined.
    empty = agreement([], [])
    assert empty.n == 0 and math.isnan(empty.percent) and math.isnan(empty.kappa)
    # One rater constant, the other not: (1, 1, 0, 0), n = 2: n(a + d) = 2, E = 2 * 1 + 0 * 1 = 2 -> 0 / 2 = 0.
    assert cohens_kappa([True, True], [True, False]) == 0.0
    # The raters never agree and one is constant: (0, 2, 0, 0): E = 2 * 0 + 0 * 2 = 0 -> (0 - 0) / 4 = 0.
    assert cohens_kappa([True, True], [False, False]) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="different numbers"):
        agreement([True], [True, False])
    with pytest.raises(ValueError):
        kappa_from_counts(-1, 0, 0, 0)


# ---------------------------------------------------------------------------------------------------
# which verdicts are compared


def sample(sid: str, harmful: bool | None) -> Sample:
    return Sample(task="t", id=sid, prompt=f"prompt {sid}", harmful=harmful)


def refusal(judge: str, sid: str, refused: bool | None, task: str = "t", label: str = "") -> Judgement:
    return Judgement(key=sid, task=task, sample_id=sid, judge=judge, refused=refused, label=label)


def harm(judge: str, sid: str, unsafe: bool | None) -> Judgement:
    return Judgement(key=sid, task="t", sample_id=sid, judge=judge, refused=None, kind="harm", unsafe=unsafe)


SAMPLES = [sample("h1", True), sample("h2", True), sample("h3", True), sample("h4", True),
           sample("b1", False), sample("b2", False), sample("u1", None)]


def test_harmful_attack_success_and_benign_refusal_between_refusal_judges():
    judgements = [
        # judge A: refuses h1, h2; complies h3, h4; refuses b1, not b2; and judged the utility item
        refusal("A", "h1", True), refusal("A", "h2", True), refusal("A", "h3", False), refusal("A", "h4", False),
        refusal("A", "b1", True), refusal("A", "b2", False), refusal("A", "u1", True),
        # judge B: refuses h1, complies h2, h3; undecided on h4; refuses b1, b2
        refusal("B", "h1", True), refusal("B", "h2", False), refusal("B", "h3", False), refusal("B", "h4", None),
        refusal("B", "b1", True), refusal("B", "b2", True), refusal("B", "u1", False),
    ]
    pairs = {p.subset: p for p in pairwise_agreement(SAMPLES, judgements, judge_order=["B"])}
    assert set(pairs) == {"harmful", "benign"}  # the utility item is never compared
    harmful = pairs["harmful"]
    assert (harmful.first, harmful.second) == ("B", "A")  # the named (headline) judge first
    # attack success on h1..h3: B (F, T, T), A (F, F, T); h4 left out (B undecided)
    assert harmful.n == 3 and (harmful.first_undecided, harmful.second_undecided) == (1, 0)
    assert harmful.table.agreed == 2 and harmful.percent == pytest.approx(200 / 3)
    # table over (B, A): a (both T) = 1 (h3), b (B only) = 1 (h2), c = 0, d = 1 (h1)
    # n(a + d) = 6, E = (2)(1) + (1)(2) = 4 -> (6 - 4) / (9 - 4) = 0.4
    assert harmful.kappa == pytest.approx(0.4)
    benign = pairs["benign"]
    # refused: B (T, T), A (T, F): one agreement of two; B constant -> kappa 0
    assert benign.n == 2 and benign.percent == 50.0 and benign.kappa == 0.0


def test_harm_judge_compared_on_attack_success_only():
    judgements = [
        refusal("kw", "h1", False), refusal("kw", "h2", True), refusal("kw", "b1", True),
        harm("guard", "h1", True), harm("guard", "h2", True), harm("guard", "b1", False),
    ]
    pairs = pairwise_agreement(SAMPLES, judgements)
    assert [p.subset for p in pairs] == ["harmful"]  # a harm judge gives no refusal verdict on benign
    (pair,) = pairs
    assert (pair.first, pair.second) == ("guard", "kw")  # alphabetical without an order
    # attack success: guard (T, T), kw (T, F) -> agreement 1 of 2
    assert pair.n == 2 and pair.table.agreed == 1


def test_pairs_stay_within_a_task_and_need_shared_samples():
    judgements = [
        refusal("A", "h1", True), refusal("B", "h1", True),
        refusal("A", "h1", True, task="other"),  # only one judge on task "other"
        refusal("C", "h2", True),  # C shares no sample with A or B
    ]
    pairs = pairwise_agreement([*SAMPLES, Sample(task="other", id="h1", prompt="p", harmful=True)], judgements)
    assert [(p.task, p.first, p.second, p.n) for p in pairs] == [("t", "A", "B", 1)]
    # perfect agreement on one class: kappa undefined
    assert math.isnan(pairs[0].kappa) and pairs[0].percent == 100.0


def test_all_undecided_gives_a_pair_with_n_zero():
    judgements = [refusal("kw", "h1", True), refusal("llm", "h1", None)]
    (pair,) = pairwise_agreement(SAMPLES, judgements)
    assert pair.n == 0 and pair.second_undecided == 1 and math.isnan(pair.kappa)


def test_verdict_counts_separate_judge_errors_from_undecidable_answers():
    judgements = [
        refusal("llm", "h1", None, label="unparseable"), refusal("llm", "h2", None, label=JUDGE_ERROR_LABEL),
        refusal("llm", "h3", True), refusal("kw", "h1", False),
    ]
    counts = {(c.task, c.judge): c for c in judge_verdict_counts(judgements)}
    llm = counts[("t", "llm")]
    assert (llm.verdicts, llm.undecided, llm.errors, llm.decided) == (3, 2, 1, 1)
    assert (counts[("t", "kw")].verdicts, counts[("t", "kw")].undecided) == (1, 0)


# ---------------------------------------------------------------------------------------------------
# cross-check: scikit-learn on the expanded label lists (not the weighted four-item table used inside)


@pytest.mark.parametrize("counts", [(20, 5, 10, 15), (45, 15, 25, 15), (12, 4, 2, 2), (0, 3, 4, 0), (7, 0, 0, 9),
                                    (1, 1, 0, 0), (0, 2, 0, 0), (3, 1, 1, 0), (100, 1, 2, 0)])
def test_kappa_matches_scikit_learn_on_item_lists(counts):
    from sklearn.metrics import cohen_kappa_score

    first, second = labels(*counts)
    assert kappa_from_counts(*counts) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    # and the closed form of the module doc, in whole numbers
    a, b, c, d = counts
    n, chance = a + b + c + d, (a + b) * (a + c) + (c + d) * (b + d)
    assert kappa_from_counts(*counts) == pytest.approx(float(Fraction(n * (a + d) - chance, n * n - chance)), abs=1e-12)


def test_kappa_undefined_where_scikit_learn_says_so():
    import warnings

    from sklearn.metrics import cohen_kappa_score

    for counts in [(5, 0, 0, 0), (0, 0, 0, 4)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert math.isnan(cohen_kappa_score(*labels(*counts)))
        assert math.isnan(kappa_from_counts(*counts))
    assert math.isnan(kappa_from_counts(0, 0, 0, 0))
