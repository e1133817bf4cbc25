"""Score: a task's samples, generations and verdicts -> its metric rows (the task's own metric function)."""

from __future__ import annotations

from typing import Sequence

from harness.core.metrics import UnknownMetricError, metric_info
from harness.core.records import Generation, Judgement, MetricRow, Sample, TaskSpec


def metric_rows(
    run_id: str,
    model: str,
    defense: str,
    spec: TaskSpec,
    samples: Sequence[Sample],
    generations: dict[str, Generation],
    judgements: dict[str, Judgement],
    judge_name: str | None,
) -> list[MetricRow]:
    metric = spec.metric.load()
    ok = {sid: g for sid, g in generations.items() if g.ok}
    values = metric(samples, ok, judgements)
    directions = {}
    for value in values:  # the metric table, not the metric function, says which way is better
        try:
            directions[value.metric] = metric_info(value.metric).higher_is_better
        except UnknownMetricError as exc:
            raise UnknownMetricError(f"task {spec.name}: {exc}") from None
    return [
        MetricRow(
            run_id=run_id,
            model=model,
            defense=defense,
            task=spec.name,
            task_version=spec.version,
            metric=value.metric,
            value=value.value,
            n=value.n,
            ci_low=value.ci_low,
            ci_high=value.ci_high,
            subset=value.subset,
            higher_is_better=directions[value.metric],
            judge=judge_name,
        )
        for value in values
    ]
