"""The runner: (model x defense x tasks) -> stored run + report.

Stages, each from the previous stage's output:
  TaskSpec --loader--> Sample --build_requests--> Request --defense+model (cached)--> Generation
  --judge (cached, harness.pipeline.judge)--> Judgement --metric--> MetricRow --render--> report

Judging is a stage of its own over the generations: ``harness judge`` (harness.rejudge) re-runs it
on a stored run with other judges, without the model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import platform
import random
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness import __version__
from harness import registries
from harness.core.cache import GenerationCache, generation_key
from harness.core.images import BadImageError, check_image
from harness.core.judgement_cache import JudgementCache, judgement_cache_path
from harness.pipeline.judge import JudgeStageResult, run_judge_stage
from harness.core.paths import PROJECT_ROOT, reports_dir, results_dir
from harness.core.records import (
    Generation,
    GenerationSettings,
    Judgement,
    MetricRow,
    Request,
    Sample,
    TaskSpec,
)
from harness.core.registry import import_target
from harness.core.store import RunInfo, RunResult, latest_runs, save_run

log = logging.getLogger("harness.runner")

ALL = "all"


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
    results_dir: Path | None = None
    reports_dir: Path | None = None
    run_id: str | None = None
    progress: bool = True
    write_report: bool = True


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- samples


def stratified_order(samples: Sequence[Sample], seed: int, stratify_by: str | None) -> list[Sample]:
    """A seeded order in which every prefix is balanced across strata (round-robin over shuffled strata).

    The unit of shuffling is a scoring group (``Sample.group``: an MME image pair, an MMBench circular
    group) or else a single sample; a group's members stay adjacent and in loader order. Without
    ``stratify_by`` the loader's order is kept, so ``--limit N`` means "the first N items".
    """
    if not stratify_by:
        return list(samples)
    units: dict[str, list[Sample]] = {}
    for sample in samples:
        units.setdefault(sample.group if sample.group is not None else f"id:{sample.id}", []).append(sample)
    strata: dict[str, list[list[Sample]]] = defaultdict(list)
    for members in units.values():
        strata[str(getattr(members[0], stratify_by))].append(members)
    rng = random.Random(seed)
    queues = []
    for name in sorted(strata):
        members = strata[name][:]
        rng.shuffle(members)
        queues.append(members)
    ordered: list[Sample] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.extend(queue.pop(0))
    return ordered


def select_samples(spec: TaskSpec, samples: Sequence[Sample], limit: int | str | None) -> list[Sample]:
    ordered = stratified_order(samples, spec.seed, spec.stratify_by)
    if limit is None:
        limit = spec.default_limit
    if limit is None or limit == ALL:
        return ordered
    chosen = ordered[: int(limit)]
    # Items scored together (an MME image pair, an MMBench circular group) are never split: the
    # group cut by the limit is completed.
    cut_groups = {s.group for s in chosen if s.group is not None}
    return chosen + [s for s in ordered[int(limit) :] if s.group is not None and s.group in cut_groups]


def with_task_args_version(spec: TaskSpec, task_args: dict[str, Any] | None) -> TaskSpec:
    """The spec whose version also names its ``--task-arg`` overrides (``1+args.<sha8>``).

    A loader argument may change what is evaluated (an MM-SafetyBench variant, a scenario list), so
    runs with different arguments must not be paired or gated against each other as if they were
    the same task version; the version string does that everywhere downstream (cache key, metric rows,
    reports, ``harness compare``)."""
    if not task_args:
        return spec
    digest = hashlib.sha256(json.dumps(task_args, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:8]
    return dataclasses.replace(spec, version=f"{spec.version}+args.{digest}")


def release_accelerator_memory(device: str) -> None:
    """Return cached CUDA blocks to the driver once the model is gone (nothing to do on a CPU)."""
    if device.startswith("cuda"):  # run_eval resolves "auto" before this
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def judge_per_task(specs: Sequence[TaskSpec], override: str | None) -> dict[str, str]:
    """Task -> canonical judge name. ``--judge`` replaces the default judge of judged tasks only: a
    utility task (``judge: null``) is scored against its answers and never sent to a judge."""
    from harness import registries

    chosen = {}
    for spec in specs:
        if spec.judge is not None:
            chosen[spec.name] = registries.judges().canonical(override or spec.judge)
    return chosen


def build_judges(names: Sequence[str], judge_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Instantiate judges with their ``--judge-arg`` options.

    Scoped options (``JUDGE:KEY=VALUE``) may use an alias and must name a judge of this run; unscoped
    ones go to every judge whose factory takes that option (keyword judges take none)."""
    import inspect

    from harness import registries

    scoped: dict[str, dict[str, Any]] = {}
    for scope, options in judge_args.items():
        if scope == "*":
            continue
        name = registries.judges().canonical(scope)
        if name not in names:
            raise ValueError(f"--judge-arg names judge {scope!r}, which judges no task of this run "
                             f"(judges: {', '.join(names) or 'none'})")
        scoped.setdefault(name, {}).update(options)
    judges = {}
    unscoped = judge_args.get("*", {})
    taken: set[str] = set()
    accepted: dict[str, list[str]] = {}
    for name in names:
        factory = registries.judges().get(name)
        parameters = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        accepted[name] = ["any"] if takes_any else sorted(parameters)
        shared = {key: value for key, value in unscoped.items() if takes_any or key in parameters}
        taken |= set(shared)
        try:
            judges[name] = factory(**{**shared, **scoped.get(name, {})})
        except TypeError as exc:  # an option this judge does not take
            raise ValueError(f"judge {name}: {exc}") from None
    unused = sorted(set(unscoped) - taken)
    if unused:
        # An option some other judge takes is only unused here (a shared JUDGE_ARGS, say); one that no
        # registered judge takes is a typo (``modle=``) and must not silently fall back to the defaults.
        anywhere = {key for entry in registries.judges() for key in inspect.signature(entry.load()).parameters}
        typos = [key for key in unused if key not in anywhere]
        if typos:
            options = "; ".join(f"{name}: {', '.join(keys) or 'none'}" for name, keys in accepted.items())
            raise ValueError(f"--judge-arg {', '.join(typos)}: no judge takes this option "
                             f"(this run's judges take: {options})")
        log.warning("--judge-arg %s: taken by no judge of this run (judges: %s)", ", ".join(unused), ", ".join(names))
    return judges


