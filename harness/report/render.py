"""Render stored runs as one offline HTML report and a LaTeX table file.

Templates live in ``templates/``; this module turns runs into plain, pre-formatted view dicts so the
templates only lay them out. HTML is rendered with autoescaping on (model outputs are untrusted text);
LaTeX with its own delimiters and every printed value passed through ``latex_escape``.

Expected inputs: ``MetricRow`` rows with ``subset == "all"`` feed the summary and LaTeX tables, all other
subsets feed the per-category table. If two runs hold the same (model, defense, task, metric, subset),
the later one in ``runs`` wins, so pass ``store.latest_runs()`` (oldest first) for a comparison.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.latency import LatencyStats, latency_stats
from harness.records import Generation, Judgement, MetricRow
from harness.report.latex import TexSafe, tex_finalize
from harness.store import RunResult

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "report.html.j2"
TEX_TEMPLATE = "tables.tex.j2"

DEFAULT_TITLE = "Safety defense evaluation report"
SAMPLES_PER_TASK = 20
ERROR_EXAMPLES = 3
MISSING = "n/a"

# Headline metrics first, in this order; any other metric follows alphabetically.
METRIC_ORDER = ("asr", "refusal_rate", "accuracy", "circular_accuracy", "mme_perception", "mme_cognition")
# Display names only; a metric without one is shown under its own name.
METRIC_LABELS = {
    "asr": "ASR (harmful)",
    "refusal_rate": "Refusal rate (benign)",
    "accuracy": "Accuracy",
    "circular_accuracy": "Circular accuracy",
    "vanilla_accuracy": "Vanilla accuracy",
    "mme_perception": "MME perception (score)",
    "mme_cognition": "MME cognition (score)",
    "mme_score": "MME score",
    "acc_plus": "acc+",
    "undecided": "Undecided (count)",
}
BASELINE_DEFENSE = "none"


# ---------------------------------------------------------------------------------------------------
# formatting


def _is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: float | None, digits: int = 1) -> str:
    """Fixed decimals (one by default: metric values are percents), "n/a" for None/NaN."""
    if _is_missing(value):
        return MISSING
    return f"{value:.{digits}f}"


def format_metric(row: MetricRow) -> str:
    """``value [ci_low, ci_high] (n)``; the interval is left out when the row has none."""
    text = format_number(row.value)
    if not _is_missing(row.ci_low) and not _is_missing(row.ci_high):
        text += f" [{format_number(row.ci_low)}, {format_number(row.ci_high)}]"
    return f"{text} ({row.n})"


def half_width(row: MetricRow) -> float | None:
    """Half the CI width: the symmetric ``±`` shown in LaTeX (Wilson intervals are not symmetric)."""
    if _is_missing(row.ci_low) or _is_missing(row.ci_high):
        return None
    return (row.ci_high - row.ci_low) / 2  # type: ignore[operator]


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _metric_sort_key(metric: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _setting_sort_key(model: str, defense: str) -> tuple[str, bool, str]:
    """Models alphabetically; within a model the undefended baseline first."""
    return (model, defense != BASELINE_DEFENSE, defense)


# ---------------------------------------------------------------------------------------------------
# views: plain dicts of already formatted strings


@dataclass
class MetricColumn:
    metric: str
    label: str
    higher_is_better: bool

    @property
    def arrow(self) -> str:
        return "\u2191" if self.higher_is_better else "\u2193"


def unique_metric_rows(runs: Sequence[RunResult]) -> list[MetricRow]:
    """All metric rows, one per (model, defense, task, metric, subset); later runs win."""
    chosen: dict[tuple[str, str, str, str, str], MetricRow] = {}
    for run in runs:
        for row in run.metrics:
            chosen[(row.model, row.defense, row.task, row.metric, row.subset)] = row
    return list(chosen.values())


def _metric_columns(rows: Iterable[MetricRow]) -> list[MetricColumn]:
    columns: dict[str, MetricColumn] = {}
    for row in rows:
        columns.setdefault(row.metric, MetricColumn(row.metric, metric_label(row.metric), row.higher_is_better))
    return [columns[name] for name in sorted(columns, key=_metric_sort_key)]


def summary_view(rows: Sequence[MetricRow]) -> dict[str, Any]:
    """One line per (model, defense, task); one column per metric over ``subset == "all"`` rows."""
    overall = [row for row in rows if row.subset == "all"]
    columns = _metric_columns(overall)
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in overall:
        line = lines.setdefault(
            (row.model, row.defense, row.task),
            {"model": row.model, "defense": row.defense, "task": row.task, "task_version": row.task_version,
             "judges": set(), "cells": {}},
        )
        line["cells"][row.metric] = format_metric(row)
        if row.judge:
            line["judges"].add(row.judge)
    ordered = [lines[key] for key in sorted(lines, key=lambda k: (*_setting_sort_key(k[0], k[1]), k[2]))]
    for line in ordered:
        line["judges"] = ", ".join(sorted(line["judges"]))
    return {"columns": columns, "rows": ordered}


def category_view(rows: Sequence[MetricRow]) -> list[dict[str, Any]]:
    """Rows for every subset other than "all" (categories, harmful/benign undecided counts, ...)."""
    subsets = [row for row in rows if row.subset != "all"]
    subsets.sort(key=lambda r: (*_setting_sort_key(r.model, r.defense), r.task, _metric_sort_key(r.metric), r.subset))
    return [
        {"model": r.model, "defense": r.defense, "task": r.task, "metric": metric_label(r.metric),
         "subset": r.subset, "text": format_metric(r)}
        for r in subsets
    ]


def _format_latency(stats: LatencyStats) -> dict[str, Any]:
    return {
        "model": stats.model,
        "defense": stats.defense,
        "task": stats.task,
        "n": stats.n,
        "mean_s": format_number(stats.mean_s, 3),
        "p50_s": format_number(stats.p50_s, 3),
        "p95_s": format_number(stats.p95_s, 3),
        "mean_prefill_s": format_number(stats.mean_prefill_s, 3),
        "mean_decode_s": format_number(stats.mean_decode_s, 3),
        "tokens_per_s": format_number(stats.tokens_per_s, 1),
        "cached": stats.cached,
    }


def latency_view(generations: Iterable[Generation]) -> list[dict[str, Any]]:
    stats = latency_stats(generations)
    stats.sort(key=lambda s: (*_setting_sort_key(s.model, s.defense), s.task))
    return [_format_latency(s) for s in stats]


def error_view(runs: Sequence[RunResult], examples: int = ERROR_EXAMPLES) -> list[dict[str, Any]]:
    """Failed generations per (model, defense, task), with the first few messages."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    failures: dict[tuple[str, str, str], list[Generation]] = defaultdict(list)
    for run in runs:
        for generation in run.generations:
            key = (generation.model, generation.defense, generation.task)
            totals[key] += 1
            if not generation.ok:
                failures[key].append(generation)
    view = []
    for key in sorted(failures, key=lambda k: (*_setting_sort_key(k[0], k[1]), k[2])):
        failed = failures[key]
        view.append({
            "model": key[0], "defense": key[1], "task": key[2],
            "failed": len(failed), "total": totals[key],
            "examples": [{"sample_id": g.sample_id, "error": g.error or "no text returned"} for g in failed[:examples]],
        })
    return view


