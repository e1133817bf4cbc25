r"""LaTeX tables for the report: escaping, views and rendering.

Booktabs tables meant for ``\input`` (the including document needs ``\usepackage{booktabs}``):
the main comparison (model x defense rows, (task, metric) columns, latency ratio to ``none``), the
per-category breakdowns, latency, and, when several judges scored the same generations, judge
agreement (Cohen's kappa) with each judge's verdict and undecided counts. Best per column (within each model's block of defenses) in
bold; ``$^{*}$``: McNemar p < alpha against ``none`` on the same samples; optional ``± h``, half the
95 % interval's width.

The LaTeX Jinja environment escapes every variable it prints with ``latex_escape``; values that are
already LaTeX (built in Python from escaped parts) are wrapped in ``TexSafe`` to pass through as is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.core.metrics import EMPTY_ANSWERS
from harness.report.analysis import Analysis, Cell, Column, LatencySummary, analyse, count_view, quality_legend
from harness.report.formatting import BASELINE_DEFENSE, format_number, is_missing
from harness.core.store import RunResult

# One pass over the characters, so the braces of an inserted \textbackslash{} are never re-escaped.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # outside math mode the default OT1 font prints < and > as inverted punctuation
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    # a blank line inside a tabular is a paragraph break (an error); line breaks become spaces
    "\n": " ",
    "\r": " ",
}


class TexSafe(str):
    """A string that is already valid LaTeX and must not be escaped again."""


def latex_escape(text: Any) -> str:
    """Escape LaTeX's special characters \\ & % $ # _ { } ~ ^ (and < >); line breaks become spaces; None -> ""."""
    if text is None:
        return ""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in str(text))


def tex_finalize(value: Any) -> str:
    """Jinja ``finalize`` hook: escape everything printed, except TexSafe values."""
    if isinstance(value, TexSafe):
        return value
    return latex_escape(value)


# ---------------------------------------------------------------------------------------------------
# tables

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEX_TEMPLATE = "tables.tex.j2"
TABLE_PARTS = ("main", "categories", "latency", "agreement")
EMPTY_CELL = TexSafe("--")


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


def tex_label(stem: str, suffix: str) -> TexSafe:
    """\\label keys cannot hold escaped characters: keep letters, digits, ':' and '-'."""
    return TexSafe("tab:" + re.sub(r"[^A-Za-z0-9:-]+", "-", stem) + "-" + suffix)


def _half_width(low: float | None, high: float | None) -> float | None:
    """Half the interval width: the symmetric ``±`` shown (Wilson and bootstrap intervals are not symmetric)."""
    if is_missing(low) or is_missing(high):
        return None
    return (high - low) / 2  # type: ignore[operator]


def _tex_number(value: float | None, digits: int, *, best: bool, mark: str, half: float | None, with_ci: bool) -> TexSafe:
    if is_missing(value):
        return EMPTY_CELL
    text = format_number(value, digits)
    if best:
        text = rf"\textbf{{{text}}}"
    if mark:
        text += rf"$^{{{latex_escape(mark)}}}$"
    if with_ci and half is not None:
        text += rf" {{\scriptsize $\pm$ {format_number(half, digits)}}}"
    return TexSafe(text)


def tex_cell(cell: Cell | None, with_ci: bool) -> TexSafe:
    if cell is None:
        return EMPTY_CELL
    row = cell.row
    return _tex_number(row.value, 1, best=cell.best, mark=cell.mark, half=_half_width(row.ci_low, row.ci_high), with_ci=with_ci)


def tex_latency_ratio(summary: LatencySummary | None, with_ci: bool) -> TexSafe:
    if summary is None:
        return EMPTY_CELL
    if summary.defense == BASELINE_DEFENSE:
        return _tex_number(1.0, 2, best=summary.best, mark="", half=None, with_ci=False)
    ratio = summary.ratio
    if ratio is None:
        return EMPTY_CELL
    return _tex_number(ratio.estimate, 2, best=summary.best, mark="", half=_half_width(ratio.low, ratio.high), with_ci=with_ci)


def _arrow(higher_is_better: bool) -> TexSafe:
    return TexSafe(r"$\uparrow$" if higher_is_better else r"$\downarrow$")


def _task_groups(columns: Sequence[Column], first_index: int) -> list[dict[str, object]]:
    """Spanning task headers with their \\cmidrule ranges (LaTeX column numbers start at 1)."""
    groups: list[dict[str, object]] = []
    for position, column in enumerate(columns):
        index = first_index + position
        if groups and groups[-1]["task"] == column.task:
            groups[-1]["end"] = index
            groups[-1]["span"] = int(groups[-1]["span"]) + 1  # type: ignore[arg-type]
        else:
            groups.append({"task": column.task, "start": index, "end": index, "span": 1})
    return groups


def _setting_rows(
    settings: Sequence[tuple[str, str]], cells_for: Callable[[tuple[str, str]], list[Any]]
) -> list[dict[str, object]]:
    rows = []
    previous_model = None
    for model, defense in settings:
        # the model name is printed once per block of its defenses
        rows.append({"model": model if model != previous_model else "", "defense": defense,
                     "new_model": previous_model is not None and model != previous_model,
                     "cells": cells_for((model, defense))})
        previous_model = model
    return rows