def check_loader_args(spec: TaskSpec, overrides: dict[str, Any]) -> None:
    """Fail fast on a ``--task-arg`` key the task's loader does not take, with close matches."""
    import difflib
    import inspect

    parameters = inspect.signature(import_target(spec.loader)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [name for name in parameters if name != "task_name"]
    for key in overrides:
        if key not in parameters:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"--task-arg {spec.name}:{key}: the task's loader has no argument {key!r}{hint} "
                             f"(known: {', '.join(known)})")


def load_samples(spec: TaskSpec, overrides: dict[str, Any] | None = None) -> list[Sample]:
    """The task's samples; ``overrides`` (``--task-arg``) are merged over the YAML ``loader_args``."""
    loader: Callable[..., list[Sample]] = import_target(spec.loader)
    samples = loader(spec.name, **{**spec.loader_args, **(overrides or {})})
    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task {spec.name!r}: loader returned duplicate sample ids")
    return samples


# --------------------------------------------------------------------------- requests


@dataclass
class Planned:
    """A sample with its request, or the input error that stops it before the model."""

    sample: Sample
    request: Request
    error: str | None = None


def build_requests(
    spec: TaskSpec,
    samples: Sequence[Sample],
    settings: GenerationSettings,
    model_fingerprint: dict[str, Any],
    defense_fingerprint: dict[str, Any],
) -> list[Planned]:
    planned = []
    for sample in samples:
        error, image_sha = None, None
        if sample.image is not None:
            try:
                image_sha = check_image(sample.image)
            except BadImageError as exc:
                error = str(exc)
                if sample.meta.get("image_error"):  # the loader knows why (e.g. an absent TYPO image)
                    error = f"{error} ({sample.meta['image_error']})"
        request = Request(
            task=spec.name,
            sample_id=sample.id,
            prompt=sample.prompt,
            image=sample.image,
            image_sha256=image_sha,
            system=None,
            settings=settings,
        )
        request.key = request_key(request, spec.version, model_fingerprint, defense_fingerprint)
        planned.append(Planned(sample, request, error))
    return planned


