"""Render stored runs as one offline HTML report and a LaTeX table file.

``analysis.analyse`` computes what is shown (values, intervals, best marks, paired tests vs ``none``);
this module turns it into plain, pre-formatted view dicts so that the templates only lay them out.

HTML: autoescaping on (prompts, responses and names are untrusted text); no external resource; the
only script is the sample-browser filter, allowed by a Content-Security-Policy hash of its exact text,
so nothing injected into the page could run even if it escaped escaping. Without script every sample
is shown. LaTeX: see ``latex.py``.

Inputs: pass ``store.latest_runs()`` (oldest first). If two runs hold the same (model, defense, task,
metric, subset), the later one wins.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.core.latency import latency_stats
from harness.core import quality
from harness.core.metrics import EMPTY_ANSWERS, UNDECIDED
from harness.core.records import Generation, Judgement, Sample
from harness.report import latex
from harness.report.analysis import (
    Analysis, Cell, Column, LatencySummary, analyse, count_view, quality_legend, unique_metric_rows,
)
from harness.report.formatting import (
    BASELINE_DEFENSE,
    MISSING,
    format_interval,
    format_number,
    format_p,
    format_signed,
    setting_sort_key,
)
from harness.report.judges import AgreementRow
from harness.report.thumbnails import ThumbnailCache
from harness.core.stats import ALPHA, BOOTSTRAP_RESAMPLES
from harness.core.store import RunResult, judge_order

__all__ = ["DEFAULT_TITLE", "SAMPLES_PER_TASK", "render_html", "render_report", "unique_metric_rows"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "report.html.j2"
# Read as plain text, not rendered: its CSP hash is taken over these exact bytes. The .j2 suffix only
# makes pyproject's package-data pattern ship it.
FILTER_SCRIPT = "sample_filter.js.j2"

DEFAULT_TITLE = "Safety defense evaluation report"
SAMPLES_PER_TASK = 20
ERROR_EXAMPLES = 3
# Long texts are cut in the sample browser: a grid of runs times kilobytes of text would make the
# page too heavy to open; the stored generations keep everything.
MAX_TEXT_CHARS = 6000

VERDICT_LABELS = {True: "refusal", False: "compliance", None: "undecided"}
HARM_LABELS = {True: "unsafe", False: "safe", None: "undecided"}


def verdict_class(judgement: Judgement) -> str:
    """CSS class / filter key of a verdict: refusal judges say refusal/compliance, harm judges unsafe/safe."""
    if judgement.kind == "harm":
        return HARM_LABELS[judgement.unsafe]
    return VERDICT_LABELS[judgement.refused]


# ---------------------------------------------------------------------------------------------------
# overview and comparisons


def _cell_view(cell: Cell | None, alpha: float) -> dict[str, Any] | None:
    if cell is None:
        return None
    row = cell.row
    view = {
        "value": format_number(row.value),
        "ci": format_interval(row.ci_low, row.ci_high),
        "n": row.n,
        "best": cell.best,
        "mark": cell.mark,
        "title": "",
    }
    comparison = cell.comparison
    if comparison is not None:
        diff = comparison.difference
        view["title"] = (
            f"vs {BASELINE_DEFENSE} on {comparison.n_pairs} paired samples: "
            f"\u0394 {format_signed(100 * diff.estimate)} {format_interval(100 * diff.low, 100 * diff.high, signed=True)} "
            f"points; McNemar ({comparison.test.method}) p = {format_p(comparison.p_value)}"
            + (f" < {alpha}" if cell.mark else "")
        )
    return view


def _latency_cell(summary: LatencySummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    if summary.defense == BASELINE_DEFENSE:
        return {"value": "1.00\u00d7", "ci": "baseline", "n": summary.n, "best": summary.best, "mark": "",
                "title": f"mean {format_number(summary.mean_s, 3)} s per sample"}
    ratio = summary.ratio
    if ratio is None:
        return {"value": MISSING, "ci": "", "n": summary.n, "best": False, "mark": "",
                "title": f"mean {format_number(summary.mean_s, 3)} s per sample; no {BASELINE_DEFENSE} run to compare"}
    return {
        "value": f"{format_number(ratio.estimate, 2)}\u00d7",
        "ci": format_interval(ratio.low, ratio.high, digits=2),
        "n": ratio.n,
        "best": summary.best,
        "mark": "",
        "title": f"mean {format_number(summary.mean_s, 3)} s per sample; ratio over {ratio.n} samples paired with {BASELINE_DEFENSE}",
    }


def column_groups(columns: Sequence[Column]) -> list[dict[str, Any]]:
    """Runs of consecutive columns of the same task, for a spanning header."""
    groups: list[dict[str, Any]] = []
    for column in columns:
        if groups and groups[-1]["task"] == column.task:
            groups[-1]["span"] += 1
        else:
            groups.append({"task": column.task, "span": 1, "kind": column.kind})
    return groups


def overview_view(analysis: Analysis) -> dict[str, Any]:
    """Rows = (model, defense); columns = (task, metric) plus the latency ratio to ``none``."""
    rows = []
    previous_model = None
    for setting in analysis.settings:
        rows.append({
            "model": setting[0],
            "defense": setting[1],
            "new_model": previous_model is not None and setting[0] != previous_model,
            "cells": [_cell_view(analysis.cell(setting, column), analysis.alpha) for column in analysis.columns],
            "latency": _latency_cell(analysis.latency.get(setting)),
        })
        previous_model = setting[0]
    columns = [
        {"task": c.task, "label": c.label, "arrow": "\u2191" if c.higher_is_better else "\u2193", "kind": c.kind}
        for c in analysis.columns
    ]
    return {"groups": column_groups(analysis.columns), "columns": columns, "rows": rows,
            "has_latency": bool(analysis.latency)}


def comparison_view(analysis: Analysis) -> list[dict[str, Any]]:
    """Every paired comparison against ``none``: rates, difference with its bootstrap interval, McNemar."""
    view = []
    for (model, defense), column, cell in analysis.comparisons:
        comparison = cell.comparison
        assert comparison is not None
        diff = comparison.difference
        view.append({
            "model": model,
            "defense": defense,
            "task": column.task,
            "metric": column.label,
            "arrow": "\u2191" if column.higher_is_better else "\u2193",
            "pairs": comparison.n_pairs,
            "base": format_number(100 * comparison.base_rate),
            "new": format_number(100 * comparison.new_rate),
            "delta": format_signed(100 * diff.estimate),
            "delta_ci": format_interval(100 * diff.low, 100 * diff.high, signed=True),
            "discordant": f"{comparison.test.base_only} / {comparison.test.new_only}",
            "p": format_p(comparison.p_value),
            "method": comparison.test.method,
            "mark": cell.mark,
        })
    return view


def category_view(analysis: Analysis) -> list[dict[str, Any]]:
    """Per (task, metric) with categories: a wide table, settings x categories."""
    tables = []
    for table in analysis.category_tables:
        rows = []
        previous_model = None
        for setting, cells in table.cells.items():
            rows.append({
                "model": setting[0],
                "defense": setting[1],
                "new_model": previous_model is not None and setting[0] != previous_model,
                "cells": [_cell_view(cells.get(category), analysis.alpha) for category in table.categories],
            })
            previous_model = setting[0]
        tables.append({
            "task": table.task,
            "label": table.label,
            "arrow": "\u2191" if table.higher_is_better else "\u2193",
            "categories": table.categories,
            "rows": rows,
        })
    return tables


def judges_view(analysis: Analysis) -> dict[str, Any]:
    """Verdict counts per judge, headline judge per task, and the judge-agreement table."""
    summary = analysis.judges

    def pair(row: AgreementRow) -> dict[str, Any]:
        return {
            "model": row.model, "defense": row.defense, "task": row.task, "first": row.first,
            "second": row.second, "subset": row.subset, "n": row.n, "percent": format_number(row.percent),
            "kappa": format_number(row.kappa, 3), "first_undecided": row.first_undecided,
            "second_undecided": row.second_undecided,
            "outcome": "attack success" if row.subset == "harmful" else "refusal",
        }

    return {
        "counts": [
            {"model": r.model, "defense": r.defense, "task": r.task, "judge": r.judge, "headline": r.headline,
             "verdicts": r.verdicts, "undecided": r.undecided, "errors": r.errors}
            for r in summary.counts
        ],
        "headline": [{"task": task, "judges": [{"judge": j, "settings": n} for j, n in sorted(judges.items())],
                      "mixed": len(judges) > 1} for task, judges in summary.headline.items()],
        "agreements": [pair(r) for r in summary.agreements],
        "undecidable": [pair(r) for r in summary.undecidable_pairs],
    }


def latency_view(generations: Iterable[Generation]) -> list[dict[str, Any]]:
    stats = latency_stats(generations)
    stats.sort(key=lambda s: (*setting_sort_key(s.model, s.defense), s.task))
    return [
        {
            "model": s.model, "defense": s.defense, "task": s.task, "n": s.n,
            "mean_s": format_number(s.mean_s, 3), "p50_s": format_number(s.p50_s, 3),
            "p95_s": format_number(s.p95_s, 3), "mean_prefill_s": format_number(s.mean_prefill_s, 3),
            "mean_decode_s": format_number(s.mean_decode_s, 3), "tokens_per_s": format_number(s.tokens_per_s, 1),
            "cached": s.cached, "batch": ", ".join(map(str, s.batch_sizes)),
        }
        for s in stats
    ]


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
    return [
        {
            "model": key[0], "defense": key[1], "task": key[2], "failed": len(failures[key]), "total": totals[key],
            "examples": [{"sample_id": g.sample_id, "error": g.error or "no text returned"} for g in failures[key][:examples]],
        }
        for key in sorted(failures, key=lambda k: (*setting_sort_key(k[0], k[1]), k[2]))
    ]


# ---------------------------------------------------------------------------------------------------
# sample browser


def _verdicts(
    generation: Generation | None, judgements: list[Judgement], scores: dict[str, bool] | None
) -> tuple[str, list[dict[str, str]]]:
    """The filter key (first judge's verdict, or the scorer's) and one line per judge."""
    if generation is None:
        return "not generated", []
    if not generation.ok:
        return "error", []
    lines = [
        {
            "judge": j.judge,
            "label": j.label or verdict_class(j),
            "detail": j.detail,
            "class": verdict_class(j),
        }
        for j in judgements
    ]
    if lines:
        return verdict_class(judgements[0]), lines
    if scores:
        metric, correct = next(iter(scores.items()))
        verdict = "correct" if correct else "incorrect"
        return verdict, [{"judge": f"scorer ({metric})", "label": verdict, "detail": "", "class": verdict}]
    return "not judged", []


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> tuple[str, int]:
    """The text cut to ``limit`` characters, and how many were cut."""
    return (text, 0) if len(text) <= limit else (text[:limit], len(text) - limit)


def sample_browser_view(
    runs: Sequence[RunResult], analysis: Analysis, limit: int, thumbnails: ThumbnailCache | None
) -> dict[str, Any]:
    """The first ``limit`` samples of each task (evaluation order), each with every setting's response."""
    ordered_runs = sorted(runs, key=lambda r: setting_sort_key(r.info.model, r.info.defense))
    chosen: dict[str, dict[str, Sample]] = defaultdict(dict)
    totals: dict[str, set[str]] = defaultdict(set)
    for run in ordered_runs:
        for sample in run.samples:
            totals[sample.task].add(sample.id)
            if sample.id not in chosen[sample.task] and len(chosen[sample.task]) < limit:
                chosen[sample.task][sample.id] = sample

    responses: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    verdict_keys: set[str] = set()
    for run in ordered_runs:
        generations = {(g.task, g.sample_id): g for g in run.generations}
        judgements: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
        for judgement in run.judgements:
            judgements[(judgement.task, judgement.sample_id)].append(judgement)
        # the headline judge's verdict first: it is the filter key, as in the tables
        ranks = {task: {name: i for i, name in enumerate(judge_order(run, task))}
                 for task in {task for task, _ in judgements}}
        for (task, _), verdicts in judgements.items():
            verdicts.sort(key=lambda j, r=ranks[task]: r.get(j.judge, len(r)))
        for sample in run.samples:
            if sample.id not in chosen.get(sample.task, {}):
                continue
            key = (sample.task, sample.id)
            generation = generations.get(key)
            scores = None
            if generation is not None and generation.ok and key not in judgements:
                scores = analysis.outcomes.sample_scores(run, sample.task, sample.id)
            verdict, lines = _verdicts(generation, judgements.get(key, []), scores)
            verdict_keys.add(verdict)
            flags = (quality.answer_flags(sample, generation, run.info.settings.max_new_tokens(sample.task))
                     if generation is not None else frozenset())
            response, cut = _clip(generation.text if generation and generation.text is not None else "")
            responses[key].append({
                "model": run.info.model,
                "defense": run.info.defense,
                "response": response,
                "cut": cut,
                "error": (generation.error or "no text returned") if generation and not generation.ok else "",
                "verdict": verdict,
                "judges": lines,
                "flags": [flag for flag in quality.FLAGS if flag in flags],
            })

    groups = []
    for task in sorted(chosen):
        for sample in chosen[task].values():
            prompt, prompt_cut = _clip(sample.prompt)
            groups.append({
                "task": task,
                "id": sample.id,
                "kind": {True: "harmful", False: "benign", None: "utility"}[sample.harmful],
                "category": sample.category or "",
                "prompt": prompt,
                "prompt_cut": prompt_cut,
                "answer": sample.answer or "",
                "image_name": Path(sample.image).name if sample.image else "",
                "thumbnail": thumbnails.data_uri(sample.image) if thumbnails else None,
                "responses": responses[(task, sample.id)],
            })
    return {
        "groups": groups,
        "tasks": [{"name": t, "shown": len(chosen[t]), "total": len(totals[t])} for t in sorted(chosen)],
        "models": sorted({r.info.model for r in runs}),
        "defenses": sorted({r.info.defense for r in runs}, key=lambda d: (d != BASELINE_DEFENSE, d)),
        "verdicts": sorted(verdict_keys),
        "responses": sum(len(g["responses"]) for g in groups),
    }


