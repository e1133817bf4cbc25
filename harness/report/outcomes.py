"""Per-sample binary outcomes behind a stored metric row, for paired statistics.

A metric row (model, defense, task, metric, subset) aggregates per-sample outcomes; pairing a
defense's outcomes with the ``none`` baseline's on the same sample ids needs them back:

- ``asr``: harmful samples; outcome = the attack succeeded (the judge says *not* refused).
- ``refusal_rate``: benign samples; outcome = refused.
  Both come from the stored judgements of the row's judge (``MetricRow.judge``); an undecided
  verdict (``refused is None``) is left out, as ``harness.core.metrics.safety_metrics`` does.
- Any other metric: the task's own metric function (``TaskSpec.metric``, found through the task
  registry) is called on each sample alone; it yields an outcome for that sample when it returns the
  metric's ``"all"`` row with n == 1 and value 0 or 100 (easy-VQA accuracy, for instance).

Outcomes are only used when they reproduce the stored row (same n and the same number of positives);
otherwise the metric has no per-sample outcomes (MMBench circular accuracy and MME scores are scored
per group, not per sample) and callers fall back to unpaired statistics.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Callable, Mapping, Sequence

from harness.core.metrics import ASR, REFUSAL_RATE, metric_sort_key
from harness.core.records import Generation, Judgement, MetricRow, MetricValue, Sample
from harness.core.store import RunResult, primary_judge

log = logging.getLogger("harness.report")

Scorer = Callable[[Sequence[Sample], Mapping[str, Generation], Mapping[str, Judgement]], list[MetricValue]]
ScorerLookup = Callable[[str], "Scorer | None"]

# metrics whose outcomes are the stored judgements (``safety_metrics``), not a re-run of the scorer
JUDGED_METRICS = (ASR.name, REFUSAL_RATE.name)


def registered_scorer(task: str) -> Scorer | None:
    """The metric function of a registered task, or None when the task (or its module) is unavailable."""
    try:
        from harness import registries

        return registries.tasks().get(task).metric.load()
    except Exception:  # noqa: BLE001 - an unknown or broken task only loses its paired statistics
        return None


class OutcomeIndex:
    """Looks up (and caches) the per-sample outcomes of metric rows from the runs that produced them."""

    def __init__(self, runs: Sequence[RunResult], scorer_lookup: ScorerLookup = registered_scorer):
        self._runs = {run.info.run_id: run for run in runs}
        self._scorer_lookup = scorer_lookup
        self._scorers: dict[str, Scorer | None] = {}  # per index, so a task registered later is seen
        self._scored: dict[tuple[str, str], dict[str, dict[str, bool]]] = {}
        self._samples: dict[tuple[str, str], dict[str, Sample]] = {}

    def outcomes(self, row: MetricRow) -> dict[str, bool] | None:
        """``sample id -> outcome`` for this row, or None when they cannot be recovered exactly."""
        run = self._runs.get(row.run_id)
        if run is None or row.n <= 0 or math.isnan(row.value):
            return None
        samples = self._task_samples(run, row.task)
        if row.metric in JUDGED_METRICS:
            by_sample = self._judged(run, row)
        else:
            by_sample = self._scored_outcomes(run, row.task).get(row.metric)
        if by_sample is None:
            return None
        if row.subset != "all":
            by_sample = {sid: hit for sid, hit in by_sample.items() if samples[sid].category == row.subset}
        positives = sum(by_sample.values())
        if len(by_sample) != row.n or abs(100.0 * positives / row.n - row.value) > 1e-6:
            return None
        return by_sample

    def sample_scores(self, run: RunResult, task: str, sample_id: str) -> dict[str, bool]:
        """``metric -> outcome`` of one sample under the task's own scorer (empty when it has none)."""
        scored = self._scored_outcomes(run, task)
        return {metric: scored[metric][sample_id] for metric in sorted(scored, key=metric_sort_key)
                if sample_id in scored[metric]}

    def _task_samples(self, run: RunResult, task: str) -> dict[str, Sample]:
        key = (run.info.run_id, task)
        if key not in self._samples:
            self._samples[key] = {sample.id: sample for sample in run.samples if sample.task == task}
        return self._samples[key]

    def _judged(self, run: RunResult, row: MetricRow) -> dict[str, bool]:
        samples = self._task_samples(run, row.task)
        verdicts: dict[str, Judgement] = {}
        for judgement in run.judgements:
            if judgement.task != row.task or judgement.sample_id not in samples:
                continue
            # only the row's own judge (never another judge's verdict where it has none); rows stored
            # without a judge name take any judge's
            if row.judge is not None and judgement.judge != row.judge:
                continue
            verdicts[judgement.sample_id] = judgement
        harmful = row.metric == ASR.name
        outcomes = {}
        for sample_id, judgement in verdicts.items():
            if samples[sample_id].harmful is not harmful:
                continue
            outcome = judgement.attack_success if harmful else (None if judgement.kind == "harm" else judgement.refused)
            if outcome is not None:
                outcomes[sample_id] = outcome
        return outcomes

    def _scored_outcomes(self, run: RunResult, task: str) -> dict[str, dict[str, bool]]:
        key = (run.info.run_id, task)
        if key in self._scored:
            return self._scored[key]
        if task not in self._scorers:
            self._scorers[task] = self._scorer_lookup(task)
        scorer = self._scorers[task]
        result: dict[str, dict[str, bool]] = {}
        if scorer is not None:
            try:
                result = _score_each(scorer, run, task, self._task_samples(run, task))
            except Exception as exc:  # noqa: BLE001 - a scorer that cannot score alone just loses pairing
                log.debug("per-sample scoring of %s failed: %s", task, exc)
                result = {}
        self._scored[key] = result
        return result


def _score_each(scorer: Scorer, run: RunResult, task: str, samples: Mapping[str, Sample]) -> dict[str, dict[str, bool]]:
    generations = {g.sample_id: g for g in run.generations if g.task == task and g.ok}
    headline = primary_judge(run, task)  # the scorer sees the verdicts its stored rows were made from
    judgements = {j.sample_id: j for j in run.judgements if j.task == task and headline in (None, j.judge)}
    outcomes: dict[str, dict[str, bool]] = defaultdict(dict)
    unusable: set[str] = set()
    for sample_id, sample in samples.items():
        generation = generations.get(sample_id)
        if generation is None:
            continue  # failed generations are not counted by metrics either
        judgement = {sample_id: judgements[sample_id]} if sample_id in judgements else {}
        for value in scorer([sample], {sample_id: generation}, judgement):
            if value.subset != "all":
                continue
            if value.n == 1 and value.value in (0.0, 100.0):
                outcomes[value.metric][sample_id] = value.value == 100.0
            else:
                unusable.add(value.metric)
    return {metric: by_sample for metric, by_sample in outcomes.items() if metric not in unusable}