def request_key(
    request: Request, task_version: str, model_fingerprint: dict[str, Any], defense_fingerprint: dict[str, Any]
) -> str:
    return generation_key(
        model_fingerprint=model_fingerprint,
        defense_fingerprint=defense_fingerprint,
        task=request.task,
        task_version=task_version,
        prompt=request.prompt,
        system=request.system,
        image_sha256=request.image_sha256,
        settings=request.settings,
    )


def effective_settings(spec: TaskSpec, config: EvalConfig) -> GenerationSettings:
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens or spec.generation.max_new_tokens,
        batch_size=config.batch_size or spec.generation.batch_size,
    )
    for name in ("max_new_tokens", "batch_size"):  # a batch size < 1 would silently generate nothing
        if getattr(settings, name) < 1:
            raise ValueError(f"task {spec.name}: {name} must be >= 1, got {getattr(settings, name)}")
    return settings


# --------------------------------------------------------------------------- generation


def batches(planned: Sequence[Planned]) -> Iterator[list[Planned]]:
    """Chunks of pending work sharing task, settings and image-ness (so a batch is homogeneous)."""
    groups: dict[tuple[str, int, int, bool], list[Planned]] = defaultdict(list)
    for item in planned:
        settings = item.request.settings
        groups[(item.request.task, settings.max_new_tokens, settings.batch_size, item.request.image is None)].append(item)
    for (_, _, batch_size, _), items in groups.items():
        for start in range(0, len(items), batch_size):
            yield items[start : start + batch_size]


def generate_batch(defense: Any, adapter: Any, batch: list[Planned], model: str, defense_name: str) -> list[Generation]:
    """Generate one batch; on failure retry its members one by one so one bad sample fails alone."""
    try:
        outputs = defense.generate(adapter, [item.request for item in batch])
        if len(outputs) != len(batch):
            raise RuntimeError(f"defense returned {len(outputs)} outputs for {len(batch)} requests")
    except Exception as exc:  # noqa: BLE001 - a sample's failure must not stop the run
        if len(batch) > 1:
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), exc)
            return [g for item in batch for g in generate_batch(defense, adapter, [item], model, defense_name)]
        log.error("sample %s/%s failed: %s", batch[0].request.task, batch[0].request.sample_id, exc)
        return [error_generation(batch[0], model, defense_name, f"{type(exc).__name__}: {exc}")]
    created = now_utc()
    return [
        Generation(
            key=item.request.key,
            task=item.request.task,
            sample_id=item.request.sample_id,
            model=model,
            defense=defense_name,
            text=output.text,
            input_tokens=output.input_tokens,
            output_tokens=output.output_tokens,
            prefill_s=output.prefill_s,
            decode_s=output.decode_s,
            batch_size=output.batch_size,
            meta=output.meta,
            created_at=created,
        )
        for item, output in zip(batch, outputs)
    ]


def filed_under(generation: Generation, item: Planned, **changes: Any) -> Generation:
    """A copy of ``generation`` under ``item``'s task and sample id. Samples with the same input share one
    cache key (POPE reuses an image and question across its splits); each keeps its own record, so no
    verdict or row is overwritten."""
    return dataclasses.replace(generation, task=item.request.task, sample_id=item.sample.id, **changes)