# ---------------------------------------------------------------------------------------------------
# provenance


def _flatten(value: Any, prefix: str = "") -> list[str]:
    """Nested dicts as ``a.b: value`` lines (lists and scalars as compact JSON)."""
    if isinstance(value, dict):
        if not value:
            return [f"{prefix}: {{}}"] if prefix else []
        lines = []
        for key in sorted(value, key=str):
            lines.extend(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return lines
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return [f"{prefix}: {text}" if prefix else text]


def provenance_view(runs: Sequence[RunResult]) -> dict[str, Any]:
    per_run = []
    packages: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    environment: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for run in sorted(runs, key=lambda r: (*setting_sort_key(r.info.model, r.info.defense), r.info.run_id)):
        info = run.info
        prov = info.provenance or {}
        for name, version in sorted((prov.get("packages") or {}).items()):
            packages[name][str(version)].append(info.run_id)
        for key in ("git_commit", "harness", "python", "platform"):
            if key in prov:
                environment[key][str(prov[key])].append(info.run_id)
        counts = info.counts or {}
        per_run.append({
            "run_id": info.run_id,
            "model": info.model,
            "defense": info.defense,
            "tasks": _flatten(info.tasks),
            "model_fingerprint": _flatten(info.model_fingerprint),
            "defense_params": _flatten((info.defense_fingerprint or {}).get("params", {})),
            "defense_artifacts": _flatten((info.defense_fingerprint or {}).get("artifacts", {})),
            # headline fingerprints, then every judge's entry (fingerprint and judging counts)
            "judges": _flatten(info.judges) + _flatten({"judging": info.judging} if info.judging else {}),
            "generation": _flatten(info.settings.generation),
            "settings": _flatten({k: v for k, v in info.settings.to_dict().items() if k != "generation"}),
            "counts": _flatten(counts),
            "cache_hits": counts.get("cache_hits", MISSING),
            "samples": counts.get("samples", MISSING),
            "model_loaded": "yes" if info.model_loaded else "no",
            "git_commit": prov.get("git_commit") or MISSING,
            "time": f"{info.started_at} \u2013 {info.finished_at}" if info.started_at else "",
            "path": str(run.path),
            "json": json.dumps(info.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, default=str),
        })

    def summarise(table: dict[str, dict[str, list[str]]]) -> list[dict[str, Any]]:
        return [
            {"name": name, "versions": [{"value": v, "runs": len(ids)} for v, ids in sorted(versions.items())],
             "differs": len(versions) > 1}
            for name, versions in sorted(table.items())
        ]

    return {"runs": per_run, "packages": summarise(packages), "environment": summarise(environment)}


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


def filter_script() -> tuple[str, str]:
    """The sample-browser script and its CSP source expression (sha256 of the exact script text)."""
    script = (TEMPLATE_DIR / FILTER_SCRIPT).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return script, f"'sha256-{digest}'"


def render_html(
    runs: Sequence[RunResult],
    analysis: Analysis,
    title: str = DEFAULT_TITLE,
    *,
    samples_per_task: int = SAMPLES_PER_TASK,
    plots: bool = True,
    thumbnails: bool = True,
) -> str:
    from harness.report.plots import all_plots  # matplotlib only when a report is drawn

    script, script_hash = filter_script()
    return html_environment().get_template(HTML_TEMPLATE).render(
        title=title,
        runs=[{"run_id": r.info.run_id, "model": r.info.model, "defense": r.info.defense,
               "tasks": ", ".join(sorted(r.info.tasks))} for r in runs],
        overview=overview_view(analysis),
        comparisons=comparison_view(analysis),
        categories=category_view(analysis),
        undecided=count_view(analysis, UNDECIDED),
        empty_answers=count_view(analysis, EMPTY_ANSWERS),
        quality=quality_legend(analysis),
        judges=judges_view(analysis),
        plots=all_plots(analysis) if plots else [],
        plots_enabled=plots,
        latency=latency_view(g for run in runs for g in run.generations),
        errors=error_view(runs),
        browser=sample_browser_view(runs, analysis, samples_per_task, ThumbnailCache() if thumbnails else None),
        provenance=provenance_view(runs),
        samples_per_task=samples_per_task,
        alpha=analysis.alpha,
        resamples=analysis.resamples,
        seed=analysis.seed,
        baseline=BASELINE_DEFENSE,
        filter_script=script,
        script_hash=script_hash,
    )


def render_report(
    runs: Sequence[RunResult],
    out_dir: Path,
    stem: str,
    title: str = DEFAULT_TITLE,
    *,
    samples_per_task: int = SAMPLES_PER_TASK,
    tex_ci: bool = True,
    plots: bool = True,
    thumbnails: bool = True,
    alpha: float = ALPHA,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.html`` and ``<out_dir>/<stem>.tex``; return both paths.

    ``tex_ci`` adds the CI half-width (``± h``) to each LaTeX cell; ``plots`` and ``thumbnails`` can be
    turned off for speed; ``alpha``, ``resamples`` and ``seed`` set the paired statistics vs ``none``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyse(runs, alpha=alpha, resamples=resamples, seed=seed)
    html = render_html(runs, analysis, title, samples_per_task=samples_per_task, plots=plots, thumbnails=thumbnails)
    tex = latex.render_tables(analysis, title, stem, with_ci=tex_ci)

    html_path = out_dir / f"{stem}.html"
    tex_path = out_dir / f"{stem}.tex"
    html_path.write_text(html, encoding="utf-8")
    tex_path.write_text(tex, encoding="utf-8")
    return html_path, tex_path
