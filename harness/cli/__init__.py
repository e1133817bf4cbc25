"""Command line: ``harness list|eval|judge|report|compare|calibrate|build``.

Imports are deferred into each command so that ``harness --help`` and ``harness list`` stay instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from harness.models.spec import DEVICE_HELP, DTYPE_HELP

OFFLINE_SUITE = ("figstep-tiny", "xstest", "easyvqa")
DEFAULT_MODEL = "smol-llava"
DEFAULT_DEFENSE = "none"


def parse_limit(text: str) -> int | str | None:
    """'all' -> every sample; '' or 'default' -> each task's documented default; N -> first N."""
    text = text.strip().lower()
    if text in ("", "default"):
        return None
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit takes a whole number, 'all' or 'default', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--limit must be at least 1")
    return value


# Option values are YAML (numbers, booleans, lists) except these, which are always kept as typed: a
# key "0123" must not become the integer 83, nor a model named "no" the boolean False.
RAW_STRING_OPTIONS = frozenset({"api_key", "model", "base_url", "model_id", "revision", "checkpoint"})


def parse_option_value(key: str, value: str) -> Any:
    import yaml

    return value if key in RAW_STRING_OPTIONS else yaml.safe_load(value)


def parse_scoped(pairs: Sequence[str], flag: str, default_scope: str | None) -> dict[str, dict[str, Any]]:
    """``SCOPE:KEY=VALUE`` pairs -> scope -> {key: YAML value}; ``KEY=VALUE`` goes to ``default_scope``
    (an error when it is None, i.e. when the scope is required)."""
    scoped: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        target, sep, value = pair.partition("=")
        scope, colon, key = target.rpartition(":")
        if not sep or not key or (not colon and default_scope is None):
            form = "SCOPE:KEY=VALUE" if default_scope is None else "[SCOPE:]KEY=VALUE"
            raise ValueError(f"{flag} expects {form}, got {pair!r}")
        scoped.setdefault(scope if colon else default_scope, {})[key] = parse_option_value(key, value)  # type: ignore[index]
    return scoped


