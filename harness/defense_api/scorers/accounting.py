"""Cost accounting for defenses that run several passes per request.

The pipeline stores one :class:`~harness.core.records.ModelOutput` per request, and reports read
``prefill_s + decode_s`` as the per-sample latency. For an iterative defense that must be the whole
cost, not the first pass: a :class:`PassLedger` sums every target-model pass a request took part in
(``prefill_s`` = sum of prefills, ``decode_s`` = sum of decodes) and books the time spent in scorers
(reward models, CLIP, detectors, detoxifiers) under ``decode_s`` too, so ``total_s`` is the wall time
of the request. Token counts are summed over passes as well (they measure compute, not answer
length); the final answer's own length goes to ``meta["final_output_tokens"]``.

A pass run on a batch carries the batch's timing for each of its members, as
:meth:`VLMAdapter.generate` does; with batch size 1 the ledger total is the request's wall time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from harness.core.records import ModelOutput


@dataclass
class PassLedger:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    scoring_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    passes: int = 0
    batch_size: int = 1
    notes: dict[str, Any] = field(default_factory=dict)

    def add_pass(self, output: ModelOutput) -> ModelOutput:
        """Book one generation pass of the target model; returns it for chaining."""
        self.prefill_s += output.prefill_s
        self.decode_s += output.decode_s
        self.input_tokens += output.input_tokens
        self.output_tokens += output.output_tokens
        self.passes += 1
        self.batch_size = max(self.batch_size, output.batch_size)
        return output

    def add_scoring(self, seconds: float) -> None:
        self.scoring_s += seconds

    def output(self, text: str, final_output_tokens: int, **meta: Any) -> ModelOutput:
        return ModelOutput(
            text=text,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            prefill_s=self.prefill_s,
            decode_s=self.decode_s + self.scoring_s,
            batch_size=self.batch_size,
            meta={
                **meta,
                "passes": self.passes,
                "scoring_s": round(self.scoring_s, 6),
                "final_output_tokens": final_output_tokens,
            },
        )


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is the seconds since entry (frozen at exit)."""
    started = time.perf_counter()
    finished: list[float] = []

    def elapsed() -> float:
        return (finished[0] if finished else time.perf_counter()) - started

    try:
        yield elapsed
    finally:
        finished.append(time.perf_counter())


def charge_scoring(ledgers: list[PassLedger], seconds: float) -> None:
    """A scorer call made for several requests at once costs each of them its full time (the batch
    convention of the adapter: every member of a batch carries the batch's timing)."""
    for ledger in ledgers:
        ledger.add_scoring(seconds)
