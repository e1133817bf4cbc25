"""``harness eval``: run a model under a defense on tasks, store the run, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.cli.errors import CommandError
from harness.cli.options import (
    DEFAULT_DEFENSE,
    DEFAULT_MODEL,
    DTYPES,
    parse_limit,
    parse_scoped,
    positive_int,
    split_names,
)
from harness.models.spec import DEVICE_HELP, DTYPE_HELP

if TYPE_CHECKING:
    from harness.pipeline.config import RunConfig

HELP = "run a model under a defense on tasks, then write the report"
# Rows printed after a run: the headline subsets (the report has the rest).
SHOWN_SUBSETS = ("all", "harmful", "benign")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness eval", description=HELP)
    # Defaults are None so that a flag given on the command line can be told from one left out: given
    # flags override --config's values; left-out ones keep them (or the defaults below).
    parser.add_argument("--config", type=Path, default=None, metavar="run.yaml",
                        help="run config (model, defenses, tasks with limits and arguments, generation, judges); flags override it")
    parser.add_argument("--model", default=None, help=f"registered name, HF id or local folder (default {DEFAULT_MODEL})")
    parser.add_argument("--defense", default=None,
                        help=f"registered defense, or several comma-separated: the model loads once, one run each (default {DEFAULT_DEFENSE})")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="[DEFENSE:]KEY=VALUE",
                        help="defense parameter (repeatable); with several defenses, name the defense: ras:gamma=0.5")
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: the offline suite)")
    parser.add_argument("--limit", type=parse_limit, default=None, help="N, 'all', or 'default' (each task's documented subset)")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    parser.add_argument("--batch-size", type=positive_int, default=None, help="override every task's batch size")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None, help="override every task's generation length")
    parser.add_argument("--judge", default=None, help="override every task's default judge")
    parser.add_argument("--task-arg", action="append", default=[], metavar="TASK:KEY=VALUE",
                        help="loader argument for one task, over its YAML (e.g. siuo:image_root=/data/siuo); repeatable")
    parser.add_argument("--judge-arg", action="append", default=[], metavar="[JUDGE:]KEY=VALUE",
                        help="judge factory option, for every judge or one (e.g. gpt-harmless:model=gpt-4o); repeatable")
    parser.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="a folder of extra task YAML files (and their loader modules); repeatable")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--reports-dir", type=Path, default=None)
    parser.add_argument("--lm-eval-output", type=Path, default=None, metavar="DIR",
                        help="also write the run in lm-eval's layout under DIR/<model>/ (as `harness export --format lm-eval`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    multi = parser.add_argument_group("several processes (accelerate launch / torchrun; ignored by one process)")
    multi.add_argument("--cache-per-rank", action="store_true",
                       help="each rank writes its own cache file under results/cache/shards/ (nodes without a shared "
                            "filesystem); rank 0 merges the files it can reach")
    multi.add_argument("--dist-timeout", type=positive_int, default=None, metavar="SECONDS",
                       help="how long a rank waits for the others at a collective step (default: $HARNESS_DIST_TIMEOUT_S or 1800)")
    return parser


def resolve_config(args: argparse.Namespace) -> "RunConfig":
    """The run config: --config's file (or the defaults), with the flags given on the command line over it."""
    from harness import registries
    from harness.pipeline.config import ConfigError, DefenseChoice, RunConfig, TaskChoice

    config = RunConfig.from_file(args.config) if args.config else RunConfig()
    config.include_path += [str(folder) for folder in args.include_path]
    if config.include_path:  # before task names are matched below
        registries.include_task_folders(config.include_path)
    for name in ("model", "limit", "dtype", "device", "batch_size", "max_new_tokens", "judge"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.tasks is not None:
        keep = {task.name: task for task in config.tasks}  # a task named again keeps its file settings
        config.tasks = [keep.get(name, TaskChoice(name)) for name in split_names(args.tasks)]
    for task, options in parse_scoped(args.task_arg, "--task-arg", None).items():
        _named(config.tasks, task, registries.tasks(), "--task-arg").args.update(options)
    if args.defense is not None:
        keep = {choice.name: choice for choice in config.defenses}
        config.defenses = [keep.get(name, DefenseChoice(name)) for name in split_names(args.defense)]
    defense_args = parse_scoped(args.defense_arg, "--defense-arg", "*")
    shared = defense_args.pop("*", {})
    if shared and len(config.defenses) > 1:
        raise ConfigError("--defense-arg KEY=VALUE is ambiguous with several defenses: write DEFENSE:KEY=VALUE")
    for choice in config.defenses:
        choice.args.update(shared)
    for defense, options in defense_args.items():
        _named(config.defenses, defense, registries.defenses(), "--defense-arg").args.update(options)
    for scope, options in parse_scoped(args.judge_arg, "--judge-arg", "*").items():
        config.judge_args.setdefault(scope, {}).update(options)
    return config


def format_value(row: Any) -> str:
    from harness.core.metrics import COUNT, row_metric_info

    if row_metric_info(row).kind == COUNT:  # a count out of the judged answers of one kind
        return f"{row.value:.0f} of {row.n} ({row.subset})"
    interval = f" [{row.ci_low:.1f}, {row.ci_high:.1f}]" if row.ci_low is not None else ""
    return f"{row.value:.1f}{interval} (n={row.n})"


def _named(choices: list[Any], name: str, registry: Any, flag: str) -> Any:
    """The entry of ``choices`` that ``name`` (or an alias of it) names; an error if none is run."""
    from harness.pipeline.config import ConfigError

    wanted = registry.canonical(name)
    for choice in choices:
        if registry.canonical(choice.name) == wanted:
            return choice
    raise ConfigError(f"{flag} names {name!r}, which is not being run ({', '.join(choice.name for choice in choices)})")


def main(argv: Sequence[str]) -> int:
    from harness.core.metrics import UNDECIDED
    from harness.pipeline.evaluate import ParallelOptions, run_config

    args = build_parser().parse_args(list(argv))
    if args.lm_eval_output is not None and args.lm_eval_output.exists() and not args.lm_eval_output.is_dir():
        raise CommandError(f"--lm-eval-output {args.lm_eval_output} exists and is not a folder")  # before the run, not after
    config = resolve_config(args)
    parallel = ParallelOptions(cache_per_rank=args.cache_per_rank)
    if args.dist_timeout is not None:
        parallel.timeout_s = float(args.dist_timeout)
    try:
        runs = run_config(config, results_dir=args.results_dir, reports_dir=args.reports_dir, progress=not args.no_progress,
                          parallel=parallel)
    except OSError as exc:  # a Hub id that does not exist, no network, unreadable weights
        raise OSError(f"could not load model {config.model!r}: {exc}") from exc
    failed = False
    for result in runs:
        info = result.info
        print(f"\nrun {info.run_id} ({info.defense}): {info.counts}  model loaded: {'yes' if info.model_loaded else 'no (all cached)'}")
        if info.parallel:
            shares = ", ".join(f"rank {shard['rank']}: {shard['requests']}" for shard in info.parallel["shards"])
            print(f"  generated over {info.parallel['world_size']} processes ({shares})")
        for row in result.metrics:
            if row.subset in SHOWN_SUBSETS and row.metric != UNDECIDED.name:
                print(f"  {row.task:<18} {row.metric:<22} {format_value(row)}")
        for task, error in info.settings.task_errors.items():
            print(f"  {task:<18} NOT RUN: {error}")
        failed = failed or bool(info.settings.task_errors)
        if args.lm_eval_output is not None:
            from harness.pipeline.export import export_lmeval

            written = export_lmeval(result.path, args.lm_eval_output)
            print(f"lm-eval files: {written.folder} ({len(written.paths())} files)")
    return 1 if failed else 0
