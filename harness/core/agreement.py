"""Agreement between two judges on the same generations: Cohen's kappa, percent agreement and n.

Cohen's kappa (Cohen 1960, "A coefficient of agreement for nominal scales", Educational and
Psychological Measurement 20:37-46) for two raters and binary labels. With the 2 x 2 table of counts

                       second: True   second: False
    first: True             a               b
    first: False            c               d          n = a + b + c + d

the observed agreement is p_o = (a + d) / n, the agreement expected by chance from each rater's own
label frequencies is p_e = ((a + b)(a + c) + (c + d)(b + d)) / n^2, and

    kappa = (p_o - p_e) / (1 - p_e) = (n (a + d) - E) / (n^2 - E),   E = (a + b)(a + c) + (c + d)(b + d).

It is computed by scikit-learn's ``cohen_kappa_score`` (the table given as four items weighted by its
counts).

Degenerate cases, by the definition (no convention is substituted):

- n == 0: nothing to compare; agreement and kappa are NaN (shown as "n/a").
- p_e == 1 (both raters gave every item the same single label, e.g. both said "refusal" to all):
  kappa is 0/0, undefined, and is NaN, even though the raters agree 100 %. This is what
  scikit-learn's ``cohen_kappa_score`` returns by default (``replace_undefined_by=np.nan``); reports
  show the percent agreement next to it, so the perfect agreement stays visible. Reporting 1.0 here
  would claim agreement beyond chance that the data cannot show (a single class leaves no room for it).
- One rater constant, the other not: p_e = p_o, kappa = 0 (defined; no agreement beyond chance).

What is compared (``pairwise_agreement``): for each pair of judges that scored the same generations
(one run, one task), on harmful samples their ``Judgement.attack_success`` (so a refusal judge and a
harm judge can be compared on the ASR outcome), on benign samples their ``refused`` verdicts when both
are refusal judges (a harm judge says nothing about over-refusal). Only samples where both verdicts
are decided count; undecided verdicts are counted per judge (``judge_verdict_counts``) so that an LLM
judge's parse failures stay visible. Utility samples (``harmful is None``) are left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from harness.core.judgement_cache import JUDGE_ERROR_LABEL
from harness.core.records import Judgement, Sample

HARMFUL, BENIGN = "harmful", "benign"


@dataclass(frozen=True)
class Agreement:
    """Two raters' agreement on n items with binary labels (see the module doc for the definitions)."""

    both_true: int  # a
    first_only: int  # b: first True, second False
    second_only: int  # c: first False, second True
    both_false: int  # d

    @property
    def n(self) -> int:
        return self.both_true + self.first_only + self.second_only + self.both_false

    @property
    def agreed(self) -> int:
        return self.both_true + self.both_false

    @property
    def percent(self) -> float:
        """Observed agreement in percent; NaN for n == 0."""
        return 100.0 * self.agreed / self.n if self.n else math.nan

    @property
    def kappa(self) -> float:
        """Cohen's kappa; NaN when undefined (n == 0, or p_e == 1)."""
        return kappa_from_counts(self.both_true, self.first_only, self.second_only, self.both_false)


def kappa_from_counts(a: int, b: int, c: int, d: int) -> float:
    """Cohen's kappa of a 2 x 2 table (a = both True, b = first only, c = second only, d = both False)."""
    if min(a, b, c, d) < 0:
        raise ValueError("counts must be non-negative")
    n = a + b + c + d
    chance = (a + b) * (a + c) + (c + d) * (b + d)  # n^2 * p_e
    if n == 0 or chance == n * n:  # no items, or p_e == 1: undefined (see the module doc)
        return math.nan
    # imported here: scikit-learn takes over a second to import, and reports import this module
    from sklearn.metrics import cohen_kappa_score

    # one item per cell of the table, weighted by its count: the same confusion matrix as n items
    first, second = [True, True, False, False], [True, False, True, False]
    return float(cohen_kappa_score(first, second, labels=[True, False], sample_weight=[a, b, c, d]))


def agreement(first: Sequence[bool], second: Sequence[bool]) -> Agreement:
    """The 2 x 2 agreement table of two equally long label sequences (item i rated by both)."""
    if len(first) != len(second):
        raise ValueError(f"the raters labelled different numbers of items ({len(first)} vs {len(second)})")
    a = b = c = d = 0
    for x, y in zip(first, second):
        if x and y:
            a += 1
        elif x:
            b += 1
        elif y:
            c += 1
        else:
            d += 1
    return Agreement(a, b, c, d)


def cohens_kappa(first: Sequence[bool], second: Sequence[bool]) -> float:
    """Cohen's kappa of two raters' binary labels on the same items (NaN when undefined)."""
    return agreement(first, second).kappa


