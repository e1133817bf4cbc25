"""``harness cache merge``: fold generation cache files (one per rank, ``--cache-per-rank``) into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from harness.cli.errors import CommandError

HELP = "generation cache upkeep: merge per-rank cache files into the cache"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness cache", description=HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    merge = actions.add_parser("merge", help="add the rows of cache files whose keys the cache lacks (idempotent)")
    merge.add_argument("sources", nargs="*", type=Path, metavar="FILE_OR_DIR",
                       help="cache files, or folders of *.sqlite files (default: results/cache/shards/)")
    merge.add_argument("--results-dir", type=Path, default=None, help="the results folder whose cache receives the rows")
    merge.add_argument("--into", type=Path, default=None, metavar="FILE",
                       help="the cache file to merge into (default: <results>/cache/generations.sqlite)")
    return parser


def main(argv: Sequence[str]) -> int:
    from harness.core import paths
    from harness.core.cache import GenerationCache
    from harness.pipeline.evaluate import generation_cache_path, rank_cache_dir

    args = build_parser().parse_args(list(argv))
    results = args.results_dir or paths.results_dir()
    target = args.into or generation_cache_path(results)
    sources = args.sources or [rank_cache_dir(results)]
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(source.glob("*.sqlite"))
        elif source.is_file():
            files.append(source)
        else:
            raise CommandError(f"{source}: no such file or folder")
    if not files:
        print(f"nothing to merge in {', '.join(str(source) for source in sources)}")
        return 0
    with GenerationCache(target) as cache:
        before = len(cache)
        for path in files:
            counts = cache.merge_from(path)
            note = f", {counts.differing} of them with another answer text (the cache's kept)" if counts.differing else ""
            print(f"{path}: {counts.rows} rows, {counts.added} added, {counts.present} already present{note}")
        print(f"{target}: {before} -> {len(cache)} rows")
    return 0
