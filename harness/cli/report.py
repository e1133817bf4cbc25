"""``harness report``: re-render the report from stored results, or write only the LaTeX tables.

    harness report [--results-dir DIR] [--reports-dir DIR] [--title T] [--no-ci] [--samples-per-task N]
                   [--latex [PATH]]

Without ``--latex``: ``<reports-dir>/latest.html`` and ``latest.tex``, as after ``harness eval``.
With ``--latex PATH``: only LaTeX, ``PATH`` holding every table plus ``<stem>-main.tex``,
``<stem>-categories.tex`` and ``<stem>-latency.tex`` beside it, each ready for ``\\input``
(``--latex`` alone writes ``<reports-dir>/latest-tables.tex``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from harness.cli.errors import EXIT_OK, CommandError

HELP = "re-render reports from stored results (--latex PATH for tables only)"
DEFAULT_LATEX_NAME = "latest-tables.tex"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness report", description="Render reports from stored results.")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="results directory (with runs/) or one run directory (default: the harness results dir)")
    parser.add_argument("--reports-dir", type=Path, default=None, help="where latest.html/.tex go")
    parser.add_argument("--latex", nargs="?", type=Path, const=Path(), default=None, metavar="PATH",
                        help=f"write only the LaTeX tables, to PATH (default <reports-dir>/{DEFAULT_LATEX_NAME})")
    parser.add_argument("--title", default=None, help="report and table caption title")
    parser.add_argument("--no-ci", action="store_true", help="LaTeX cells without the ± interval half-width")
    parser.add_argument("--samples-per-task", type=int, default=None, help="samples shown per task in the HTML browser")
    return parser


def main(argv: Sequence[str]) -> int:
    """Exit 0 after writing (paths printed one per line), 2 on bad input."""
    from harness.core.paths import reports_dir, results_dir
    from harness.report.latex import write_latex_tables
    from harness.report.render import DEFAULT_TITLE, SAMPLES_PER_TASK, render_report
    from harness.report.sources import load_result_set

    args = build_parser().parse_args(list(argv))
    if args.samples_per_task is not None and args.samples_per_task < 0:
        raise CommandError("--samples-per-task must be >= 0")
    runs = load_result_set(args.results_dir or results_dir())
    out_dir = args.reports_dir or reports_dir()
    title = args.title or DEFAULT_TITLE
    if args.latex is not None:
        path = args.latex if str(args.latex) not in ("", ".") else out_dir / DEFAULT_LATEX_NAME
        written = write_latex_tables(runs, path, title, with_ci=not args.no_ci)
    else:
        written = list(render_report(
            runs, out_dir, "latest", title, tex_ci=not args.no_ci,
            samples_per_task=SAMPLES_PER_TASK if args.samples_per_task is None else args.samples_per_task,
        ))
    for path in written:
        print(path)
    return EXIT_OK

