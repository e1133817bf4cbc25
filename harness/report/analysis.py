"""What the reports show, computed once from stored runs: shared by the HTML and LaTeX renderers.

- Overview: one row per (model, defense), one column per (task, metric) over ``subset == "all"``
  rows (count metrics such as ``undecided`` left out), plus the latency ratio to ``none``. What a
  metric is (label, direction, rate or count, report area, order) comes from the metric table
  (``harness.core.metrics.row_metric_info``), not from its name or the row's stored flag.
- Best per column: within each model's block of defenses (defenses are compared on the same model),
  the lowest value of a lower-is-better column or the highest of a higher-is-better one; ties are all
  marked, and a block with a single value marks nothing; a direction-less metric's column is never marked.
- Significance vs ``none``: for each defense cell whose per-sample outcomes and the baseline's can be
  recovered (see ``outcomes``), McNemar's test and a paired bootstrap interval of the difference on the
  shared sample ids; ``*`` marks p < alpha.
- Latency ratio: mean per-sample latency of the defense over that of ``none`` on the same
  (task, sample id) pairs, with a paired bootstrap interval.
- Answer quality: substantive ASR is an overview column like any rate (beside ASR in its task's
  group); the count metrics (undecided verdicts, empty answers, and the echo, loop and truncated flag
  counts of ``harness.core.quality``) are notes under the main table (``count_view``,
  ``flag_count_view``, ``quality_legend``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness.core.metrics import (
    AREA_ORDER,
    COUNT,
    FLAG_COUNTS,
    SUBSTANTIVE_ASR,
    MetricInfo,
    metric_info,
    metric_sort_key,
    percentile,
    row_metric_info,
    wilson_interval,
)
from harness.core import quality
from harness.core.records import Generation, MetricRow
from harness.report.formatting import BASELINE_DEFENSE, setting_sort_key
from harness.report.outcomes import OutcomeIndex, ScorerLookup, registered_scorer
from harness.core.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BootstrapInterval,
    PairedBinaryComparison,
    paired_binary_comparison,
    paired_bootstrap_ratio,
    significance_mark,
)
from harness.report.judges import JudgeSummary, judge_summary
from harness.core.store import RunResult, headline_metric_rows

Setting = tuple[str, str]  # (model, defense)

RATE_TOLERANCE = 0.05  # points: stored intervals may have been rounded by whoever wrote them


WILSON, CLUSTERED = "wilson", "clustered"  # the kinds of rate interval ``rate_interval`` tells apart


def rate_interval(row: MetricRow) -> tuple[int, int, str] | None:
    """``(successes, n, kind)`` when the row is a percent rate with a score interval, else None.

    Recognised by the numbers, not the metric name: value = 100 k / n for a whole k, and the stored
    interval is the Wilson interval of k / n (kind ``WILSON``) or contains it (kind ``CLUSTERED``: the
    design-effect-adjusted Wilson interval of a task that declares ``cluster_by``, which is never
    narrower), to within ``RATE_TOLERANCE`` points.
    """
    if row.n <= 0 or math.isnan(row.value) or row.ci_low is None or row.ci_high is None:
        return None
    successes = round(row.value * row.n / 100.0)
    if abs(100.0 * successes / row.n - row.value) > RATE_TOLERANCE:
        return None
    low, high = wilson_interval(successes, row.n)
    if abs(100.0 * low - row.ci_low) <= RATE_TOLERANCE and abs(100.0 * high - row.ci_high) <= RATE_TOLERANCE:
        return successes, row.n, WILSON
    if row.ci_low <= 100.0 * low + RATE_TOLERANCE and row.ci_high >= 100.0 * high - RATE_TOLERANCE:
        return successes, row.n, CLUSTERED
    return None


def rate_counts(row: MetricRow) -> tuple[int, int] | None:
    """``(successes, n)`` of a rate row (see :func:`rate_interval`, either kind of interval), else None."""
    recognised = rate_interval(row)
    return None if recognised is None else recognised[:2]


def unique_metric_rows(runs: Sequence[RunResult]) -> list[MetricRow]:
    """All headline metric rows, one per (model, defense, task, metric, subset); later runs win.

    A run that several judges scored holds one set of rows per judge; only the rows of each task's
    headline judge (``store.headline_metric_rows``) are taken, so no table mixes judges within a run.
    """
    chosen: dict[tuple[str, str, str, str, str], MetricRow] = {}
    for run in runs:
        for row in headline_metric_rows(run):
            chosen[(row.model, row.defense, row.task, row.metric, row.subset)] = row
    return list(chosen.values())


class DescribedByMetric:
    """Name, direction and label of a table's metric, read from its ``info`` (the metric table's entry)."""

    info: MetricInfo

    @property
    def metric(self) -> str:
        return self.info.name

    @property
    def higher_is_better(self) -> bool:
        return self.info.higher_is_better

    @property
    def label(self) -> str:
        return self.info.label


@dataclass
class Column(DescribedByMetric):
    task: str
    info: MetricInfo

    @property
    def kind(self) -> str:
        """The metric's report area: "safety", "over-refusal" or "utility"."""
        return self.info.area

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.metric)


