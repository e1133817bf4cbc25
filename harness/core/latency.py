"""Latency summaries per (model, defense, task) from stored generations.

Only successful generations count: a failed one has no meaningful timing. Generations read back from
the cache keep the timings measured when they were produced, so they are included and counted in
``cached`` so a reader knows how many timings are historical rather than from this run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from harness.core.metrics import percentile
from harness.core.records import Generation, JsonRecord


@dataclass
class LatencyStats(JsonRecord):
    model: str
    defense: str
    task: str
    n: int  # successful generations
    mean_s: float  # per-sample latency = prefill_s + decode_s
    p50_s: float
    p95_s: float
    mean_prefill_s: float
    mean_decode_s: float
    tokens_per_s: float  # sum(output_tokens) / sum(decode_s): decode throughput
    cached: int  # how many of the n came from the cache
    # Distinct batch sizes of the generations: in a batch of B every sample carries the batch's wall
    # time, so latencies are only comparable between equal batch sizes.
    batch_sizes: list[int] = field(default_factory=list)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _tokens_per_second(generations: list[Generation]) -> float:
    """NaN (not an exception or inf) when no decode time was recorded."""
    decode_total = math.fsum(g.decode_s for g in generations)
    if not generations or not math.isfinite(decode_total) or decode_total <= 0:
        return float("nan")
    return sum(g.output_tokens for g in generations) / decode_total


def latency_stats(generations: Iterable[Generation]) -> list[LatencyStats]:
    """One LatencyStats per (model, defense, task), sorted by that key; failed generations skipped."""
    groups: dict[tuple[str, str, str], list[Generation]] = defaultdict(list)
    for generation in generations:
        if generation.ok:
            groups[(generation.model, generation.defense, generation.task)].append(generation)

    stats = []
    for (model, defense, task), group in sorted(groups.items()):
        totals = [g.prefill_s + g.decode_s for g in group]
        stats.append(
            LatencyStats(
                model=model,
                defense=defense,
                task=task,
                n=len(group),
                mean_s=_mean(totals),
                p50_s=percentile(totals, 50),
                p95_s=percentile(totals, 95),
                mean_prefill_s=_mean([g.prefill_s for g in group]),
                mean_decode_s=_mean([g.decode_s for g in group]),
                tokens_per_s=_tokens_per_second(group),
                cached=sum(1 for g in group if g.from_cache),
                batch_sizes=sorted({g.batch_size for g in group}),
            )
        )
    return stats
