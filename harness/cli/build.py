"""``harness build smol-llava [--force]``: build the offline model into the local cache."""

from __future__ import annotations

import argparse
from typing import Sequence

HELP = "build an offline model (smol-llava) into the local cache"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness build", description=HELP)
    parser.add_argument("name", choices=["smol-llava"])
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    return parser


def main(argv: Sequence[str]) -> int:
    from harness.models.smol_llava import build_smol_llava

    args = build_parser().parse_args(list(argv))
    print(build_smol_llava(force=args.force))
    return 0
