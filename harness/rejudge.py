"""``harness judge``: re-score a stored run's generations with other judges; the model is never loaded.

    harness judge --run RUN --judge NAME[,NAME2...] [--judge-arg [NAME:]KEY=VALUE ...] [--tasks T1,T2]
                  [--primary] [--retry-undecided] [--results-dir DIR] [--reports-dir DIR]
                  [--no-report] [--no-progress]

``RUN`` is a run id (a folder of ``<results-dir>/runs/``), a run folder, or ``latest`` (the newest
run). Each judge scores the stored generations of the run's judged tasks (default: every task with
safety or over-refusal samples, i.e. ``harmful`` set; ``--tasks`` picks others) through the cached
judging stage (``harness.pipeline.judge``). Then, in the run folder:

- ``judgements.jsonl``: that judge's verdicts replace any it gave before; other judges' stay, so
  several judges coexist with one verdict per (judge, sample).
- ``metrics.jsonl`` / ``metrics.csv``: the task's metric rows recomputed for that judge
  (``MetricRow.judge`` names it) replace its old rows. Rows come per task, the task's headline judge
  first, then the others alphabetically. Reports and comparisons show the headline judge's rows only.
- ``run.json``: ``judging[task][judge]`` holds the judge's fingerprint and the stage's counts; the
  headline judge stays the one ``harness eval`` used unless ``--primary`` makes the (single) new judge
  the headline judge, which also replaces ``judges[task]`` (the headline fingerprint).

Then the reports are re-rendered as after ``harness eval`` (``--no-report`` skips it); with several
judges on a task they include a judge-agreement table (Cohen's kappa) and undecided counts per judge.

``--judge-arg KEY=VALUE`` goes to every judge's factory; ``NAME:KEY=VALUE`` only to judge NAME.
Values are parsed as YAML scalars. Exit status: 0 done, 1 done but a judge raised on some items
(recorded as undecided "judge-error" verdicts, not cached: run again to retry), 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from harness.core.judgement_cache import JudgementCache
from harness.pipeline.judge import JudgeStageResult, run_judge_stage
from harness.core.records import Generation, Judgement, MetricRow, Sample
from harness.core.store import RunResult, list_runs, load_run, primary_judge, save_run

log = logging.getLogger("harness.judge")

EXIT_OK, EXIT_JUDGE_ERRORS, EXIT_BAD_INPUT = 0, 1, 2
LATEST = "latest"


class JudgeCommandError(ValueError):
    """Bad input to ``harness judge`` (unknown run, task or judge, malformed argument)."""


# ---------------------------------------------------------------------------------------------------
# inputs


def resolve_run(run: str, results_root: Path) -> Path:
    """The run folder named by ``run``: ``latest``, a folder holding run.json, or a run id under
    ``<results_root>/runs/``."""
    if run == LATEST:
        runs = list_runs(results_root)
        if not runs:
            raise JudgeCommandError(f"no stored run under {results_root / 'runs'}")
        return runs[-1]
    path = Path(run)
    if (path / "run.json").is_file():
        return path
    candidate = results_root / "runs" / run
    if (candidate / "run.json").is_file():
        return candidate
    raise JudgeCommandError(f"no run {run!r}: neither a run folder nor a run id under {results_root / 'runs'}")


def parse_judge_args(pairs: Sequence[str], judges: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` (every judge) or ``NAME:KEY=VALUE`` (judge NAME) -> judge name -> factory options."""
    from harness.cli import parse_scoped

    try:
        scoped = parse_scoped(pairs, "--judge-arg", "*")
    except ValueError as exc:
        raise JudgeCommandError(str(exc)) from None
    stray = sorted(set(scoped) - {"*", *judges})
    if stray:
        raise JudgeCommandError(f"--judge-arg names judge(s) {', '.join(stray)}, which are not in --judge")
    return {name: {**scoped.get("*", {}), **scoped.get(name, {})} for name in judges}


def make_judges(names: Sequence[str], options: dict[str, dict[str, Any]]) -> list[Any]:
    """Instantiate registered judges (factory options from ``parse_judge_args``)."""
    from harness import registries
    from harness.core.registry import UnknownNameError

    judges = []
    for name in names:
        try:
            factory = registries.judges().get(name)
        except UnknownNameError as exc:
            raise JudgeCommandError(str(exc)) from None
        except (ImportError, AttributeError) as exc:
            raise JudgeCommandError(f"judge {name!r} is registered but cannot be loaded here: {exc}") from None
        try:
            judge = factory(**options.get(name, {}))
        except (TypeError, ValueError) as exc:  # an unknown option, a bad value, no endpoint configured
            raise JudgeCommandError(f"judge {name!r}: {exc}") from None
        if all(judge.name != other.name for other in judges):  # an alias named twice judges once
            judges.append(judge)
    return judges


