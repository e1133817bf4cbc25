"""``harness eval``: run a model under a defense on tasks, store the run, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from harness.cli.errors import CommandError
from harness.cli.options import (
    DEFAULT_DEFENSE,
    DEFAULT_MODEL,
    OFFLINE_SUITE,
    add_model_options,
    parse_limit,
    parse_params,
    parse_scoped,
    positive_int,
    split_names,
)

HELP = "run a model under a defense on tasks, then write the report"
# Rows printed after a run: the headline subsets (the report has the rest).
SHOWN_SUBSETS = ("all", "harmful", "benign")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness eval", description=HELP)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name, HF id or local folder (default {DEFAULT_MODEL})")
    parser.add_argument("--defense", default=DEFAULT_DEFENSE, help=f"registered defense (default {DEFAULT_DEFENSE})")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE", help="defense parameter (repeatable)")
    parser.add_argument("--tasks", default=",".join(OFFLINE_SUITE), help="comma-separated task names (default: the offline suite)")
    parser.add_argument("--limit", type=parse_limit, default=None, help="N, 'all', or 'default' (each task's documented subset)")
    add_model_options(parser)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="override every task's batch size")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None, help="override every task's generation length")
    parser.add_argument("--judge", default=None, help="override every task's default judge")
    parser.add_argument("--task-arg", action="append", default=[], metavar="TASK:KEY=VALUE",
                        help="loader argument for one task, over its YAML (e.g. siuo:image_root=/data/siuo); repeatable")
    parser.add_argument("--judge-arg", action="append", default=[], metavar="[JUDGE:]KEY=VALUE",
                        help="judge factory option, for every judge or one (e.g. gpt-harmless:model=gpt-4o); repeatable")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--reports-dir", type=Path, default=None)
    parser.add_argument("--lm-eval-output", type=Path, default=None, metavar="DIR",
                        help="also write the run in lm-eval's layout under DIR/<model>/ (as `harness export --format lm-eval`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def format_value(row: Any) -> str:
    from harness.core.metrics import COUNT, row_metric_info

    if row_metric_info(row).kind == COUNT:  # a count out of the judged answers of one kind
        return f"{row.value:.0f} of {row.n} ({row.subset})"
    interval = f" [{row.ci_low:.1f}, {row.ci_high:.1f}]" if row.ci_low is not None else ""
    return f"{row.value:.1f}{interval} (n={row.n})"


def main(argv: Sequence[str]) -> int:
    from harness.core.metrics import UNDECIDED
    from harness.pipeline.evaluate import EvalConfig, run_eval

    args = build_parser().parse_args(list(argv))
    if args.lm_eval_output is not None and args.lm_eval_output.exists() and not args.lm_eval_output.is_dir():
        raise CommandError(f"--lm-eval-output {args.lm_eval_output} exists and is not a folder")  # before the run, not after
    config = EvalConfig(
        model=args.model,
        defense=args.defense,
        defense_params=parse_params(args.defense_arg),
        tasks=split_names(args.tasks),
        limit=args.limit,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        judge=args.judge,
        task_args=parse_scoped(args.task_arg, "--task-arg", None),
        judge_args=parse_scoped(args.judge_arg, "--judge-arg", "*"),
        results_dir=args.results_dir,
        reports_dir=args.reports_dir,
        progress=not args.no_progress,
    )
    try:
        result = run_eval(config)
    except OSError as exc:  # a Hub id that does not exist, no network, unreadable weights
        raise OSError(f"could not load model {args.model!r}: {exc}") from exc
    info = result.info
    print(f"\nrun {info.run_id}: {info.counts}  model loaded: {'yes' if info.model_loaded else 'no (all cached)'}")
    for row in result.metrics:
        if row.subset in SHOWN_SUBSETS and row.metric != UNDECIDED.name:
            print(f"  {row.task:<18} {row.metric:<22} {format_value(row)}")
    for task, error in info.settings.task_errors.items():
        print(f"  {task:<18} NOT RUN: {error}")
    if args.lm_eval_output is not None:
        from harness.pipeline.export import export_lmeval

        written = export_lmeval(result.path, args.lm_eval_output)
        print(f"lm-eval files: {written.folder} ({len(written.paths())} files)")
    return 1 if info.settings.task_errors else 0
