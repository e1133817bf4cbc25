"""One evaluation: a model under one defense on some tasks, composed of the pipeline's stages.

  bring-up (spec, defense, calibration, fingerprints) -> plan (samples, requests, keys)
  -> generate (cached; the model loads only for misses) -> judge (cached) -> score -> store -> report

Each stage reads the previous stage's output, and the stored run lets judging, scoring and reports be
re-run without the model (``harness judge``, ``harness report``).

Launched over several processes (``accelerate launch -m harness eval``), generation is shared out
between them and rank 0 does the rest: :mod:`harness.pipeline.distributed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.cache import GenerationCache
from harness.core import paths
from harness.core.store import RUN_FORMAT_VERSION, RunInfo, RunResult, RunSettings, save_run
from harness.pipeline.bringup import BringUp
from harness.pipeline.config import RunConfig
from harness.pipeline.distributed import Distributed, ParallelOptions, launched_world_size
from harness.pipeline.generate import CachedGenerator, GenerationResult, ShardedGenerator
from harness.pipeline.judge import build_judges, judge_per_task, judge_tasks
from harness.pipeline.plan import ALL, TaskPlan, effective_settings, plan_tasks, resolve_tasks
from harness.pipeline.record import make_run_id, now_utc, provenance
from harness.pipeline.report import write_reports
from harness.pipeline.score import metric_rows

__all__ = ["ALL", "EvalConfig", "ParallelOptions", "run_config", "run_eval"]

log = logging.getLogger("harness.pipeline.evaluate")


@dataclass
class EvalConfig:
    """One evaluation: a model under one defense on some tasks.

    ``limit``: None uses each task's documented default subset; ``"all"`` runs every sample; an int N
    takes the first N samples of the task's seeded, stratified order.
    """

    model: str
    tasks: list[str]
    defense: str = "none"
    defense_params: dict[str, Any] = field(default_factory=dict)
    limit: int | str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int | None = None  # overrides every task's generation.batch_size
    max_new_tokens: int | None = None  # overrides every task's generation.max_new_tokens
    judge: str | None = None  # overrides every task's default judge
    # Loader arguments merged over a task's YAML ``loader_args`` (e.g. a local image folder), by task.
    task_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Judge factory options by judge name; "*" applies to every judge. Values may be secrets (an API
    # key): only the option names are stored with the run.
    judge_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-task limits over ``limit`` (a run config's ``tasks: [{name, limit}]``), by task name or alias.
    task_limits: dict[str, int | str] = field(default_factory=dict)
    results_dir: Path | None = None
    reports_dir: Path | None = None
    run_id: str | None = None
    progress: bool = True
    write_report: bool = True
    run_config: dict[str, Any] = field(default_factory=dict)  # stored as the run's settings.config


@dataclass
class PreparedEval:
    """An evaluation brought up and planned, before any model work: what generation and the later
    stages need."""

    config: EvalConfig
    bringup: BringUp
    plan: TaskPlan
    task_args: dict[str, dict[str, Any]]
    task_limits: dict[str, int | str]
    task_judges: dict[str, str]
    judges: dict[str, Any]
    started: str
    out_root: Path


def prepare_eval(config: EvalConfig, bringup: BringUp | None = None, *, with_judges: bool = True) -> PreparedEval:
    """Bring-up and plan. ``with_judges``: build the judges now (ranks other than 0 never judge)."""
    started, out_root = now_utc(), config.results_dir or paths.results_dir()
    bringup = bringup or BringUp.resolve(config.model, config.defense, config.defense_params, dtype=config.dtype, device=config.device)
    specs, task_args = resolve_tasks(config.tasks, config.task_args)
    task_limits = resolve_task_limits(config.task_limits, specs)
    # Judges are built before any model work, so that a misconfigured one (no endpoint, bad option)
    # fails now rather than after an hour of generation.
    task_judges = judge_per_task(specs, config.judge)
    judges = build_judges(sorted(set(task_judges.values())), config.judge_args) if with_judges else {}
    log.info("model %s (%s), defense %s, tasks %s", bringup.spec.name, bringup.spec.source, bringup.defense_name, config.tasks)
    plan = plan_tasks(specs, task_args, lambda spec: task_limits.get(spec.name, config.limit),
                      lambda spec: effective_settings(spec, config.max_new_tokens, config.batch_size),
                      bringup.model_fingerprint, bringup.defense_fingerprint)
    return PreparedEval(config, bringup, plan, task_args, task_limits, task_judges, judges, started, out_root)


def run_eval(config: EvalConfig, bringup: BringUp | None = None, *, keep_loaded: bool = False) -> RunResult:
    """Evaluate, store the run under ``<results>/runs/<run id>/`` and (by default) render the reports.
    ``bringup``: the model under ``config.defense``, brought up already (several defenses, one model);
    ``keep_loaded`` keeps its weights in memory for the next defense."""
    prepared = prepare_eval(config, bringup)
    with GenerationCache(generation_cache_path(prepared.out_root)) as cache:
        generated = CachedGenerator(cache, prepared.bringup, config.progress).run(prepared.plan)
    if not keep_loaded:
        prepared.bringup.release()  # free the model before judging: a classifier judge (an 8B Llama Guard) loads next
    return finish_eval(prepared, generated)


def finish_eval(prepared: PreparedEval, generated: GenerationResult) -> RunResult:
    """Judge, score and store the run; render the reports when the config asks for them."""
    config, bringup, plan, out_root = prepared.config, prepared.bringup, prepared.plan, prepared.out_root
    judged = judge_tasks(plan, generated.generations, prepared.task_judges, prepared.judges, progress=config.progress)
    run_id = config.run_id or make_run_id(bringup.spec.name, bringup.defense_name, config.tasks)
    settings = RunSettings(
        limit=config.limit, dtype=bringup.dtype, device=bringup.device, task_errors=plan.errors, task_args=prepared.task_args,
        generation={name: items[0].request.settings.to_dict() for name, items in plan.planned.items() if items},
        judge_arg_names={name: sorted(options) for name, options in config.judge_args.items()},
        task_limits=prepared.task_limits, config=config.run_config,
        data_revisions={spec.name: spec.revision for spec in plan.loaded_specs if spec.revision},
    )
    # scored with the token limit the run stores, as `harness judge` re-scores it later
    metrics = [row for spec in plan.loaded_specs for row in metric_rows(
        run_id, bringup.spec.name, bringup.defense_name, spec, plan.samples[spec.name], generated.generations[spec.name],
        judged.verdicts.get(spec.name, {}), judged.judge_names.get(spec.name),
        max_new_tokens=settings.max_new_tokens(spec.name))]

    info = RunInfo(
        run_id=run_id, model=bringup.spec.name, defense=bringup.defense_name,
        tasks={spec.name: spec.version for spec in plan.loaded_specs},
        model_fingerprint=bringup.model_fingerprint, defense_fingerprint=bringup.defense_fingerprint,
        judges=judged.fingerprints, settings=settings, counts=generated.counts, model_loaded=generated.model_loaded,
        started_at=prepared.started, finished_at=now_utc(), provenance=provenance(), judging=judged.judging,
        format_version=RUN_FORMAT_VERSION, parallel=generated.parallel,
    )
    samples = plan.ordered_samples()
    result = RunResult(out_root / "runs" / run_id, info, samples, generated.ordered(samples), judged.all_verdicts(), metrics)
    save_run(result.path, info, result.samples, result.generations, result.judgements, result.metrics)
    log.info("run stored in %s", result.path)
    if config.write_report:
        write_reports(out_root, config.reports_dir or paths.reports_dir(), run_id)
    return result


def generation_cache_path(results_dir: Path) -> Path:
    return results_dir / "cache" / "generations.sqlite"


def rank_cache_dir(results_dir: Path) -> Path:
    """Where ranks write their own cache files (``--cache-per-rank``)."""
    return results_dir / "cache" / "shards"


def resolve_task_limits(task_limits: dict[str, int | str], specs: list[Any]) -> dict[str, int | str]:
    """Per-task limits by canonical name; a limit for a task not being run is an error."""
    from harness import registries

    by_task = {registries.tasks().canonical(name): limit for name, limit in task_limits.items()}
    stray = sorted(set(by_task) - {spec.name for spec in specs})
    if stray:
        raise ValueError(f"a limit names task(s) that are not being run: {', '.join(stray)}")
    return by_task


def run_config(config: RunConfig, *, results_dir: Path | None = None, reports_dir: Path | None = None,
               progress: bool = True, write_report: bool = True, parallel: ParallelOptions | None = None) -> list[RunResult]:
    """One run per defense of ``config``, in order; the model loads at most once (and not at all when
    every generation is cached), and one report compares them.

    Under a multi-process launch (:mod:`harness.pipeline.distributed`) every rank generates its share of
    every defense's misses; then rank 0 alone judges, scores and stores the runs and writes the report,
    and the other ranks return no runs. ``parallel``: timeouts and the per-rank cache option."""
    from harness import registries
    from harness.core.hub import resolve_device

    registries.include_task_folders(config.include_path)
    if launched_world_size() > 1:
        world = Distributed.from_environment(resolve_device(config.device), (parallel or ParallelOptions()).timeout_s)
        if world is not None:
            return _run_config_distributed(config, world, parallel or ParallelOptions(), results_dir=results_dir,
                                           reports_dir=reports_dir, progress=progress, write_report=write_report)
    runs: list[RunResult] = []
    shared: BringUp | None = None  # the latest bring-up whose weights are in memory
    try:
        for choice in config.defenses:
            eval_config = _eval_config(config, choice, results_dir, reports_dir, progress)
            bringup = shared.with_defense(choice.name, choice.args) if shared else None
            bringup = bringup or BringUp.resolve(config.model, choice.name, choice.args, dtype=config.dtype, device=config.device)
            runs.append(run_eval(eval_config, bringup, keep_loaded=True))
            if bringup.loaded:
                shared = bringup
    finally:
        if shared is not None:
            shared.release()
    if write_report and runs:
        write_reports(results_dir or paths.results_dir(), reports_dir or paths.reports_dir(),
                      runs[0].info.run_id if len(runs) == 1 else None)
    return runs


def _eval_config(config: RunConfig, choice: Any, results_dir: Path | None, reports_dir: Path | None,
                 progress: bool) -> EvalConfig:
    return EvalConfig(
        model=config.model, tasks=[task.name for task in config.tasks], defense=choice.name,
        defense_params=choice.args, limit=config.limit, dtype=config.dtype, device=config.device,
        batch_size=config.batch_size, max_new_tokens=config.max_new_tokens, judge=config.judge,
        task_args={task.name: task.args for task in config.tasks if task.args},
        task_limits={task.name: task.limit for task in config.tasks if task.limit is not None},
        judge_args=config.judge_args, results_dir=results_dir, reports_dir=reports_dir,
        progress=progress, write_report=False, run_config=config.to_dict(),
    )


def _run_config_distributed(config: RunConfig, world: Distributed, parallel: ParallelOptions, *,
                            results_dir: Path | None, reports_dir: Path | None, progress: bool,
                            write_report: bool) -> list[RunResult]:
    """Every defense's generation over the ranks first, then (rank 0 only) judging, scoring, storing:
    the other ranks never wait on rank 0's judges, and leave as soon as their last share is sent."""
    out_root = results_dir or paths.results_dir()
    shard_dir = rank_cache_dir(out_root) if parallel.cache_per_rank else None
    generated_runs: list[tuple[PreparedEval, GenerationResult]] = []
    shared: BringUp | None = None
    try:
        with GenerationCache(generation_cache_path(out_root)) as cache:
            if world.is_main:
                merge_rank_files(cache, rank_cache_dir(out_root))  # what ranks killed earlier had finished
            for choice in config.defenses:
                eval_config = _eval_config(config, choice, results_dir, reports_dir, progress)
                bringup = shared.with_defense(choice.name, choice.args) if shared else None
                bringup = bringup or BringUp.resolve(config.model, choice.name, choice.args, dtype=config.dtype, device=config.device)
                prepared = prepare_eval(eval_config, bringup, with_judges=world.is_main)
                generated = ShardedGenerator(cache, bringup, world, progress, shard_dir).run(prepared.plan)
                if bringup.loaded:
                    shared = bringup
                if world.is_main:
                    generated_runs.append((prepared, generated))
            if world.is_main:
                merge_rank_files(cache, rank_cache_dir(out_root))
    finally:
        if shared is not None:
            shared.release()
        world.close()
    runs = [finish_eval(prepared, generated) for prepared, generated in generated_runs]
    if write_report and runs:
        write_reports(out_root, reports_dir or paths.reports_dir(), runs[0].info.run_id if len(runs) == 1 else None)
    return runs


def merge_rank_files(cache: GenerationCache, shard_dir: Path) -> None:
    """Fold every rank cache file under ``shard_dir`` into ``cache`` (idempotent: present keys are kept)."""
    if not shard_dir.is_dir():
        return
    for path in sorted(shard_dir.glob("*.sqlite")):
        counts = cache.merge_from(path)
        if counts.added or counts.differing:
            log.info("merged %s: %d rows added, %d present (%d with another text, kept as they were)",
                     path, counts.added, counts.present, counts.differing)