def default_tasks(run: RunResult) -> list[str]:
    """Tasks with safety or over-refusal samples (``harmful`` set): what judges score."""
    return list(dict.fromkeys(s.task for s in run.samples if s.harmful is not None))


def run_task_order(run: RunResult) -> list[str]:
    """The run's tasks in evaluation order (samples.jsonl), then any other task it names."""
    order = list(dict.fromkeys(s.task for s in run.samples))
    return order + [t for t in run.info.tasks if t not in order]


# ---------------------------------------------------------------------------------------------------
# the re-judging


@dataclass
class RejudgeResult:
    run: RunResult  # as stored afterwards
    stages: dict[tuple[str, str], JudgeStageResult] = field(default_factory=dict)  # (task, judge)

    @property
    def errors(self) -> int:
        return sum(stage.errors for stage in self.stages.values())


def rejudge_run(
    run_dir: Path,
    judges: Sequence[Any],
    tasks: Sequence[str] | None = None,
    *,
    primary: bool = False,
    retry_undecided: bool = False,
    progress: bool = False,
    cache_path: Path | None = None,
    limit: int | None = None,
) -> RejudgeResult:
    """Score the stored generations of ``run_dir`` with ``judges`` and store verdicts, metric rows and
    run.json entries (see the module doc). Raises JudgeCommandError for bad input, before any write."""
    from harness import registries
    from harness.core.registry import UnknownNameError
    from harness.runner import judge_entry, metric_rows

    run = load_run(run_dir)
    order = run_task_order(run)
    chosen = list(tasks) if tasks else default_tasks(run)
    if not chosen:
        raise JudgeCommandError(f"run {run.info.run_id} has no task with safety or over-refusal samples; name one with --tasks")
    unknown = [t for t in chosen if t not in order]
    if unknown:
        raise JudgeCommandError(f"run {run.info.run_id} has no task {', '.join(map(repr, unknown))}; it has {', '.join(order)}")
    if primary and len(judges) != 1:
        raise JudgeCommandError("--primary needs exactly one --judge")
    if limit is not None and (limit < 1 or primary):
        raise JudgeCommandError("--limit takes a number >= 1 and cannot be combined with --primary "
                                "(a headline judge must score every sample)")
    specs = {}
    for task in chosen:
        try:
            spec = registries.tasks().get(task)
        except UnknownNameError as exc:
            raise JudgeCommandError(f"{exc} (its metric function is needed to score the run)") from None
        stored_version = run.info.tasks.get(task, spec.version)
        if stored_version.split("+args.")[0] != spec.version:  # "+args." marks --task-arg overrides
            log.warning("task %s is version %s now; the run stored version %s: scoring its stored samples with "
                        "today's metric function", task, spec.version, stored_version)
        specs[task] = replace(spec, version=stored_version)  # rows describe the stored samples

    info = run.info
    # Freeze each task's headline judge before adding rows (older runs record it only implicitly).
    for task in chosen:
        current = primary_judge(run, task)
        if current is not None and task not in info.judging:
            info.judging[task] = {current: {"fingerprint": info.judges.get(task, {}), "primary": True}}

    samples = _by_task(run.samples)
    if limit is not None:  # the first N of each task in the run's own (stratified) order
        samples = {task: task_samples[:limit] for task, task_samples in samples.items()}
    generations: dict[str, dict[str, Generation]] = defaultdict(dict)
    for generation in run.generations:
        generations[generation.task][generation.sample_id] = generation

    result = RejudgeResult(run=run)
    new_verdicts: dict[tuple[str, str], list[Judgement]] = {}
    new_rows: dict[tuple[str, str], list[MetricRow]] = {}
    with JudgementCache(cache_path) as cache:
        for task in chosen:
            for judge in judges:
                stage = run_judge_stage(judge, samples.get(task, []), generations[task], cache,
                                        progress=progress, retry_undecided=retry_undecided)
                name, fingerprint = stage.judge, judge.fingerprint()
                result.stages[(task, name)] = stage
                new_verdicts[(task, name)] = list(stage.verdicts.values())
                new_rows[(task, name)] = metric_rows(info.run_id, info.model, info.defense, specs[task],
                                                     samples.get(task, []), generations[task], stage.verdicts, name)
                entries = info.judging.setdefault(task, {})
                was_primary = bool(entries.get(name, {}).get("primary"))
                if primary:
                    for entry in entries.values():
                        entry["primary"] = False
                entries[name] = judge_entry(fingerprint, stage, primary=primary or was_primary)
                if limit is not None:  # its rows cover only these samples: say so in run.json
                    entries[name]["limit"] = limit
                if primary or was_primary:
                    info.judges[task] = fingerprint

    replaced = set(new_verdicts)
    judgements = [j for j in run.judgements if (j.task, j.judge) not in replaced]
    judgements += [j for verdicts in new_verdicts.values() for j in verdicts]
    rows = [r for r in run.metrics if (r.task, r.judge) not in replaced]
    rows += [r for new in new_rows.values() for r in new]
    updated = RunResult(run.path, info, run.samples, run.generations, judgements, rows)
    updated.judgements = _ordered(updated, judgements, order, lambda j: j.judge, _sample_rank(run.samples))
    updated.metrics = _ordered(updated, rows, order, lambda r: r.judge, None)
    save_run(run.path, info, run.samples, run.generations, updated.judgements, updated.metrics)
    result.run = load_run(run.path)
    return result