def error_generation(item: Planned, model: str, defense_name: str, error: str) -> Generation:
    return Generation(
        key=item.request.key,
        task=item.request.task,
        sample_id=item.request.sample_id,
        model=model,
        defense=defense_name,
        text=None,
        error=error,
        created_at=now_utc(),
    )


def progress_bar(total: int, enabled: bool, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, unit="sample", dynamic_ncols=True)


# --------------------------------------------------------------------------- judging and metrics


def judge_entry(fingerprint: dict[str, Any], stage: JudgeStageResult, *, primary: bool) -> dict[str, Any]:
    """What run.json's ``judging`` records for one (task, judge): see ``harness.core.store.RunInfo``."""
    return {"fingerprint": fingerprint, "primary": primary, "judged_at": now_utc(), **stage.counts()}


def metric_rows(
    run_id: str,
    model: str,
    defense: str,
    spec: TaskSpec,
    samples: Sequence[Sample],
    generations: dict[str, Generation],
    judgements: dict[str, Judgement],
    judge_name: str | None,
) -> list[MetricRow]:
    metric = import_target(spec.metric)
    ok = {sid: g for sid, g in generations.items() if g.ok}
    values = metric(samples, ok, judgements)
    return [
        MetricRow(
            run_id=run_id,
            model=model,
            defense=defense,
            task=spec.name,
            task_version=spec.version,
            metric=value.metric,
            value=value.value,
            n=value.n,
            ci_low=value.ci_low,
            ci_high=value.ci_high,
            subset=value.subset,
            higher_is_better=value.higher_is_better,
            judge=judge_name,
        )
        for value in values
    ]


# --------------------------------------------------------------------------- provenance


def provenance() -> dict[str, Any]:
    import importlib.metadata as metadata

    versions = {}
    for package in ("torch", "transformers", "datasets", "tokenizers", "pillow", "jinja2"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit or None,
    }


def make_run_id(config: EvalConfig) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(f"{config.model}|{config.defense}|{','.join(config.tasks)}".encode()).hexdigest()[:6]
    safe_model = config.model.replace("/", "_")
    return f"{stamp}-{safe_model}-{config.defense}-{digest}"


# --------------------------------------------------------------------------- the run


