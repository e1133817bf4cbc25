"""Latency statistics on hand-made generations (expected values worked out by hand)."""

from __future__ import annotations

import math

import pytest

from harness.core.latency import LatencyStats, latency_stats
from harness.core.records import Generation


def gen(sample_id: str, *, model: str = "m", defense: str = "none", task: str = "t", prefill: float = 0.0,
        decode: float = 0.0, tokens: int = 0, cached: bool = False, text: str | None = "ok",
        error: str | None = None) -> Generation:
    return Generation(key=sample_id, task=task, sample_id=sample_id, model=model, defense=defense, text=text,
                      output_tokens=tokens, prefill_s=prefill, decode_s=decode, error=error, from_cache=cached)


def test_stats_per_group_by_hand():
    generations = [
        gen("a", prefill=0.1, decode=0.9, tokens=9),  # total 1.0
        gen("b", prefill=0.2, decode=1.8, tokens=18),  # total 2.0
        gen("c", prefill=0.5, decode=3.5, tokens=35),  # total 4.0
        gen("d", prefill=1.0, decode=7.0, tokens=70, cached=True),  # total 8.0, original timing kept
        gen("e", prefill=100.0, decode=100.0, tokens=5, text=None, error="CUDA OOM"),  # failed: skipped
        gen("f", defense="self-reminder", prefill=0.3, decode=0.0, tokens=0),
        gen("g", defense="zz-only-errors", text=None, error="timeout"),
    ]
    stats = latency_stats(generations)
    assert [(s.model, s.defense, s.task) for s in stats] == [("m", "none", "t"), ("m", "self-reminder", "t")]

    baseline = stats[0]
    assert baseline.n == 4
    assert baseline.cached == 1
    assert baseline.mean_s == pytest.approx(15.0 / 4)  # (1 + 2 + 4 + 8) / 4
    # sorted totals [1, 2, 4, 8]; p50 at position 1.5 -> 2 + 0.5 * (4 - 2) = 3
    assert baseline.p50_s == pytest.approx(3.0)
    # p95 at position 3 * 0.95 = 2.85 -> 4 + 0.85 * (8 - 4) = 7.4
    assert baseline.p95_s == pytest.approx(7.4)
    assert baseline.mean_prefill_s == pytest.approx(0.45)  # 1.8 / 4
    assert baseline.mean_decode_s == pytest.approx(3.3)  # 13.2 / 4
    assert baseline.tokens_per_s == pytest.approx(10.0)  # 132 tokens / 13.2 s

    reminder = stats[1]
    assert (reminder.n, reminder.cached) == (1, 0)
    assert reminder.mean_s == reminder.p50_s == reminder.p95_s == pytest.approx(0.3)
    assert math.isnan(reminder.tokens_per_s)  # no decode time: NaN, not a ZeroDivisionError


def test_groups_split_by_task_and_model():
    stats = latency_stats([
        gen("1", task="b", prefill=1.0),
        gen("2", task="a", prefill=2.0),
        gen("3", model="k", task="a", prefill=3.0),
    ])
    assert [(s.model, s.task, s.mean_s) for s in stats] == [("k", "a", 3.0), ("m", "a", 2.0), ("m", "b", 1.0)]


def test_no_successful_generations_gives_no_rows():
    assert latency_stats([]) == []
    assert latency_stats([gen("x", text=None, error="boom")]) == []


def test_stats_round_trip_as_json_record():
    stats = latency_stats([gen("a", prefill=0.5, decode=0.5, tokens=4)])[0]
    assert LatencyStats.from_dict(stats.to_dict()) == stats
    assert stats.tokens_per_s == pytest.approx(8.0)
