"""Judges in the reports: verdict and undecided counts per judge, headline judges, judge agreement.

Computed once from the stored runs (``judge_summary``) and shown by both renderers:

- Verdict counts: per (model, defense, task, judge), how many verdicts, how many undecided and how
  many of those were judge errors; so an LLM judge's parse failures are never hidden.
- Headline judges: the judge whose rows each task's tables show, per setting; a task whose settings
  use different headline judges is flagged (values in one column then come from different judges,
  though each cell still comes from exactly one).
- Agreement: for every pair of judges that scored the same run's task, Cohen's kappa, percent
  agreement and n on the samples both decided (``harness.core.agreement``), harmful and benign samples
  apart. Pairs with no sample decided by both are listed apart (``undecidable_pairs``), not as rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from harness.core.agreement import judge_verdict_counts, pairwise_agreement
from harness.report.formatting import setting_sort_key
from harness.core.store import RunResult, judge_order, primary_judge


@dataclass(frozen=True)
class AgreementRow:
    model: str
    defense: str
    task: str
    first: str  # the headline judge when it is one of the pair
    second: str
    subset: str  # "harmful" (attack success compared) or "benign" (refusal compared)
    n: int  # samples both judges decided
    percent: float
    kappa: float
    first_undecided: int
    second_undecided: int


@dataclass(frozen=True)
class JudgeCountRow:
    model: str
    defense: str
    task: str
    judge: str
    headline: bool
    verdicts: int
    undecided: int
    errors: int


@dataclass
class JudgeSummary:
    counts: list[JudgeCountRow] = field(default_factory=list)
    agreements: list[AgreementRow] = field(default_factory=list)  # n >= 1
    undecidable_pairs: list[AgreementRow] = field(default_factory=list)  # n == 0
    headline: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> headline judge -> settings

    @property
    def mixed_headline_tasks(self) -> list[str]:
        return sorted(task for task, judges in self.headline.items() if len(judges) > 1)


def judge_summary(runs: Sequence[RunResult]) -> JudgeSummary:
    """Counts, headline judges and pairwise agreement over ``runs`` (each run's own verdicts only)."""
    summary = JudgeSummary()
    headline: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for run in sorted(runs, key=lambda r: (*setting_sort_key(r.info.model, r.info.defense), r.info.run_id)):
        model, defense = run.info.model, run.info.defense
        tasks = list(dict.fromkeys([*(j.task for j in run.judgements), *(r.task for r in run.metrics)]))
        for task in tasks:
            primary = primary_judge(run, task)
            if primary is not None:
                headline[task][primary] += 1
            judgements = [j for j in run.judgements if j.task == task]
            for count in judge_verdict_counts(judgements):
                summary.counts.append(JudgeCountRow(model, defense, task, count.judge, count.judge == primary,
                                                    count.verdicts, count.undecided, count.errors))
            for pair in pairwise_agreement(run.samples, judgements, judge_order(run, task)):
                row = AgreementRow(model, defense, task, pair.first, pair.second, pair.subset, pair.n,
                                   pair.percent, pair.kappa, pair.first_undecided, pair.second_undecided)
                (summary.agreements if pair.n else summary.undecidable_pairs).append(row)
    summary.counts.sort(key=lambda r: (*setting_sort_key(r.model, r.defense), r.task, not r.headline, r.judge))
    summary.headline = {task: dict(judges) for task, judges in sorted(headline.items())}
    return summary