@dataclass
class Cell:
    row: MetricRow
    comparison: PairedBinaryComparison | None = None  # vs none on the same samples
    best: bool = False
    alpha: float = ALPHA

    @property
    def mark(self) -> str:
        """``*`` when the paired test against ``none`` has p < alpha; empty without a paired test."""
        if self.comparison is None or not self.comparison.n_pairs:
            return ""
        return significance_mark(self.comparison.p_value, self.alpha)


@dataclass
class LatencySummary:
    """Latency of one (model, defense) over all its tasks' successful generations."""

    model: str
    defense: str
    n: int
    mean_s: float  # per sample, prefill + decode
    p50_s: float
    p95_s: float
    tokens_per_s: float  # decode throughput: output tokens / decode seconds
    cached: int  # of n, generations read from the cache (timings from when they were produced)
    ratio: BootstrapInterval | None  # vs none on shared (task, sample id); None for none itself
    best: bool = False

    @property
    def ratio_value(self) -> float:
        if self.defense == BASELINE_DEFENSE:
            return 1.0
        return self.ratio.estimate if self.ratio else math.nan


@dataclass
class CategoryTable(DescribedByMetric):
    """One (task, metric) broken down by category: rows are settings, columns categories."""

    task: str
    info: MetricInfo
    categories: list[str]
    cells: dict[Setting, dict[str, Cell]]


@dataclass
class Analysis:
    rows: list[MetricRow]
    settings: list[Setting]
    columns: list[Column]
    cells: dict[Setting, dict[tuple[str, str], Cell]]
    latency: dict[Setting, LatencySummary]
    latencies: dict[Setting, list[float]]  # per-sample seconds, for distribution plots
    category_tables: list[CategoryTable]
    outcomes: OutcomeIndex
    alpha: float = ALPHA
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0
    comparisons: list[tuple[Setting, Column, Cell]] = field(default_factory=list)
    judges: JudgeSummary = field(default_factory=JudgeSummary)  # verdict counts and agreement per judge

    def cell(self, setting: Setting, column: Column) -> Cell | None:
        return self.cells.get(setting, {}).get(column.key)


def _mark_best(values: dict[Setting, float], higher_is_better: bool) -> set[Setting]:
    """Settings holding the best value within their model's block (ties included; >= 2 values needed)."""
    by_model: dict[str, dict[Setting, float]] = defaultdict(dict)
    for setting, value in values.items():
        if not math.isnan(value):
            by_model[setting[0]][setting] = value
    best: set[Setting] = set()
    for block in by_model.values():
        if len(block) < 2:
            continue
        target = max(block.values()) if higher_is_better else min(block.values())
        best.update(setting for setting, value in block.items() if abs(value - target) <= 1e-9)
    return best


