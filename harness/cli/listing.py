"""``harness list models|tasks|defenses|judges``: registered names, one per line (no torch import)."""

from __future__ import annotations

import argparse
from typing import Sequence

HELP = "print registered names, one per line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness list", description=HELP)
    parser.add_argument("kind", choices=["models", "tasks", "defenses", "judges"])
    return parser


def main(argv: Sequence[str]) -> int:
    from harness import registries

    args = build_parser().parse_args(list(argv))
    registry = registries.REGISTRIES[args.kind]()
    width = max((len(entry.name) for entry in registry), default=0)
    for entry in registry:
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        print(f"{entry.name:<{width}}  {entry.help}{aliases}".rstrip())
    return 0
