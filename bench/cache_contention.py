"""The generation cache under concurrent writers (issue 29): N processes commit batches to one SQLite
file at once, as the ranks of a launch on one node do. Hand-run; nothing here is a test.

    .venv/bin/python bench/cache_contention.py [--writers 1,2,4,8] [--batches 200] [--batch-size 8] [--text-chars 400]

Each writer commits ``--batches`` batches of ``--batch-size`` generations (``put_many``, one transaction
each) as fast as it can, and reads a batch of keys back between commits (rank 0 reads while ranks
write). Printed: rows expected and found (every committed row must be there, none twice), total
commits/s, and the median / worst commit time a writer saw (the wait for SQLite's write lock). A rank's
real commit rate is one per generated batch (seconds apart on a CPU, about 0.1-1 s apart on a GPU),
far below what this measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def writer(path: str, rank: int, batches: int, batch_size: int, text_chars: int, start, queue) -> None:
    from harness.core.cache import GenerationCache
    from harness.core.records import Generation

    waits = []
    with GenerationCache(Path(path)) as cache:
        start.wait()
        for index in range(batches):
            batch = [Generation(key=f"r{rank}-b{index}-{row}", task="t", sample_id=f"{index}-{row}", model="m", defense="none",
                                text="x" * text_chars, created_at="2026-01-01T00:00:00+00:00") for row in range(batch_size)]
            began = time.perf_counter()
            cache.put_many(batch)
            waits.append(time.perf_counter() - began)
            cache.get_many(g.key for g in batch)
    queue.put(waits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--text-chars", type=int, default=400)
    args = parser.parse_args(argv)
    from harness.core.cache import GenerationCache

    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print("| writers | rows expected | rows found | commits/s | median commit ms | worst commit ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    context = multiprocessing.get_context("spawn")
    for count in [int(n) for n in args.writers.split(",")]:
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "generations.sqlite")
            GenerationCache(Path(path)).close()
            start, queue = context.Event(), context.Queue()
            processes = [context.Process(target=writer, args=(path, rank, args.batches, args.batch_size, args.text_chars, start, queue))
                         for rank in range(count)]
            for process in processes:
                process.start()
            time.sleep(1.0)  # every writer has opened the file
            began = time.perf_counter()
            start.set()
            waits = [wait for _ in processes for wait in queue.get()]
            wall = time.perf_counter() - began
            for process in processes:
                process.join()
            with GenerationCache(Path(path)) as cache:
                found = len(cache)
            expected = count * args.batches * args.batch_size
            print(f"| {count} | {expected} | {found} | {len(waits) / wall:.0f} | {statistics.median(waits) * 1000:.1f} "
                  f"| {max(waits) * 1000:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