def _verdict(generation: Generation | None, judgements: list[Judgement]) -> str:
    if generation is None:
        return "not generated"
    if not generation.ok:
        return "error"
    if not judgements:
        return "not judged"
    parts = []
    for judgement in judgements:
        label = judgement.label or {True: "refusal", False: "compliance", None: "undecided"}[judgement.refused]
        detail = f": {judgement.detail}" if judgement.detail else ""
        parts.append(f"{judgement.judge} \u2192 {label}{detail}")
    return "; ".join(parts)


def _verdict_class(generation: Generation | None, judgements: list[Judgement]) -> str:
    """CSS class for colouring a verdict: error, refusal (any judge refused), compliance, or none."""
    if generation is None or not generation.ok:
        return "error"
    refusals = {judgement.refused for judgement in judgements}
    if True in refusals:
        return "refusal"
    return "compliance" if False in refusals else ""


def sample_view(runs: Sequence[RunResult], limit: int = SAMPLES_PER_TASK) -> list[dict[str, Any]]:
    """For each run and task, the first ``limit`` samples with response and verdict."""
    sections = []
    for run in runs:
        generations = {(g.task, g.sample_id): g for g in run.generations}
        judgements: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
        for judgement in run.judgements:
            judgements[(judgement.task, judgement.sample_id)].append(judgement)
        by_task: dict[str, list[dict[str, Any]]] = {}
        for sample in run.samples:
            items = by_task.setdefault(sample.task, [])
            if len(items) >= limit:
                continue
            generation = generations.get((sample.task, sample.id))
            verdicts = judgements.get((sample.task, sample.id), [])
            items.append({
                "id": sample.id,
                "prompt": sample.prompt,
                "image": Path(sample.image).name if sample.image else "",
                "harmful": {True: "harmful", False: "benign", None: "utility"}[sample.harmful],
                "category": sample.category or "",
                "answer": sample.answer or "",
                "response": generation.text if generation and generation.text is not None else "",
                "error": generation.error if generation and generation.error else "",
                "verdict": _verdict(generation, verdicts),
                "verdict_class": _verdict_class(generation, verdicts),
            })
        totals = defaultdict(int)
        for sample in run.samples:
            totals[sample.task] += 1
        for task, items in by_task.items():
            sections.append({
                "run_id": run.info.run_id, "model": run.info.model, "defense": run.info.defense,
                "task": task, "shown": len(items), "total": totals[task], "samples": items,
            })
    return sections