def run_eval(config: EvalConfig) -> RunResult:
    from harness.models.catalog import resolve_model

    started = now_utc()
    out_root = config.results_dir or results_dir()
    run_id = config.run_id or make_run_id(config)

    model_spec = resolve_model(registries.models(), config.model)
    defense_name = registries.defenses().canonical(config.defense)
    defense = registries.defenses().get(defense_name)(**config.defense_params)
    task_specs = [registries.tasks().get(name) for name in config.tasks]
    task_args = {registries.tasks().canonical(name): args for name, args in config.task_args.items()}
    stray = sorted(set(task_args) - {spec.name for spec in task_specs})
    if stray:
        raise ValueError(f"--task-arg names task(s) that are not being run: {', '.join(stray)}")
    for spec in task_specs:
        check_loader_args(spec, task_args.get(spec.name, {}))
    task_specs = [with_task_args_version(spec, task_args.get(spec.name)) for spec in task_specs]
    # Judges are built before any model work, so that a misconfigured one (no endpoint, bad option)
    # fails now rather than after an hour of generation.
    task_judges = judge_per_task(task_specs, config.judge)
    judges_by_name = build_judges(sorted(set(task_judges.values())), config.judge_args)

    fingerprinter = import_target(model_spec.fingerprinter)
    # "auto" becomes the device and dtype it means: CPU and GPU numerics differ, so they must not share
    # cache rows, and the run record names what ran.
    from harness.core.hub import resolve_device
    from harness.models.spec import resolve_dtype

    config = dataclasses.replace(config, device=resolve_device(config.device), dtype=resolve_dtype(model_spec, config.dtype))
    model_fingerprint = {**fingerprinter(model_spec, config.dtype), "device": config.device}
    defense.prepare(model_spec.name, model_fingerprint)
    defense_fingerprint = defense.fingerprint()
    log.info("model %s (%s), defense %s, tasks %s", model_spec.name, model_spec.source, defense_name, config.tasks)

    # Samples and requests for every task, before any model work.
    plans: dict[str, list[Planned]] = {}
    task_samples: dict[str, list[Sample]] = {}
    task_errors: dict[str, str] = {}
    for spec in task_specs:
        try:
            samples = select_samples(spec, load_samples(spec, task_args.get(spec.name)), config.limit)
        except Exception as exc:  # noqa: BLE001 - one unavailable task must not sink the others
            log.error("task %s could not be loaded: %s", spec.name, exc)
            task_errors[spec.name] = f"{type(exc).__name__}: {exc}"
            continue
        task_samples[spec.name] = samples
        plans[spec.name] = build_requests(
            spec, samples, effective_settings(spec, config), model_fingerprint, defense_fingerprint
        )
        log.info("task %s v%s: %d samples", spec.name, spec.version, len(samples))

    cache_path = out_root / "cache" / "generations.sqlite"
    generations: dict[str, dict[str, Generation]] = defaultdict(dict)
    model_loaded = False
    counts = {"samples": 0, "cache_hits": 0, "generated": 0, "errors": 0}
    with GenerationCache(cache_path) as cache:
        all_planned = [item for planned in plans.values() for item in planned]
        counts["samples"] = len(all_planned)
        cached = cache.get_many(item.request.key for item in all_planned if item.error is None)
        pending = []
        for item in all_planned:
            if item.error is not None:
                generations[item.request.task][item.sample.id] = error_generation(
                    item, model_spec.name, defense_name, item.error
                )
            elif item.request.key in cached:
                generations[item.request.task][item.sample.id] = filed_under(
                    cached[item.request.key], item, model=model_spec.name, defense=defense_name)
                counts["cache_hits"] += 1
            else:
                pending.append(item)
        log.info("%d from cache, %d to generate, %d input errors", counts["cache_hits"], len(pending), sum(1 for i in all_planned if i.error))

        if pending:
            builder = import_target(model_spec.builder)
            log.info("loading model %s (dtype %s, device %s)", model_spec.name, config.dtype, config.device)
            load_start = time.perf_counter()
            adapter = builder(model_spec, dtype=config.dtype, device=config.device)
            model_loaded = True
            log.info("model loaded in %.1f s", time.perf_counter() - load_start)
            # A builder may have materialised the weights (first use of smol-llava): identify the
            # model by what was actually loaded, so that later runs find these generations.
            loaded_fingerprint = {**fingerprinter(model_spec, config.dtype), "device": config.device}
            if loaded_fingerprint != model_fingerprint:
                log.info("model fingerprint changed on load; re-keying %d pending requests", len(pending))
                model_fingerprint = loaded_fingerprint
                versions = {spec.name: spec.version for spec in task_specs}
                for item in pending:
                    item.request.key = request_key(item.request, versions[item.request.task], model_fingerprint, defense_fingerprint)
            # Requests with the same input (same key) are generated once and copied to the others:
            # POPE asks the same question on the same image in several splits.
            unique: dict[str, Planned] = {}
            repeats: dict[str, list[Planned]] = defaultdict(list)
            for item in pending:
                if unique.setdefault(item.request.key, item) is not item:
                    repeats[item.request.key].append(item)
            if repeats:
                log.info("%d requests repeat another's input: generated once, copied",
                         sum(len(items) for items in repeats.values()))
            with progress_bar(len(unique), config.progress, f"{model_spec.name}/{defense_name}") as bar:
                for batch in batches(list(unique.values())):
                    produced = generate_batch(defense, adapter, batch, model_spec.name, defense_name)
                    cache.put_many(produced)  # committed now: a crash loses nothing finished
                    for generation in produced:
                        copies = [filed_under(generation, item) for item in repeats.get(generation.key, [])]
                        for copy in [generation, *copies]:
                            generations[copy.task][copy.sample_id] = copy
                            counts["generated"] += int(copy.ok)
                    bar.update(len(batch))
            # Free the target model before judging: a classifier judge (an 8B Llama Guard) loads next.
            del adapter
            release_accelerator_memory(config.device)
        else:
            log.info("every generation found in cache: model not loaded")
    counts["errors"] = sum(1 for per_task in generations.values() for g in per_task.values() if not g.ok)

    # Judge (the cached judging stage, harness.pipeline.judge) and score.
    all_judgements: list[Judgement] = []
    all_metrics: list[MetricRow] = []
    judge_fingerprints: dict[str, dict[str, Any]] = {}
    judging: dict[str, dict[str, dict[str, Any]]] = {}
    judgement_cache: JudgementCache | None = None
    try:
        for spec in task_specs:
            if spec.name not in task_samples:
                continue
            samples = task_samples[spec.name]
            judge_name = task_judges.get(spec.name)
            judgements: dict[str, Judgement] = {}
            if judge_name:
                judge = judges_by_name[judge_name]
                judge_fingerprints[spec.name] = judge.fingerprint()
                if judgement_cache is None:
                    judgement_cache = JudgementCache(judgement_cache_path())
                stage = run_judge_stage(
                    judge, samples, generations[spec.name], judgement_cache,
                    image_sha256={item.sample.id: item.request.image_sha256 for item in plans[spec.name]},
                    progress=config.progress,
                )
                judgements = stage.verdicts
                # the stage names verdicts after the judge object; rows and run.json use the same name
                judge_name = stage.judge
                judging[spec.name] = {judge_name: judge_entry(judge_fingerprints[spec.name], stage, primary=True)}
                all_judgements.extend(judgements.values())
            all_metrics.extend(
                metric_rows(run_id, model_spec.name, defense_name, spec, samples, generations[spec.name], judgements, judge_name)
            )
    finally:
        if judgement_cache is not None:
            judgement_cache.close()

    info = RunInfo(
        run_id=run_id,
        model=model_spec.name,
        defense=defense_name,
        tasks={spec.name: spec.version for spec in task_specs if spec.name in task_samples},
        model_fingerprint=model_fingerprint,
        defense_fingerprint=defense_fingerprint,
        judges=judge_fingerprints,
        settings={
            "limit": config.limit,
            "dtype": config.dtype,
            "device": config.device,
            "generation": {name: plans[name][0].request.settings.to_dict() for name in plans if plans[name]},
            "task_errors": task_errors,
            "task_args": task_args,
            "judge_arg_names": {name: sorted(options) for name, options in config.judge_args.items()},
        },
        counts=counts,
        model_loaded=model_loaded,
        started_at=started,
        finished_at=now_utc(),
        provenance=provenance(),
        judging=judging,
    )
    ordered_samples = [s for spec in task_specs for s in task_samples.get(spec.name, [])]
    ordered_generations = [generations[s.task][s.id] for s in ordered_samples if s.id in generations[s.task]]
    run_dir = out_root / "runs" / run_id
    save_run(run_dir, info, ordered_samples, ordered_generations, all_judgements, all_metrics)
    log.info("run stored in %s", run_dir)

    result = RunResult(run_dir, info, ordered_samples, ordered_generations, all_judgements, all_metrics)
    if config.write_report:
        write_reports(out_root, config.reports_dir or reports_dir(), run_id)
    return result


def write_reports(results_root: Path, out_dir: Path, run_id: str | None = None) -> tuple[Path, Path]:
    """Render the comparison report over the newest stored run per (model, defense, task)."""
    import shutil

    from harness.report import render_report

    runs = latest_runs(results_root)
    html, tex = render_report(runs, out_dir, "latest")
    if run_id:
        shutil.copyfile(html, out_dir / f"{run_id}.html")
        shutil.copyfile(tex, out_dir / f"{run_id}.tex")
    log.info("report written to %s and %s", html, tex)
    return html, tex
