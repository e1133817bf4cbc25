"""``harness list models|tasks|defenses|judges``: registered names, one per line (no torch import).

Models also show the dtype ``--dtype auto`` loads them in (their registered default)."""

from __future__ import annotations

import argparse
from typing import Sequence

HELP = "print registered names, one per line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness list", description=HELP)
    parser.add_argument("kind", choices=["models", "tasks", "defenses", "judges"])
    parser.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="also list the task files of this folder (repeatable)")
    return parser


def main(argv: Sequence[str]) -> int:
    from harness import registries

    args = build_parser().parse_args(list(argv))
    registries.include_task_folders(args.include_path)
    registry = registries.REGISTRIES[args.kind]()
    width = max((len(entry.name) for entry in registry), default=0)
    for entry in registry:
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        dtype = f"{entry.load().default_dtype:<8}  " if args.kind == "models" else ""
        print(f"{entry.name:<{width}}  {dtype}{entry.help}{aliases}".rstrip())
    return 0
