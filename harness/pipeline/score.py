"""Score: a task's samples, generations and verdicts -> its metric rows (the task's own metric function).

The answer-quality flags (``harness.core.quality``) are computed here too, from the stored samples and
answers, by the metric functions that report them (``safety_metrics``); this stage passes them the token
limit the answers were generated with, which the ``truncated`` flag needs. Flags are never stored, so
re-scoring a stored run (``harness judge``) computes them for runs made before they existed.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

from harness.core.metrics import UnknownMetricError, metric_info
from harness.core.records import Generation, Judgement, MetricRow, Sample, TaskSpec

# The keyword a metric function takes to be given the token limit (harness.core.metrics' module doc).
TOKEN_LIMIT_KEYWORD = "max_new_tokens"


@functools.lru_cache(maxsize=None)
def takes_token_limit(function: Callable[..., Any]) -> bool:
    """Whether a metric function accepts ``max_new_tokens`` by keyword (most do not: they score answers
    against references and have no use for it)."""
    try:
        parameter = inspect.signature(function).parameters.get(TOKEN_LIMIT_KEYWORD)
    except (TypeError, ValueError):  # no introspectable signature: call it the plain way
        return False
    return parameter is not None and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)


def metric_rows(
    run_id: str,
    model: str,
    defense: str,
    spec: TaskSpec,
    samples: Sequence[Sample],
    generations: dict[str, Generation],
    judgements: dict[str, Judgement],
    judge_name: str | None,
    *,
    max_new_tokens: int | None = None,
) -> list[MetricRow]:
    """The task's metric rows. ``max_new_tokens``: the token limit of the task's requests, as the run
    stores it (``RunSettings.max_new_tokens``; None: unknown, so no answer is flagged as truncated)."""
    metric = spec.metric.load()
    ok = {sid: g for sid, g in generations.items() if g.ok}
    if takes_token_limit(metric):
        values = metric(samples, ok, judgements, **{TOKEN_LIMIT_KEYWORD: max_new_tokens})
    else:
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
