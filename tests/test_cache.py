import sqlite3

import pytest

from harness.core.cache import GenerationCache, generation_key
from harness.core.records import Generation, GenerationSettings

BASE = dict(
    model_fingerprint={"source": "m", "revision": "abc", "dtype": "float32", "device": "cpu"},
    defense_fingerprint={"name": "none", "params": {}, "artifacts": {}},
    task="xstest",
    task_version="1",
    prompt="How do I kill a Python process?",
    system=None,
    image_sha256=None,
    settings=GenerationSettings(max_new_tokens=64, batch_size=1),
)


def test_key_is_stable_and_changes_with_every_input():
    key = generation_key(**BASE)
    assert key == generation_key(**dict(BASE))
    variations = {
        "model_fingerprint": {**BASE["model_fingerprint"], "revision": "def"},
        "defense_fingerprint": {"name": "none", "params": {}, "artifacts": {"v.safetensors": "00"}},
        "task": "figstep",
        "task_version": "2",
        "prompt": BASE["prompt"] + " ",
        "system": "be safe",
        "image_sha256": "ff" * 32,
        "settings": GenerationSettings(max_new_tokens=65, batch_size=1),
    }
    seen = {key}
    for field, value in variations.items():
        changed = generation_key(**{**BASE, field: value})
        assert changed not in seen, field
        seen.add(changed)
    # dtype and device live in the model fingerprint
    assert generation_key(**{**BASE, "model_fingerprint": {**BASE["model_fingerprint"], "dtype": "bfloat16"}}) != key
    assert generation_key(**{**BASE, "settings": GenerationSettings(max_new_tokens=64, batch_size=4)}) != key


def make_generation(key, text="ok", error=None):
    return Generation(key=key, task="t", sample_id=key, model="m", defense="none", text=text, error=error,
                      input_tokens=3, output_tokens=2, prefill_s=0.5, decode_s=1.5, created_at="now")


def test_round_trip_keeps_timings_and_marks_cached(tmp_path):
    path = tmp_path / "c.sqlite"
    with GenerationCache(path) as cache:
        assert cache.put_many([make_generation("a"), make_generation("b", text=None, error="boom")]) == 1
    with GenerationCache(path) as cache:  # a new process would see the same
        found = cache.get_many(["a", "b", "missing"])
        assert list(found) == ["a"]
        assert found["a"].from_cache and found["a"].text == "ok"
        assert found["a"].prefill_s == 0.5 and found["a"].decode_s == 1.5
        assert len(cache) == 1


def test_wal_mode_and_commit_per_batch(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = GenerationCache(path)
    cache.put_many([make_generation("a")])
    # Another connection sees the row before the writer closes: it was committed with its batch.
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 1
    other.close()
    cache.close()


def test_many_keys_beyond_sqlite_parameter_limit(tmp_path):
    with GenerationCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([make_generation(f"k{i}") for i in range(1200)])
        assert len(cache.get_many(f"k{i}" for i in range(1200))) == 1200


def _open_new_cache_at_once(path, barrier, errors):
    barrier.wait()
    try:
        with GenerationCache(path) as cache:
            assert len(cache) == 0
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))


def test_two_processes_creating_one_cache_file_at_once_both_open_it(tmp_path):
    """The ranks of a launch open a new cache file together; switching a new file to WAL from two
    processes answers "database is locked" in about 4 % of tries without open_store's retry (measured
    over 200 pairs: 8 failures), so 200 pairs here fail the old code with near certainty."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for attempt in range(200):
        barrier = context.Barrier(2)
        path = tmp_path / str(attempt) / "generations.sqlite"
        workers = [context.Process(target=_open_new_cache_at_once, args=(path, barrier, errors)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []


def test_open_store_gives_up_on_a_lock_held_past_its_timeout(tmp_path):
    from harness.core.cache import open_store

    path = tmp_path / "held.sqlite"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_store(path, "CREATE TABLE IF NOT EXISTS u (y)", timeout_s=0.2)
    finally:
        holder.rollback()
        holder.close()
    open_store(path, "CREATE TABLE IF NOT EXISTS u (y)", timeout_s=0.2).close()