# ---------------------------------------------------------------------------------------------------
# judges on stored verdicts


def compared_outcome(judgement: Judgement, harmful: bool) -> bool | None:
    """The binary outcome compared between judges: attack success on harmful samples, refusal on
    benign ones (None for a harm judge there, or when the verdict is undecided)."""
    if harmful:
        return judgement.attack_success
    return None if judgement.kind == "harm" else judgement.refused


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two judges on one task's samples of one kind (``subset``: harmful or benign)."""

    task: str
    first: str  # judge names
    second: str
    subset: str
    table: Agreement
    first_undecided: int  # samples of the subset that both judged where this judge could not decide
    second_undecided: int

    @property
    def n(self) -> int:
        return self.table.n

    @property
    def percent(self) -> float:
        return self.table.percent

    @property
    def kappa(self) -> float:
        return self.table.kappa


def _by_task_judge(judgements: Iterable[Judgement]) -> dict[str, dict[str, dict[str, Judgement]]]:
    """task -> judge -> sample id -> verdict, judges in first-seen order (the last verdict per sample wins)."""
    grouped: dict[str, dict[str, dict[str, Judgement]]] = defaultdict(dict)
    for judgement in judgements:
        grouped[judgement.task].setdefault(judgement.judge, {})[judgement.sample_id] = judgement
    return grouped


def pairwise_agreement(
    samples: Sequence[Sample], judgements: Iterable[Judgement], judge_order: Sequence[str] = ()
) -> list[PairAgreement]:
    """Every pair of judges that both judged samples of a task, per subset (harmful, benign).

    ``judgements`` must come from one run (the same generations). Judges named in ``judge_order``
    come first in each pair (e.g. the headline judge), the others alphabetically. A pair appears for a
    subset when both judges judged at least one of its samples; ``n`` may still be 0 when one of them
    left all of those undecided (``first_undecided`` / ``second_undecided`` say so). Benign samples are
    compared only when both judges are refusal judges.
    """
    sample_by_key = {(s.task, s.id): s for s in samples}
    rank = {name: index for index, name in enumerate(judge_order)}
    results: list[PairAgreement] = []
    for task, by_judge in _by_task_judge(judgements).items():
        names = sorted(by_judge, key=lambda name: (rank.get(name, len(rank)), name))
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                for subset, harmful in ((HARMFUL, True), (BENIGN, False)):
                    result = _pair(task, first, second, subset, harmful, by_judge, sample_by_key)
                    if result is not None:
                        results.append(result)
    return results


def _pair(
    task: str,
    first: str,
    second: str,
    subset: str,
    harmful: bool,
    by_judge: dict[str, dict[str, Judgement]],
    sample_by_key: dict[tuple[str, str], Sample],
) -> PairAgreement | None:
    shared = [
        sid for sid in by_judge[first]
        if sid in by_judge[second] and (task, sid) in sample_by_key and sample_by_key[(task, sid)].harmful is harmful
    ]
    if not shared:
        return None
    if not harmful and any(by_judge[name][sid].kind == "harm" for name in (first, second) for sid in shared):
        return None  # a harm judge gives no refusal verdict on benign prompts
    labels_first, labels_second = [], []
    undecided_first = undecided_second = 0
    for sid in shared:
        x = compared_outcome(by_judge[first][sid], harmful)
        y = compared_outcome(by_judge[second][sid], harmful)
        undecided_first += x is None
        undecided_second += y is None
        if x is not None and y is not None:
            labels_first.append(x)
            labels_second.append(y)
    return PairAgreement(task, first, second, subset, agreement(labels_first, labels_second),
                         undecided_first, undecided_second)


@dataclass(frozen=True)
class JudgeVerdictCounts:
    """How many verdicts one judge gave on a task, how many undecided, and how many of those were the
    judge failing (an exception: network error, timeout) rather than an undecidable answer."""

    task: str
    judge: str
    verdicts: int
    undecided: int
    errors: int

    @property
    def decided(self) -> int:
        return self.verdicts - self.undecided


def judge_verdict_counts(judgements: Iterable[Judgement]) -> list[JudgeVerdictCounts]:
    """Per (task, judge), in first-seen order: verdicts, undecided, judge errors."""
    counts: dict[tuple[str, str], list[int]] = {}
    for judgement in judgements:
        entry = counts.setdefault((judgement.task, judgement.judge), [0, 0, 0])
        entry[0] += 1
        if not judgement.decided:
            entry[1] += 1
            entry[2] += judgement.label == JUDGE_ERROR_LABEL
    return [JudgeVerdictCounts(task, judge, *values) for (task, judge), values in counts.items()]