def _columns(rows: Iterable[MetricRow]) -> list[Column]:
    columns: dict[tuple[str, str], Column] = {}
    for row in rows:
        columns.setdefault((row.task, row.metric), Column(row.task, row_metric_info(row)))
    task_rank: dict[str, int] = {}
    for column in columns.values():
        rank = AREA_ORDER.index(column.kind)
        task_rank[column.task] = min(rank, task_rank.get(column.task, rank))
    # a task's columns stay together, safety tasks first, then over-refusal sets, then utility
    return sorted(
        columns.values(), key=lambda c: (task_rank[c.task], c.task, metric_sort_key(c.metric))
    )


def _successful(generations: Iterable[Generation]) -> dict[Setting, dict[tuple[str, str], Generation]]:
    """Successful generations per setting, keyed by (task, sample id): the pairing key vs ``none``."""
    per_setting: dict[Setting, dict[tuple[str, str], Generation]] = defaultdict(dict)
    for generation in generations:
        if generation.ok:
            per_setting[(generation.model, generation.defense)][(generation.task, generation.sample_id)] = generation
    return per_setting


def _latency_summary(setting: Setting, generations: list[Generation], ratio: BootstrapInterval | None) -> LatencySummary:
    totals = [g.prefill_s + g.decode_s for g in generations]
    decode = math.fsum(g.decode_s for g in generations)
    return LatencySummary(
        model=setting[0],
        defense=setting[1],
        n=len(totals),
        mean_s=math.fsum(totals) / len(totals),
        p50_s=percentile(totals, 50),
        p95_s=percentile(totals, 95),
        tokens_per_s=sum(g.output_tokens for g in generations) / decode if decode > 0 else math.nan,
        cached=sum(1 for g in generations if g.from_cache),
        ratio=ratio,
    )


def analyse(
    runs: Sequence[RunResult],
    *,
    alpha: float = ALPHA,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    scorer_lookup: ScorerLookup = registered_scorer,
) -> Analysis:
    """Everything both reports need; pass ``store.latest_runs()`` (oldest first, later runs win)."""
    rows = unique_metric_rows(runs)
    outcomes = OutcomeIndex(runs, scorer_lookup)
    headline = [r for r in rows if r.subset == "all" and row_metric_info(r).kind != COUNT]
    columns = _columns(headline)

    successful = _successful(g for run in runs for g in run.generations)
    times = {s: {k: g.prefill_s + g.decode_s for k, g in by_key.items()} for s, by_key in successful.items()}
    settings = sorted(
        {(r.model, r.defense) for r in rows} | set(times), key=lambda s: setting_sort_key(*s)
    )

    cells: dict[Setting, dict[tuple[str, str], Cell]] = defaultdict(dict)
    for row in headline:
        cells[(row.model, row.defense)][(row.task, row.metric)] = Cell(row, alpha=alpha)

    comparisons = []
    for column in columns:
        values = {s: c[column.key].row.value for s, c in cells.items() if column.key in c}
        marked = _mark_best(values, column.higher_is_better) if column.info.ranked else set()
        for setting in marked:
            cells[setting][column.key].best = True
        for setting in settings:
            cell = cells.get(setting, {}).get(column.key)
            base = cells.get((setting[0], BASELINE_DEFENSE), {}).get(column.key)
            if cell is None or base is None or setting[1] == BASELINE_DEFENSE:
                continue
            base_outcomes, new_outcomes = outcomes.outcomes(base.row), outcomes.outcomes(cell.row)
            if base_outcomes is None or new_outcomes is None or not (set(base_outcomes) & set(new_outcomes)):
                continue
            cell.comparison = paired_binary_comparison(base_outcomes, new_outcomes, resamples=resamples, seed=seed)
            comparisons.append((setting, column, cell))

    order = {setting: index for index, setting in enumerate(settings)}
    comparisons.sort(key=lambda item: order[item[0]])  # stable: columns keep their order within a setting

    latency: dict[Setting, LatencySummary] = {}
    for setting, by_key in times.items():
        ratio = None
        baseline = times.get((setting[0], BASELINE_DEFENSE))
        if setting[1] != BASELINE_DEFENSE and baseline:
            shared = sorted(set(baseline) & set(by_key))
            if shared:
                ratio = paired_bootstrap_ratio(
                    [baseline[k] for k in shared], [by_key[k] for k in shared], resamples=resamples, seed=seed
                )
        latency[setting] = _latency_summary(setting, list(successful[setting].values()), ratio)
    for setting in _mark_best({s: summary.ratio_value for s, summary in latency.items()}, higher_is_better=False):
        latency[setting].best = True

    return Analysis(
        rows=rows,
        settings=settings,
        columns=columns,
        cells=dict(cells),
        latency=latency,
        latencies={s: list(v.values()) for s, v in times.items()},
        category_tables=_category_tables(rows, alpha),
        outcomes=outcomes,
        alpha=alpha,
        resamples=resamples,
        seed=seed,
        comparisons=comparisons,
        judges=judge_summary(runs),
    )


