"""Plan: which samples of each task run, in what order, and the request (with its cache key) for each.

A task's samples are put in a seeded order in which every prefix is balanced across strata, then cut
at ``--limit`` (never splitting a scoring group). Each sample becomes a :class:`Request` whose key
covers everything that changes the output; a sample whose image cannot be read is planned with its
error and never reaches the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from harness.core.cache import generation_key
from harness.core.images import BadImageError, check_image
from harness.core.records import GenerationSettings, Request, Sample, TaskSpec

log = logging.getLogger("harness.pipeline.plan")

ALL = "all"


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


def with_revision_version(spec: TaskSpec) -> TaskSpec:
    """The spec whose version also names its pinned dataset revision (``1+rev.<revision>``): generations
    made on other data are never answered from the cache, paired or gated as the same task."""
    if not spec.revision:
        return spec
    return dataclasses.replace(spec, version=f"{spec.version}+rev.{spec.revision[:12]}")


def check_revision(spec: TaskSpec) -> None:
    """A pinned revision must reach the loader: it takes a ``revision`` argument, and the YAML does not
    also set one in ``loader_args``."""
    if not spec.revision:
        return
    if "revision" in spec.loader_args:
        raise ValueError(f"task {spec.name}: name the dataset revision once, as the top-level 'revision' "
                         "(not also in loader_args)")
    if "revision" not in inspect.signature(spec.loader.load()).parameters:
        raise ValueError(f"task {spec.name}: pins revision {spec.revision!r}, but its loader {spec.loader} "
                         "takes no revision argument")


def check_loader_args(spec: TaskSpec, overrides: dict[str, Any]) -> None:
    """Fail fast on a ``--task-arg`` key the task's loader does not take, with close matches."""
    parameters = inspect.signature(spec.loader.load()).parameters
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
    loader: Callable[..., list[Sample]] = spec.loader.load()
    pinned = {"revision": spec.revision} if spec.revision else {}
    samples = loader(spec.name, **{**spec.loader_args, **pinned, **(overrides or {})})
    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task {spec.name!r}: loader returned duplicate sample ids")
    return samples


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


def effective_settings(spec: TaskSpec, max_new_tokens: int | None, batch_size: int | None) -> GenerationSettings:
    """The task's generation settings with the run's overrides (``--max-new-tokens``, ``--batch-size``)."""
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens or spec.generation.max_new_tokens,
        batch_size=batch_size or spec.generation.batch_size,
    )
    for name in ("max_new_tokens", "batch_size"):  # a batch size < 1 would silently generate nothing
        if getattr(settings, name) < 1:
            raise ValueError(f"task {spec.name}: {name} must be >= 1, got {getattr(settings, name)}")
    return settings


@dataclass
class TaskPlan:
    """Every task's selected samples and planned requests; tasks that could not be loaded, with why."""

    specs: list[TaskSpec]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    planned: dict[str, list[Planned]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def loaded_specs(self) -> list[TaskSpec]:
        return [spec for spec in self.specs if spec.name in self.samples]

    def all_planned(self) -> list[Planned]:
        return [item for items in self.planned.values() for item in items]

    def ordered_samples(self) -> list[Sample]:
        return [sample for spec in self.specs for sample in self.samples.get(spec.name, [])]

    def rekey(self, model_fingerprint: dict[str, Any], defense_fingerprint: dict[str, Any], items: Sequence[Planned]) -> None:
        """New keys for ``items`` after the model or defense fingerprint changed (a first build)."""
        versions = {spec.name: spec.version for spec in self.specs}
        for item in items:
            item.request.key = request_key(item.request, versions[item.request.task], model_fingerprint, defense_fingerprint)


def resolve_tasks(names: Sequence[str], task_args: dict[str, dict[str, Any]]) -> tuple[list[TaskSpec], dict[str, dict[str, Any]]]:
    """Registered task specs (versioned by their ``--task-arg`` overrides) and the overrides by
    canonical task name; a ``--task-arg`` for a task not being run, or a loader argument the task does
    not take, is an error before anything loads."""
    from harness import registries

    specs = [registries.tasks().get(name) for name in names]
    by_task = {registries.tasks().canonical(name): args for name, args in task_args.items()}
    stray = sorted(set(by_task) - {spec.name for spec in specs})
    if stray:
        raise ValueError(f"--task-arg names task(s) that are not being run: {', '.join(stray)}")
    for spec in specs:
        check_loader_args(spec, by_task.get(spec.name, {}))
        check_revision(spec)
    return [with_task_args_version(with_revision_version(spec), by_task.get(spec.name)) for spec in specs], by_task


def plan_tasks(
    specs: Sequence[TaskSpec],
    task_args: dict[str, dict[str, Any]],
    limit: Callable[[TaskSpec], int | str | None],
    settings: Callable[[TaskSpec], GenerationSettings],
    model_fingerprint: dict[str, Any],
    defense_fingerprint: dict[str, Any],
) -> TaskPlan:
    """Samples and requests for every task, before any model work; one task that cannot be loaded
    is recorded and does not sink the others."""
    plan = TaskPlan(list(specs))
    for spec in specs:
        try:
            samples = select_samples(spec, load_samples(spec, task_args.get(spec.name)), limit(spec))
        except Exception as exc:  # noqa: BLE001 - one unavailable task must not sink the others
            log.error("task %s could not be loaded: %s", spec.name, exc)
            plan.errors[spec.name] = f"{type(exc).__name__}: {exc}"
            continue
        plan.samples[spec.name] = samples
        plan.planned[spec.name] = build_requests(spec, samples, settings(spec), model_fingerprint, defense_fingerprint)
        log.info("task %s v%s: %d samples", spec.name, spec.version, len(samples))
    return plan
