"""The generation cache: SQLite in WAL mode, one row per generation, keyed by everything that changes
the output.

Key = sha256 of canonical JSON over: cache schema version, model fingerprint (id, revision or weight
hash, dtype) and device, defense fingerprint (name, params, sha256 of calibration artifacts), task name
and version, system prompt, user prompt, image content sha256, and generation settings. Two requests
that differ in any of these never share a row; identical ones always do, so a finished evaluation is
answered entirely from here without loading the model.

Only successful greedy generations are stored: a failure is recorded in the run's outputs and retried
by the next run. Each batch is committed as soon as it is generated, so a crash or kill loses no
finished generation.

Several processes on one node share the file (SQLite's locking; WAL lets readers run beside the
writer). Where ranks cannot share a file (nodes without a shared filesystem), each writes its own and
:meth:`GenerationCache.merge_from` folds them together: a key already present is kept, so merging is
idempotent and never duplicates a row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from harness.core.records import Generation, GenerationSettings

# Bump when the meaning of a cached generation changes (prompt assembly, decoding, record fields).
CACHE_SCHEMA_VERSION = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def generation_key(
    *,
    model_fingerprint: Mapping[str, Any],
    defense_fingerprint: Mapping[str, Any],
    task: str,
    task_version: str,
    prompt: str,
    system: str | None,
    image_sha256: str | None,
    settings: GenerationSettings,
) -> str:
    payload = {
        "schema": CACHE_SCHEMA_VERSION,
        "model": dict(model_fingerprint),
        "defense": dict(defense_fingerprint),
        "task": task,
        "task_version": task_version,
        "prompt": prompt,
        "system": system,
        "image_sha256": image_sha256,
        "settings": settings.to_dict(),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


OPEN_STORE_TIMEOUT_S = 60.0


def open_store(path: Path, create_table: str, timeout_s: float = OPEN_STORE_TIMEOUT_S) -> sqlite3.Connection:
    """A crash-safe SQLite store shared by processes: WAL journal, the table created if absent.

    Two processes opening a new file at once (the ranks of a launch) can get "database is locked" from
    the switch to WAL: SQLite answers that lock upgrade at once, without its busy handler, so the set-up
    is retried here until ``timeout_s``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            db.execute(create_table)
            db.commit()
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                db.close()
                raise
            db.rollback()
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def select_records(db: sqlite3.Connection, table: str, keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(key, JSON record) for the stored ones among ``keys`` (each asked once)."""
    keys = list(dict.fromkeys(keys))
    for start in range(0, len(keys), 500):  # stay below SQLite's bound-parameter limit
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        yield from db.execute(f"SELECT key, record FROM {table} WHERE key IN ({marks})", chunk)


@dataclass
class MergeCounts:
    """What :meth:`GenerationCache.merge_from` did with one source file's rows."""

    rows: int = 0  # rows in the source
    added: int = 0  # keys the cache did not hold
    present: int = 0  # keys it held already (kept as they were)
    differing: int = 0  # of those, how many hold another answer text (kept: the cache's row wins)


class GenerationCache:
    """A crash-safe key -> Generation store. Safe for several processes (SQLite locking + WAL)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = open_store(self.path, "CREATE TABLE IF NOT EXISTS generations ("
                              " key TEXT PRIMARY KEY, record TEXT NOT NULL, created_at TEXT NOT NULL)")

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        found: dict[str, Generation] = {}
        for key, record in select_records(self._db, "generations", keys):
            generation = Generation.from_dict(json.loads(record))
            generation.from_cache = True
            found[key] = generation
        return found

    def put_many(self, generations: Iterable[Generation]) -> int:
        rows = [
            (g.key, canonical_json({**g.to_dict(), "from_cache": False}), g.created_at)
            for g in generations
            if g.ok
        ]
        with self._db:  # one transaction per batch: all or nothing
            self._db.executemany("INSERT OR REPLACE INTO generations (key, record, created_at) VALUES (?, ?, ?)", rows)
        return len(rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def merge_from(self, source: Path) -> MergeCounts:
        """Add ``source``'s rows whose keys this cache lacks, in one transaction (all or nothing)."""
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"no cache file at {source}")
        if source.resolve() == self.path.resolve():
            raise ValueError(f"cannot merge {source} into itself")
        other = sqlite3.connect(source, timeout=60)
        try:
            rows = other.execute("SELECT key, record, created_at FROM generations").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{source} is not a generation cache: {exc}") from exc
        finally:
            other.close()
        counts = MergeCounts(rows=len(rows))
        held = {key: record for key, record in select_records(self._db, "generations", (row[0] for row in rows))}
        fresh = [row for row in rows if row[0] not in held]
        counts.added, counts.present = len(fresh), len(rows) - len(fresh)
        counts.differing = sum(1 for key, record, _ in rows
                               if key in held and json.loads(held[key]).get("text") != json.loads(record).get("text"))
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO generations (key, record, created_at) VALUES (?, ?, ?)", fresh)
        return counts

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "GenerationCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