def _category_tables(rows: Sequence[MetricRow], alpha: float) -> list[CategoryTable]:
    grouped: dict[tuple[str, str], list[MetricRow]] = defaultdict(list)
    for row in rows:
        if row.subset != "all" and row_metric_info(row).kind != COUNT:
            grouped[(row.task, row.metric)].append(row)
    tables = []
    for (task, metric), members in sorted(grouped.items(), key=lambda item: (item[0][0], metric_sort_key(item[0][1]))):
        categories = sorted({row.subset for row in members})
        cells: dict[Setting, dict[str, Cell]] = defaultdict(dict)
        for row in members:
            cells[(row.model, row.defense)][row.subset] = Cell(row, alpha=alpha)
        info = row_metric_info(members[0])
        for category in categories:
            values = {s: c[category].row.value for s, c in cells.items() if category in c}
            for setting in _mark_best(values, info.higher_is_better):
                cells[setting][category].best = True
        ordered = {s: cells[s] for s in sorted(cells, key=lambda s: setting_sort_key(*s))}
        tables.append(CategoryTable(task, info, categories, ordered))
    return tables


def count_view(analysis: Analysis, metric: MetricInfo | str) -> list[dict[str, Any]]:
    """The non-zero rows of a count metric (``undecided``, ``empty_answers``), in table order."""
    info = metric_info(metric)
    if info.kind != COUNT:
        raise ValueError(f"count_view: {info.name!r} is a {info.kind}, not a count")
    return [
        {"model": r.model, "defense": r.defense, "task": r.task, "subset": r.subset, "count": int(r.value), "n": r.n}
        for r in sorted(analysis.rows, key=lambda r: (*setting_sort_key(r.model, r.defense), r.task, r.subset))
        if r.metric == info.name and r.value > 0
    ]


# The flags the reports' note lists beside ASR; empty answers have a note of their own (count_view).
NOTED_FLAGS = (quality.ECHO, quality.LOOP, quality.TRUNCATED)


def flag_count_view(analysis: Analysis, flags: Sequence[str] = NOTED_FLAGS) -> list[dict[str, Any]]:
    """The non-zero answer-quality flag counts (``echo_answers``, ...), one entry per (model, defense,
    task, kind) in table order, each listing its flags in ``flags`` order with their counts out of n."""
    entries: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for flag in flags:
        for row in count_view(analysis, FLAG_COUNTS[flag]):
            key = (row["model"], row["defense"], row["task"], row["subset"])
            entry = entries.setdefault(key, {**{k: row[k] for k in ("model", "defense", "task", "subset", "n")},
                                             "flags": []})
            entry["flags"].append({"flag": flag, "count": row["count"]})
    return [entries[key] for key in sorted(entries, key=lambda k: (*setting_sort_key(k[0], k[1]), k[2], k[3]))]


def quality_legend(analysis: Analysis) -> dict[str, Any]:
    """What both reports say about the answer-quality flags: whether a substantive-ASR column is shown,
    the flags' thresholds (from ``harness.core.quality``) and the non-zero echo, loop and truncated counts."""
    return {
        "substantive": any(column.metric == SUBSTANTIVE_ASR.name for column in analysis.columns),
        "echo_words": quality.ECHO_MIN_NEW_WORDS,
        "loop_ngram": quality.LOOP_NGRAM,
        "loop_percent": round(100 * quality.LOOP_MIN_SHARE),
        "counts": flag_count_view(analysis),
    }
