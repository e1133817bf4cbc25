"""Re-judging (``harness judge``): re-score a stored run's generations with other judges; the model is never loaded.

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
  The rows include substantive ASR and the answer-quality flag counts (``harness.core.quality``),
  computed from the stored samples and answers with the run's stored ``max_new_tokens``: re-judging a
  run stored before they existed with its own headline judge (verdicts come from the cache) adds them.
- ``run.json``: ``judging[task][judge]`` holds the judge's fingerprint and the stage's counts; the
  headline judge stays the one ``harness eval`` used unless ``--primary`` makes the (single) new judge
  the headline judge, which also replaces ``judges[task]`` (the headline fingerprint).

Then the reports are re-rendered as after ``harness eval`` (``--no-report`` skips it); with several
judges on a task they include a judge-agreement table (Cohen's kappa) and undecided counts per judge.

Judges are built by the same rule as in ``harness eval`` (:func:`harness.pipeline.judge.build_judges`):
``--judge-arg KEY=VALUE`` goes to every judge whose factory takes KEY; ``NAME:KEY=VALUE`` only to
judge NAME; an option no registered judge takes is an error. The command itself is
:mod:`harness.cli.judge`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from harness.core.judgement_cache import JudgementCache
from harness.pipeline.judge import JudgeStageResult, run_judge_stage
from harness.core.records import Generation, Judgement, MetricRow, Sample, TaskSpec
from harness.core.store import RunResult, list_runs, load_run, primary_judge, save_run

log = logging.getLogger("harness.judge")

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


def make_judges(names: Sequence[str], options: dict[str, dict[str, Any]]) -> list[Any]:
    """Registered judges built by the same rule as ``harness eval`` (:func:`harness.pipeline.judge.build_judges`);
    ``options`` maps a judge (or "*", every judge that takes the option) to factory options."""
    from harness.core.registry import UnknownNameError
    from harness.pipeline.judge import build_judges

    try:
        return list(build_judges(names, options).values())
    except (UnknownNameError, ValueError) as exc:
        raise JudgeCommandError(str(exc)) from None


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
    from harness.pipeline.judge import judge_entry
    from harness.pipeline.score import metric_rows

    run = load_run(run_dir)
    chosen = chosen_tasks(run, tasks, judges, primary, limit)
    specs = {task: stored_task_spec(run, task) for task in chosen}
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
                                                     samples.get(task, []), generations[task], stage.verdicts, name,
                                                     max_new_tokens=info.settings.max_new_tokens(task))
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
    store_rejudged(run, new_verdicts, new_rows)
    result.run = load_run(run.path)
    return result


def chosen_tasks(run: RunResult, tasks: Sequence[str] | None, judges: Sequence[Any], primary: bool,
                 limit: int | None) -> list[str]:
    """The run's tasks to judge (default: those with safety or over-refusal samples), with the
    command's options checked against them."""
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
    return chosen


def stored_task_spec(run: RunResult, task: str) -> TaskSpec:
    """Today's spec of ``task`` (for its metric function), versioned as the run stored it: the rows
    describe the stored samples."""
    from harness import registries
    from harness.core.registry import UnknownNameError
    from harness.pipeline.plan import with_revision_version

    try:
        spec = registries.tasks().get(task)
    except UnknownNameError as exc:
        raise JudgeCommandError(f"{exc} (its metric function is needed to score the run)") from None
    stored_version = run.info.tasks.get(task, spec.version)
    if stored_version.split("+args.")[0] != with_revision_version(spec).version:  # "+args.": --task-arg overrides
        log.warning("task %s is version %s now; the run stored version %s: scoring its stored samples with "
                    "today's metric function", task, spec.version, stored_version)
    return replace(spec, version=stored_version)


def store_rejudged(run: RunResult, new_verdicts: dict[tuple[str, str], list[Judgement]],
                   new_rows: dict[tuple[str, str], list[MetricRow]]) -> None:
    """Replace each (task, judge)'s verdicts and rows with the new ones and save the run, in order."""
    order = run_task_order(run)
    replaced = set(new_verdicts)
    judgements = [j for j in run.judgements if (j.task, j.judge) not in replaced]
    judgements += [j for verdicts in new_verdicts.values() for j in verdicts]
    rows = [r for r in run.metrics if (r.task, r.judge) not in replaced]
    rows += [r for new in new_rows.values() for r in new]
    updated = RunResult(run.path, run.info, run.samples, run.generations, judgements, rows)
    updated.judgements = _ordered(updated, judgements, order, lambda j: j.judge, _sample_rank(run.samples))
    updated.metrics = _ordered(updated, rows, order, lambda r: r.judge, None)
    save_run(run.path, run.info, run.samples, run.generations, updated.judgements, updated.metrics)


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