def tex_main_view(analysis: Analysis, with_ci: bool = True) -> dict[str, object]:
    """Rows = (model, defense); columns = (task, metric) over ``subset == "all"``, then latency ratio."""
    columns = [{"label": c.label, "arrow": _arrow(c.higher_is_better)} for c in analysis.columns]
    has_latency = bool(analysis.latency)

    def cells_for(setting: tuple[str, str]) -> list[TexSafe]:
        cells = [tex_cell(analysis.cell(setting, column), with_ci) for column in analysis.columns]
        if has_latency:
            cells.append(tex_latency_ratio(analysis.latency.get(setting), with_ci))
        return cells

    return {
        "columns": columns,
        "groups": _task_groups(analysis.columns, 3),  # model and defense come first
        "has_latency": has_latency,
        "latency_index": len(columns) + 3,
        "rows": _setting_rows(analysis.settings, cells_for),
        "spec": "ll" + "r" * (len(columns) + int(has_latency)),
    }


def tex_category_views(analysis: Analysis, stem: str, with_ci: bool = True) -> list[dict[str, object]]:
    views = []
    for index, table in enumerate(analysis.category_tables):
        views.append({
            "task": table.task,
            "label": table.label,
            "arrow": _arrow(table.higher_is_better),
            "categories": table.categories,
            "spec": "ll" + "r" * len(table.categories),
            "rows": _setting_rows(
                list(table.cells), lambda s, t=table: [tex_cell(t.cells[s].get(c), with_ci) for c in t.categories]
            ),
            "tex_label": tex_label(stem, f"category-{index + 1}"),
        })
    return views


def tex_latency_view(analysis: Analysis, with_ci: bool = True) -> list[dict[str, object]]:
    def cells_for(setting: tuple[str, str]) -> list[object]:
        summary = analysis.latency[setting]
        return [
            summary.n,
            TexSafe(format_number(summary.mean_s, 3)),
            TexSafe(format_number(summary.p50_s, 3)),
            TexSafe(format_number(summary.p95_s, 3)),
            TexSafe(format_number(summary.tokens_per_s, 1)),
            tex_latency_ratio(summary, with_ci),
            summary.cached,
        ]

    return _setting_rows([s for s in analysis.settings if s in analysis.latency], cells_for)


def tex_agreement_view(analysis: Analysis) -> dict[str, list[list[object]]]:
    """Rows of the agreement table (pairs with n >= 1) and of the verdict counts of every judge of a
    (setting, task) that more than one judge scored."""
    summary = analysis.judges
    pairs = [
        [r.model, r.defense, r.task, f"{r.first} vs {r.second}", r.subset, r.n,
         TexSafe(format_number(r.percent)), TexSafe(format_number(r.kappa, 3)),
         TexSafe(f"{r.first_undecided} / {r.second_undecided}")]
        for r in summary.agreements
    ]
    judged: dict[tuple[str, str, str], int] = {}
    for r in summary.counts:
        judged[(r.model, r.defense, r.task)] = judged.get((r.model, r.defense, r.task), 0) + 1
    counts = [
        [r.model, r.defense, r.task, r.judge + (" (headline)" if r.headline else ""), r.verdicts, r.undecided, r.errors]
        for r in summary.counts if judged[(r.model, r.defense, r.task)] > 1
    ]
    return {"pairs": pairs, "counts": counts if pairs else []}


def render_tables(
    analysis: Analysis,
    title: str,
    stem: str,
    *,
    with_ci: bool = True,
    parts: Sequence[str] = TABLE_PARTS,
) -> str:
    """The LaTeX source of the requested tables (all three by default)."""
    unknown = set(parts) - set(TABLE_PARTS)
    if unknown:
        raise ValueError(f"unknown table part(s) {sorted(unknown)}; known: {TABLE_PARTS}")
    return tex_environment().get_template(TEX_TEMPLATE).render(
        title=title,
        parts=list(parts),
        main=tex_main_view(analysis, with_ci),
        categories=tex_category_views(analysis, stem, with_ci),
        latency=tex_latency_view(analysis, with_ci),
        agreement=tex_agreement_view(analysis),
        empty_answers=count_view(analysis, EMPTY_ANSWERS),
        quality=quality_legend(analysis),
        with_ci=with_ci,
        alpha=analysis.alpha,
        baseline=BASELINE_DEFENSE,
        main_label=tex_label(stem, "main"),
        latency_label=tex_label(stem, "latency"),
        agreement_label=tex_label(stem, "agreement"),
    )


def write_latex_tables(
    runs: Sequence[RunResult],
    path: Path,
    title: str = "Safety defense evaluation",
    *,
    with_ci: bool = True,
    split: bool = True,
    seed: int = 0,
) -> list[Path]:
    """Write every table to ``path`` (one \\input-able file) and, with ``split``, each table alone to
    ``<stem>-main.tex``, ``<stem>-categories.tex``, ``<stem>-latency.tex`` and, when several judges
    scored the same generations, ``<stem>-agreement.tex`` beside it.

    Returns the written paths, ``path`` first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    analysis = analyse(runs, seed=seed)
    written = [path]
    path.write_text(render_tables(analysis, title, stem, with_ci=with_ci), encoding="utf-8")
    if split:
        has_agreement = bool(analysis.judges.agreements)
        for part in TABLE_PARTS:
            if part == "agreement" and not has_agreement:
                continue
            part_path = path.with_name(f"{stem}-{part}.tex")
            part_path.write_text(render_tables(analysis, title, stem, with_ci=with_ci, parts=[part]), encoding="utf-8")
            written.append(part_path)
    return written
