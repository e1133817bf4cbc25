"""Generate: planned requests -> one Generation per sample, through the generation cache.

:class:`CachedGenerator` answers what the cache holds, records input errors without the model, and
generates the misses: requests with the same input (the same key: POPE asks one question of one image
in several splits) run once and are copied to the others. The model loads only when something is
missing, and each batch is committed to the cache as soon as it is generated, so a crash or kill loses
no finished generation. A batch that fails is retried one request at a time, so one bad sample fails
alone with its error recorded and the run goes on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from harness.core.cache import GenerationCache
from harness.core.records import Generation

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.defense_api.defense import Defense
    from harness.pipeline.bringup import BringUp
    from harness.pipeline.plan import Planned, TaskPlan

log = logging.getLogger("harness.pipeline.generate")


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class GenerationResult:
    """task -> sample id -> generation, and what the stage did."""

    generations: dict[str, dict[str, Generation]] = field(default_factory=lambda: defaultdict(dict))
    counts: dict[str, int] = field(default_factory=lambda: {"samples": 0, "cache_hits": 0, "generated": 0, "errors": 0})
    model_loaded: bool = False

    def add(self, generation: Generation) -> None:
        self.generations[generation.task][generation.sample_id] = generation

    def ordered(self, samples: Sequence[Any]) -> list[Generation]:
        return [self.generations[s.task][s.id] for s in samples if s.id in self.generations[s.task]]


class CachedGenerator:
    """Checks the cache, de-duplicates, runs the misses under the defense and stores them."""

    def __init__(self, cache: GenerationCache, bringup: "BringUp", progress: bool = True):
        self.cache = cache
        self.bringup = bringup
        self.progress = progress

    def run(self, plan: "TaskPlan") -> GenerationResult:
        result = GenerationResult()
        model, defense_name = self.bringup.spec.name, self.bringup.defense_name
        planned = plan.all_planned()
        result.counts["samples"] = len(planned)
        cached = self.cache.get_many(item.request.key for item in planned if item.error is None)
        pending = []
        for item in planned:
            if item.error is not None:
                result.add(error_generation(item, model, defense_name, item.error))
            elif item.request.key in cached:
                result.add(filed_under(cached[item.request.key], item, model=model, defense=defense_name))
                result.counts["cache_hits"] += 1
            else:
                pending.append(item)
        log.info("%d from cache, %d to generate, %d input errors",
                 result.counts["cache_hits"], len(pending), sum(1 for item in planned if item.error))
        if pending:
            self._generate(plan, pending, result)
            result.model_loaded = True
        else:
            log.info("every generation found in cache: model not loaded")
        result.counts["errors"] = sum(1 for per_task in result.generations.values() for g in per_task.values() if not g.ok)
        return result

    def _generate(self, plan: "TaskPlan", pending: list["Planned"], result: GenerationResult) -> None:
        before = (self.bringup.model_fingerprint, self.bringup.defense_fingerprint)
        adapter = self.bringup.load()
        if (self.bringup.model_fingerprint, self.bringup.defense_fingerprint) != before:
            log.info("re-keying %d pending requests for the loaded model", len(pending))
            plan.rekey(self.bringup.model_fingerprint, self.bringup.defense_fingerprint, pending)
        unique: dict[str, "Planned"] = {}
        repeats: dict[str, list["Planned"]] = defaultdict(list)
        for item in pending:
            if unique.setdefault(item.request.key, item) is not item:
                repeats[item.request.key].append(item)
        if repeats:
            log.info("%d requests repeat another's input: generated once, copied", sum(len(items) for items in repeats.values()))
        model, defense_name = self.bringup.spec.name, self.bringup.defense_name
        with progress_bar(len(unique), self.progress, f"{model}/{defense_name}") as bar:
            for batch in batches(list(unique.values())):
                produced = generate_batch(self.bringup.defense, adapter, batch, model, defense_name)
                self.cache.put_many(produced)  # committed now: a crash loses nothing finished
                for generation in produced:
                    copies = [filed_under(generation, item) for item in repeats.get(generation.key, [])]
                    for copy in [generation, *copies]:
                        result.add(copy)
                        result.counts["generated"] += int(copy.ok)
                bar.update(len(batch))


def batches(planned: Sequence["Planned"]) -> Iterator[list["Planned"]]:
    """Chunks of pending work sharing task, settings and image-ness (so a batch is homogeneous)."""
    groups: dict[tuple[str, int, int, bool], list["Planned"]] = defaultdict(list)
    for item in planned:
        settings = item.request.settings
        groups[(item.request.task, settings.max_new_tokens, settings.batch_size, item.request.image is None)].append(item)
    for (_, _, batch_size, _), items in groups.items():
        for start in range(0, len(items), batch_size):
            yield items[start : start + batch_size]


def generate_batch(defense: "Defense", adapter: "VLMAdapter", batch: list["Planned"], model: str, defense_name: str) -> list[Generation]:
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


def filed_under(generation: Generation, item: "Planned", **changes: Any) -> Generation:
    """A copy of ``generation`` under ``item``'s task and sample id. Samples with the same input share one
    cache key (POPE reuses an image and question across its splits); each keeps its own record, so no
    verdict or row is overwritten."""
    return dataclasses.replace(generation, task=item.request.task, sample_id=item.sample.id, **changes)


def error_generation(item: "Planned", model: str, defense_name: str, error: str) -> Generation:
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
