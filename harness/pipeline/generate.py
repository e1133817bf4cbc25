"""Generate: planned requests -> one Generation per sample, through the generation cache.

:class:`CachedGenerator` answers what the cache holds, records input errors without the model, and
generates the misses: requests with the same input (the same key: POPE asks one question of one image
in several splits) run once and are copied to the others. The model loads only when something is
missing, and each batch is committed to the cache as soon as it is generated, so a crash or kill loses
no finished generation. A batch that fails is retried one request at a time, so one bad sample fails
alone with its error recorded and the run goes on.

:class:`ShardedGenerator` is the same stage over several processes (:mod:`harness.pipeline.distributed`):
rank 0 decides what is missing, every rank runs its share of the very batches one process would run,
and rank 0 collects the generations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from harness.core.cache import GenerationCache
from harness.core.records import Generation

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.defense_api.defense import Defense
    from harness.pipeline.bringup import BringUp
    from harness.pipeline.distributed import Distributed
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
    # several processes: world size, backend and each rank's share (empty for one process)
    parallel: dict[str, Any] = field(default_factory=dict)

    def add(self, generation: Generation) -> None:
        self.generations[generation.task][generation.sample_id] = generation

    def ordered(self, samples: Sequence[Any]) -> list[Generation]:
        return [self.generations[s.task][s.id] for s in samples if s.id in self.generations[s.task]]


def file_errors_and_hits(planned: Sequence["Planned"], cached: dict[str, Generation], result: GenerationResult,
                         model: str, defense_name: str) -> list["Planned"]:
    """File every planned item with an input error and every cache hit into ``result`` (counting the
    hits); returns the rest, the items still to generate, in plan order."""
    pending = []
    for item in planned:
        if item.error is not None:
            result.add(error_generation(item, model, defense_name, item.error))
        elif item.request.key in cached:
            result.add(filed_under(cached[item.request.key], item, model=model, defense=defense_name))
            result.counts["cache_hits"] += 1
        else:
            pending.append(item)
    return pending


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
        pending = file_errors_and_hits(planned, cached, result, model, defense_name)
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


class ShardedGenerator:
    """:class:`CachedGenerator` over the ranks of a launch: the same :class:`GenerationResult` on rank 0
    (plus each rank's share in ``parallel``), an empty one on the other ranks.

    ``shard_dir``: with ``--cache-per-rank``, ranks other than 0 commit their batches to their own file
    there (:func:`rank_cache_path`) instead of the shared cache; rank 0 writes what they send into the
    cache, and ``harness cache merge`` folds in the files of ranks that were killed.
    """

    def __init__(self, cache: GenerationCache, bringup: "BringUp", world: "Distributed", progress: bool = True,
                 shard_dir: Path | None = None):
        self.cache = cache
        self.bringup = bringup
        self.world = world
        self.progress = progress
        self.per_rank = shard_dir is not None
        self.shard_path = rank_cache_path(shard_dir, world.rank) if shard_dir is not None and not world.is_main else None

    def run(self, plan: "TaskPlan") -> GenerationResult:
        from harness.pipeline.distributed import DistributedError, shard_batches

        world, result = self.world, GenerationResult()
        planned = plan.all_planned()
        digest = plan_digest(planned)
        cached: dict[str, Generation] = {}
        message = None
        if world.is_main:
            cached = self.cache.get_many(item.request.key for item in planned if item.error is None)
            missing = [item.request.key for item in planned if item.error is None and item.request.key not in cached]
            message = {"plan": digest, "missing": list(dict.fromkeys(missing))}
        message = world.broadcast_json(message, "sharing the plan and the cache misses")
        if message["plan"] != digest:
            raise DistributedError(f"rank {world.rank} planned other requests than rank 0 (plan digests "
                                   f"{digest[:12]} vs {message['plan'][:12]}): every rank needs the same "
                                   "tasks, data, task arguments and model files")
        missing = set(message["missing"])
        unique: dict[str, "Planned"] = {}  # as CachedGenerator: the first item of each missing key, plan order
        for item in planned:
            if item.error is None and item.request.key in missing:
                unique.setdefault(item.request.key, item)
        every_batch = list(batches(list(unique.values())))
        shares = shard_batches([expected_cost(batch) for batch in every_batch], world.world_size)
        mine = [every_batch[index] for index in shares[world.rank]]
        if world.is_main:
            log.info("%d from cache, %d to generate in %d batches over %d ranks, %d input errors", len(planned)
                     - len(unique) - sum(1 for item in planned if item.error), len(unique), len(every_batch),
                     world.world_size, sum(1 for item in planned if item.error))
        if self.shard_path is not None:
            with GenerationCache(self.shard_path) as writer:
                produced = self._generate(mine, bool(every_batch), writer)
        else:
            produced = self._generate(mine, bool(every_batch), self.cache)
        reports = world.gather_json({"generations": [g.to_dict() for g in produced], "batches": len(mine),
                                     "requests": sum(len(batch) for batch in mine)}, "collecting the generations")
        result.model_loaded = bool(every_batch)
        if reports is None:  # not rank 0: its generations are in the cache and on their way to rank 0
            return result
        self._assemble(planned, cached, reports, result)
        return result

    def _generate(self, mine: list[list["Planned"]], any_work: bool, writer: GenerationCache) -> list[Generation]:
        """This rank's batches, each committed as soon as it is generated."""
        from harness.pipeline.distributed import DistributedError

        if any_work:
            # Rank 0 loads first: a model whose weights are built on first use (smol-llava) is built once.
            before = (self.bringup.model_fingerprint, self.bringup.defense_fingerprint)
            if self.world.is_main:
                self.bringup.load()
            self.world.barrier("waiting for rank 0 to load the model")
            if mine:
                self.bringup.load()
            if (self.bringup.model_fingerprint, self.bringup.defense_fingerprint) != before:
                raise DistributedError(f"rank {self.world.rank}: the fingerprint of {self.bringup.spec.name} changed "
                                       "on load (its weights were built just now), so the planned cache keys are stale; "
                                       "run the same command again (or build the model before launching)")
        produced: list[Generation] = []
        model, defense_name = self.bringup.spec.name, self.bringup.defense_name
        total = sum(len(batch) for batch in mine)
        with progress_bar(total, self.progress and self.world.is_main, f"{model}/{defense_name} rank 0") as bar:
            for batch in mine:
                generated = generate_batch(self.bringup.defense, self.bringup.load(), batch, model, defense_name)
                writer.put_many(generated)  # committed now: a kill loses nothing finished
                produced.extend(generated)
                bar.update(len(batch))
        return produced

    def _assemble(self, planned: list["Planned"], cached: dict[str, Generation], reports: list[dict[str, Any]],
                  result: GenerationResult) -> None:
        """Rank 0: every planned item's generation, as :class:`CachedGenerator` would have filed it."""
        model, defense_name = self.bringup.spec.name, self.bringup.defense_name
        by_key: dict[str, Generation] = {}
        shards = []
        for rank, report in enumerate(reports):
            generations = [Generation.from_dict(record) for record in report["generations"]]
            if rank and self.per_rank:  # per-rank files: rank 0's cache gets them all
                self.cache.put_many(generations)
            by_key.update((generation.key, generation) for generation in generations)
            ok = sum(1 for generation in generations if generation.ok)
            shards.append({"rank": rank, "batches": report["batches"], "requests": report["requests"],
                           "generated": ok, "errors": len(generations) - ok})
        result.counts["samples"] = len(planned)
        for item in file_errors_and_hits(planned, cached, result, model, defense_name):
            generation = filed_under(by_key[item.request.key], item)
            result.add(generation)
            result.counts["generated"] += int(generation.ok)
        result.counts["errors"] = sum(1 for per_task in result.generations.values() for g in per_task.values() if not g.ok)
        result.parallel = {**self.world.describe(), "cache": "per-rank" if self.per_rank else "shared",
                           "shards": shards}


def rank_cache_path(shard_dir: Path, rank: int) -> Path:
    """The cache file a rank other than 0 writes with ``--cache-per-rank``."""
    return shard_dir / f"generations.rank-{rank}.sqlite"


def plan_digest(planned: Sequence["Planned"]) -> str:
    """What every rank must agree on before sharding: each planned item's task, id, key and error-ness."""
    import hashlib

    digest = hashlib.sha256()
    for item in planned:
        digest.update(f"{item.request.task}\t{item.sample.id}\t{item.request.key}\t{item.error is None}\n".encode("utf-8"))
    return digest.hexdigest()


# A prompt token costs about a tenth of a decoded one (prefill runs the whole prompt in one pass);
# an image counts as this many prompt tokens (LLaVA-1.5's 576 patches; OneVision uses more).
PREFILL_TOKEN_WEIGHT = 0.1
IMAGE_TOKENS = 576


def expected_cost(batch: Sequence["Planned"]) -> float:
    """A batch's expected generation cost in decoded-token units, for dealing batches to ranks: each
    member decodes up to ``max_new_tokens`` and pre-fills its prompt (characters / 4) and image."""
    prompt_tokens = sum(len(item.request.prompt) / 4 + (IMAGE_TOKENS if item.request.image else 0) for item in batch)
    return sum(item.request.settings.max_new_tokens for item in batch) + PREFILL_TOKEN_WEIGHT * prompt_tokens


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
