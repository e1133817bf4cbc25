"""``harness judge``: re-score a stored run's generations with other judges; the model is never loaded.

See :mod:`harness.pipeline.rejudge` for what is stored. Exit status: 0 done, 1 done but a judge raised
on some items (recorded as undecided "judge-error" verdicts, not cached: run again to retry), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.cli.errors import EXIT_FLAGGED, EXIT_OK
from harness.cli.options import parse_scoped, split_names
from harness.pipeline.rejudge import LATEST

if TYPE_CHECKING:
    from harness.pipeline.rejudge import RejudgeResult

HELP = "re-score a stored run with other judges (cached; no model), then re-render reports"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness judge",
        description="Re-score a stored run's generations with other judges (cached); the model is not loaded.",
    )
    parser.add_argument("--run", default=LATEST, help="run id, run folder, or 'latest' (default)")
    parser.add_argument("--judge", required=True, help="registered judge name(s), comma-separated")
    parser.add_argument("--judge-arg", action="append", default=[], metavar="[JUDGE:]KEY=VALUE",
                        help="judge factory option (repeatable); JUDGE: limits it to one judge")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated tasks of the run (default: those with safety or over-refusal samples)")
    parser.add_argument("--primary", action="store_true",
                        help="make the (single) judge the headline judge of the tasks it scores")
    parser.add_argument("--retry-undecided", action="store_true",
                        help="ask the judge again where the cache holds an undecided verdict")
    parser.add_argument("--results-dir", type=Path, default=None, help="where runs/ live (default: the harness results dir)")
    parser.add_argument("--reports-dir", type=Path, default=None, help="where latest.html/.tex go")
    parser.add_argument("--limit", type=int, default=None,
                        help="judge only the first N samples of each task (run order), e.g. to try a paid judge")
    parser.add_argument("--no-report", action="store_true", help="do not re-render the reports")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def summary(result: "RejudgeResult") -> list[str]:
    """What the command prints: each new judge's counts and headline rates, then its agreement with
    every other judge of the task."""
    from harness.core.agreement import pairwise_agreement
    from harness.core.metrics import UNDECIDED
    from harness.report.formatting import format_number
    from harness.core.store import judge_order

    run = result.run
    lines = [f"run {run.info.run_id} ({run.info.model} / {run.info.defense}): {run.path}"]
    for (task, name), stage in result.stages.items():
        counts = stage.counts()
        lines.append(f"  {task:<18} {name:<22} {counts['verdicts']} verdicts, {counts['cache_hits']} from cache, "
                     f"{counts['undecided']} undecided ({counts['errors']} judge errors)")
        for row in run.metrics:
            if row.task == task and row.judge == name and row.subset == "all" and row.metric != UNDECIDED.name:
                interval = f" [{format_number(row.ci_low)}, {format_number(row.ci_high)}]" if row.ci_low is not None else ""
                lines.append(f"  {'':<18} {'':<22} {row.metric} {format_number(row.value)}{interval} (n={row.n})")
    new_judges: dict[str, set[str]] = defaultdict(set)
    for task, name in result.stages:
        new_judges[task].add(name)
    for task, names in new_judges.items():
        judgements = [j for j in run.judgements if j.task == task]
        for pair in pairwise_agreement(run.samples, judgements, judge_order(run, task)):
            if names & {pair.first, pair.second}:
                lines.append(f"  {task:<18} agreement {pair.first} vs {pair.second} ({pair.subset}): "
                             f"{format_number(pair.percent)} %, kappa {format_number(pair.kappa, 3)} (n={pair.n})")
    return lines


def main(argv: Sequence[str]) -> int:
    """Exit 0 when done, 1 when done but a judge raised on some items, 2 on bad input."""
    from harness.core.paths import reports_dir, results_dir
    from harness.pipeline.rejudge import JudgeCommandError, make_judges, rejudge_run, resolve_run
    from harness.pipeline.report import rerender_reports

    args = build_parser().parse_args(list(argv))
    names = split_names(args.judge)
    if not names:
        raise JudgeCommandError("--judge needs at least one judge name")
    run_dir = resolve_run(args.run, args.results_dir or results_dir())
    judges = make_judges(names, parse_scoped(args.judge_arg, "--judge-arg", "*"))
    result = rejudge_run(run_dir, judges, split_names(args.tasks) or None, primary=args.primary,
                         retry_undecided=args.retry_undecided, progress=not args.no_progress, limit=args.limit)
    print("\n".join(summary(result)))
    if not args.no_report:
        html, tex = rerender_reports(run_dir, args.reports_dir or reports_dir())
        print(f"report: {html} {tex}")
    if result.errors:
        print(f"{result.errors} item(s) could not be judged (judge errors, not cached); run again to retry",
              file=sys.stderr)
        return EXIT_FLAGGED
    return EXIT_OK