def parse_params(pairs: Sequence[str], flag: str = "--defense-arg") -> dict[str, Any]:
    """key=value pairs; values are parsed as YAML scalars (numbers, booleans, lists) when possible."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {flag} expects key=value, got {pair!r}")
        params[key] = yaml.safe_load(value)
    return params


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Evaluate inference-time safety defenses of multimodal LLMs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="print registered names, one per line")
    listing.add_argument("kind", choices=["models", "tasks", "defenses", "judges"])

    run = commands.add_parser("eval", help="run a model under a defense on tasks, then write the report")
    run.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name, HF id or local folder (default {DEFAULT_MODEL})")
    run.add_argument("--defense", default=DEFAULT_DEFENSE, help=f"registered defense (default {DEFAULT_DEFENSE})")
    run.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE", help="defense parameter (repeatable)")
    run.add_argument("--tasks", default=",".join(OFFLINE_SUITE), help="comma-separated task names (default: the offline suite)")
    run.add_argument("--limit", type=parse_limit, default=None, help="N, 'all', or 'default' (each task's documented subset)")
    run.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help=DTYPE_HELP)
    run.add_argument("--device", default="auto", help=DEVICE_HELP)
    run.add_argument("--batch-size", type=positive_int, default=None, help="override every task's batch size")
    run.add_argument("--max-new-tokens", type=positive_int, default=None, help="override every task's generation length")
    run.add_argument("--judge", default=None, help="override every task's default judge")
    run.add_argument("--task-arg", action="append", default=[], metavar="TASK:KEY=VALUE",
                     help="loader argument for one task, over its YAML (e.g. siuo:image_root=/data/siuo); repeatable")
    run.add_argument("--judge-arg", action="append", default=[], metavar="[JUDGE:]KEY=VALUE",
                     help="judge factory option, for every judge or one (e.g. gpt-harmless:model=gpt-4o); repeatable")
    run.add_argument("--results-dir", type=Path, default=None)
    run.add_argument("--reports-dir", type=Path, default=None)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    # Commands with their own argument parsers (see DELEGATED); listed here for --help.
    commands.add_parser("judge", help="re-score a stored run with other judges (cached; no model), then re-render reports", add_help=False)
    commands.add_parser("report", help="re-render reports from stored results (--latex PATH for tables only)", add_help=False)
    commands.add_parser("compare", help="regression gate: compare two result sets, exit 1 on a significant regression", add_help=False)
    commands.add_parser("calibrate", help="fit a defense's artifacts (directions, probers, prototypes) for a model", add_help=False)

    build = commands.add_parser("build", help="build an offline model (smol-llava) into the local cache")
    build.add_argument("name", choices=["smol-llava"])
    build.add_argument("--force", action="store_true", help="rebuild even if present")
    return parser


def command_list(kind: str) -> int:
    from harness import registries

    registry = registries.REGISTRIES[kind]()
    width = max((len(entry.name) for entry in registry), default=0)
    for entry in registry:
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        print(f"{entry.name:<{width}}  {entry.help}{aliases}".rstrip())
    return 0


def format_value(row: Any) -> str:
    if row.metric == "empty_answers":  # a count out of the judged answers of one kind
        return f"{row.value:.0f} of {row.n} ({row.subset})"
    interval = f" [{row.ci_low:.1f}, {row.ci_high:.1f}]" if row.ci_low is not None else ""
    return f"{row.value:.1f}{interval} (n={row.n})"


def command_eval(args: argparse.Namespace) -> int:
    from harness.core.registry import UnknownNameError
    from harness.runner import EvalConfig, run_eval

    try:
        task_args = parse_scoped(args.task_arg, "--task-arg", None)
        judge_args = parse_scoped(args.judge_arg, "--judge-arg", "*")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = EvalConfig(
        task_args=task_args,
        judge_args=judge_args,
        model=args.model,
        defense=args.defense,
        defense_params=parse_params(args.defense_arg),
        tasks=[name.strip() for name in args.tasks.split(",") if name.strip()],
        limit=args.limit,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        judge=args.judge,
        results_dir=args.results_dir,
        reports_dir=args.reports_dir,
        progress=not args.no_progress,
    )
    try:
        result = run_eval(config)
    except (UnknownNameError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a Hub id that does not exist, or no network: no traceback for that
        print(f"error: could not load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    info = result.info
    print(f"\nrun {info.run_id}: {info.counts}  model loaded: {'yes' if info.model_loaded else 'no (all cached)'}")
    for row in result.metrics:
        if row.subset in ("all", "harmful", "benign") and row.metric != "undecided":
            print(f"  {row.task:<18} {row.metric:<22} {format_value(row)}")
    for task, error in info.settings.get("task_errors", {}).items():
        print(f"  {task:<18} NOT RUN: {error}")
    return 1 if info.settings.get("task_errors") else 0


def command_build(args: argparse.Namespace) -> int:
    from harness.models.smol_llava import build_smol_llava

    print(build_smol_llava(force=args.force))
    return 0


# command -> lazy "module:function" taking the remaining argv and returning an exit code
DELEGATED = {
    "judge": "harness.rejudge:judge_main",
    "report": "harness.report:report_main",
    "compare": "harness.compare:compare_main",
    "calibrate": "harness.defense_api.calibration:calibrate_main",
}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The global -v/--verbose may precede any command, delegated ones included.
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose, argv = True, argv[1:]
    if argv and argv[0] in DELEGATED:
        from harness.core.registry import import_target

        setup_logging(verbose)
        return int(import_target(DELEGATED[argv[0]])(argv[1:]))
    args = build_parser().parse_args(argv)
    setup_logging(verbose or args.verbose)
    if args.command == "list":
        return command_list(args.kind)
    if args.command == "eval":
        return command_eval(args)
    if args.command == "build":
        return command_build(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse only admits the ones above


if __name__ == "__main__":
    sys.exit(main())
