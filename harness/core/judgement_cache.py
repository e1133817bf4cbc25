"""The judgement cache: one verdict per (judge fingerprint, what the judge sees, response), in SQLite.

Verdicts are cached in SQLite (WAL) at ``<harness cache dir>/judgements.sqlite`` (``HARNESS_CACHE_DIR``,
default ``~/.cache/mm-safety-harness``); the cache is content-addressed, so a verdict is reused by any
run, results folder, model or defense that produced the same response to the same sample.

Cache key = sha256 of canonical JSON (sorted keys) over:

- ``JUDGE_CACHE_SCHEMA_VERSION`` (bump when the meaning of a cached verdict changes);
- the judge's ``fingerprint()`` (model id and revision, template sha256, keyword-list sha256,
  thresholds: what makes two judges give the same verdicts; never a secret);
- what a judge can see of the sample: prompt, image content sha256, ``harmful``, ``category``,
  ``answer`` and ``meta``. Prompt and image are the obvious inputs; the rest is in the key because
  judges may read it (MM-SafetyBench's GPT-4 judge picks its template by scenario = category), and a
  stale hit is worse than a miss. Task name and sample id are labels, not inputs, and stay out;
- the response text.

Every verdict a judge *returns* is cached, undecided ones included; the stage's record of a judge that
*raised* (label ``judge-error``) never is. The judging stage itself is ``harness.pipeline.judge``.
"""


from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.core.cache import canonical_json, open_store, select_records
from harness.core.paths import cache_dir
from harness.core.records import Judgement, Sample

# Bump when the meaning of a cached verdict changes (key fields, Judgement fields, judge protocol).
JUDGE_CACHE_SCHEMA_VERSION = 1
CACHE_FILE = "judgements.sqlite"
# Label of the undecided Judgement the stage records when a judge raises; never cached.
JUDGE_ERROR_LABEL = "judge-error"
# Items per judge_many call and per cache commit (progress moves in these steps).
DEFAULT_CHUNK_SIZE = 32


def judgement_cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def judgement_key(
    *,
    judge_fingerprint: Mapping[str, Any],
    sample: Sample,
    image_sha256: str | None,
    response: str,
) -> str:
    """The cache key of one verdict (see the module doc for what it covers and why)."""
    payload = {
        "schema": JUDGE_CACHE_SCHEMA_VERSION,
        "judge": dict(judge_fingerprint),
        "prompt": sample.prompt,
        "image_sha256": image_sha256,
        "harmful": sample.harmful,
        "category": sample.category,
        "answer": sample.answer,
        "meta": sample.meta,
        "response": response,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def is_cacheable(judgement: Judgement) -> bool:
    """Everything a judge returned; not the stage's record of a judge raising."""
    return judgement.label != JUDGE_ERROR_LABEL


class JudgementCache:
    """A crash-safe key -> Judgement store (SQLite in WAL mode; safe for several processes)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else judgement_cache_path()
        self._db = open_store(self.path, "CREATE TABLE IF NOT EXISTS judgements ("
                              " key TEXT PRIMARY KEY, judge TEXT NOT NULL, record TEXT NOT NULL, created_at TEXT NOT NULL)")

    def get_many(self, keys: Iterable[str]) -> dict[str, Judgement]:
        return {key: Judgement.from_dict(json.loads(record)) for key, record in select_records(self._db, "judgements", keys)}

    def put_many(self, items: Iterable[tuple[str, Judgement]]) -> int:
        """Store ``(key, verdict)`` pairs in one transaction, skipping judge errors; returns how many."""
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        rows = [(key, j.judge, canonical_json(j.to_dict()), created) for key, j in items if is_cacheable(j)]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO judgements (key, judge, record, created_at) VALUES (?, ?, ?, ?)", rows
            )
        return len(rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "JudgementCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