def _by_task(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.task].append(sample)
    return grouped


def _sample_rank(samples: Sequence[Sample]) -> dict[tuple[str, str], int]:
    return {(s.task, s.id): index for index, s in enumerate(samples)}


def _ordered(run: RunResult, records: list[Any], task_order: list[str], judge_of: Any,
             sample_rank: dict[tuple[str, str], int] | None) -> list[Any]:
    """Records grouped by task (evaluation order), then judge (headline first, then alphabetically),
    then sample order (judgements) or their existing order (metric rows)."""
    task_rank = {task: index for index, task in enumerate(task_order)}
    primaries = {task: primary_judge(run, task) for task in task_order}
    position = {id(record): index for index, record in enumerate(records)}

    def key(record: Any) -> tuple[Any, ...]:
        judge = judge_of(record)
        within = sample_rank.get((record.task, record.sample_id), len(sample_rank)) if sample_rank is not None else 0
        return (task_rank.get(record.task, len(task_rank)), judge != primaries.get(record.task), judge or "",
                within, position[id(record)])

    return sorted(records, key=key)


# ---------------------------------------------------------------------------------------------------
# reports and the command


def rerender_reports(run_dir: Path, reports_root: Path) -> tuple[Path, Path]:
    """As after ``harness eval``: the comparison report over the run's results folder (when the run lives
    in ``<results>/runs/``), else a report of this run alone; a copy named after the run either way."""
    import shutil

    from harness.report import render_report
    from harness.runner import write_reports

    run_dir = Path(run_dir)
    if run_dir.parent.name == "runs":
        return write_reports(run_dir.parent.parent, reports_root, run_dir.name)
    html, tex = render_report([load_run(run_dir)], reports_root, "latest")
    shutil.copyfile(html, reports_root / f"{run_dir.name}.html")
    shutil.copyfile(tex, reports_root / f"{run_dir.name}.tex")
    return html, tex


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


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _summary(result: RejudgeResult) -> list[str]:
    """What the command prints: each new judge's counts and headline rates, then its agreement with
    every other judge of the task."""
    from harness.core.agreement import pairwise_agreement
    from harness.report.formatting import format_number
    from harness.core.store import judge_order

    run = result.run
    lines = [f"run {run.info.run_id} ({run.info.model} / {run.info.defense}): {run.path}"]
    for (task, name), stage in result.stages.items():
        counts = stage.counts()
        lines.append(f"  {task:<18} {name:<22} {counts['verdicts']} verdicts, {counts['cache_hits']} from cache, "
                     f"{counts['undecided']} undecided ({counts['errors']} judge errors)")
        for row in run.metrics:
            if row.task == task and row.judge == name and row.subset == "all" and row.metric != "undecided":
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


def judge_main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when done, 1 when done but a judge raised on some items, 2 on bad input."""
    from harness.core.paths import reports_dir, results_dir

    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0)
    names = _split(args.judge)
    try:
        if not names:
            raise JudgeCommandError("--judge needs at least one judge name")
        run_dir = resolve_run(args.run, args.results_dir or results_dir())
        judges = make_judges(names, parse_judge_args(args.judge_arg, names))
        result = rejudge_run(run_dir, judges, _split(args.tasks) or None, primary=args.primary,
                             retry_undecided=args.retry_undecided, progress=not args.no_progress,
                             limit=args.limit)
    except JudgeCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(_summary(result)))
    if not args.no_report:
        html, tex = rerender_reports(run_dir, args.reports_dir or reports_dir())
        print(f"report: {html} {tex}")
    if result.errors:
        print(f"{result.errors} item(s) could not be judged (judge errors, not cached); run again to retry",
              file=sys.stderr)
        return EXIT_JUDGE_ERRORS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(judge_main())