def provenance_view(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run.info.run_id,
            "model": run.info.model,
            "defense": run.info.defense,
            "path": str(run.path),
            "json": json.dumps(run.info.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, default=str),
        }
        for run in runs
    ]


def tex_main_view(rows: Sequence[MetricRow], with_ci: bool = True) -> dict[str, Any]:
    """Rows = (model, defense); columns = (task, metric) over ``subset == "all"``, grouped by task."""
    overall = [row for row in rows if row.subset == "all"]
    columns_by_task: dict[str, dict[str, bool]] = defaultdict(dict)
    cells: dict[tuple[str, str], dict[tuple[str, str], MetricRow]] = defaultdict(dict)
    for row in overall:
        columns_by_task[row.task].setdefault(row.metric, row.higher_is_better)
        cells[(row.model, row.defense)][(row.task, row.metric)] = row

    columns: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for task in sorted(columns_by_task):
        start = len(columns) + 3  # LaTeX column index: model and defense come first
        for metric in sorted(columns_by_task[task], key=_metric_sort_key):
            arrow = r"$\uparrow$" if columns_by_task[task][metric] else r"$\downarrow$"
            columns.append({"task": task, "metric": metric, "label": metric_label(metric), "arrow": TexSafe(arrow)})
        groups.append({"task": task, "start": start, "end": len(columns) + 2, "span": len(columns) + 3 - start})

    body = []
    previous_model = None
    for model, defense in sorted(cells, key=lambda k: _setting_sort_key(*k)):
        row_cells = [
            _tex_cell(cells[(model, defense)].get((column["task"], column["metric"])), with_ci) for column in columns
        ]
        # the model name is printed once per block of its defenses
        body.append({"model": model if model != previous_model else "", "defense": defense, "cells": row_cells,
                     "new_model": previous_model is not None and model != previous_model})
        previous_model = model
    return {"columns": columns, "groups": groups, "rows": body}


def _tex_cell(row: MetricRow | None, with_ci: bool) -> TexSafe:
    if row is None or _is_missing(row.value):
        return TexSafe("--")
    text = format_number(row.value)
    width = half_width(row)
    if with_ci and width is not None:
        text += rf" {{\scriptsize $\pm$ {format_number(width)}}}"
    return TexSafe(text)


def _tex_label(stem: str, suffix: str) -> TexSafe:
    """\\label keys cannot hold escaped characters: keep letters, digits, ':' and '-'."""
    return TexSafe("tab:" + re.sub(r"[^A-Za-z0-9:-]+", "-", stem) + "-" + suffix)


# ---------------------------------------------------------------------------------------------------
# rendering


def html_environment() -> Environment:
    # autoescape on for everything: prompts, responses and names are untrusted text
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def tex_environment() -> Environment:
    # LaTeX is full of { } and %, so Jinja uses ((* *)), ((( ))) and ((= =)) instead
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
        autoescape=False,
        finalize=tex_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(
    runs: Sequence[RunResult],
    out_dir: Path,
    stem: str,
    title: str = DEFAULT_TITLE,
    *,
    samples_per_task: int = SAMPLES_PER_TASK,
    tex_ci: bool = True,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.html`` and ``<out_dir>/<stem>.tex``; return both paths.

    ``tex_ci`` adds the CI half-width (``± h``) to each LaTeX cell.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric_rows = unique_metric_rows(runs)
    all_generations = [g for run in runs for g in run.generations]
    latency = latency_view(all_generations)

    html = html_environment().get_template(HTML_TEMPLATE).render(
        title=title,
        runs=[{"run_id": r.info.run_id, "model": r.info.model, "defense": r.info.defense,
               "tasks": ", ".join(sorted(r.info.tasks))} for r in runs],
        summary=summary_view(metric_rows),
        categories=category_view(metric_rows),
        latency=latency,
        errors=error_view(runs),
        sample_sections=sample_view(runs, samples_per_task),
        provenance=provenance_view(runs),
        samples_per_task=samples_per_task,
    )
    tex = tex_environment().get_template(TEX_TEMPLATE).render(
        title=title,
        main=tex_main_view(metric_rows, with_ci=tex_ci),
        latency=latency,
        with_ci=tex_ci,
        main_label=_tex_label(stem, "main"),
        latency_label=_tex_label(stem, "latency"),
    )

    html_path = out_dir / f"{stem}.html"
    tex_path = out_dir / f"{stem}.tex"
    html_path.write_text(html, encoding="utf-8")
    tex_path.write_text(tex, encoding="utf-8")
    return html_path, tex_path
