"""Command line: ``harness list|eval|judge|report|export|compare|calibrate|build|cache``.

A thin shell: one module per command (``build_parser()`` and ``main(argv) -> exit code``), shared
option parsing in :mod:`harness.cli.options`, and one mapping from errors to exit codes in
:mod:`harness.cli.errors`. Nothing else in the project imports this package. Command modules import
their heavy dependencies inside ``main``, so ``harness --help`` and ``harness list`` stay instant.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from typing import Sequence

# command -> (module, one-line help). The help is repeated here so that `harness --help` imports no
# command module; a test checks each equals its module's HELP.
COMMANDS = {
    "list": ("harness.cli.listing", "print registered names, one per line"),
    "eval": ("harness.cli.evaluate", "run a model under a defense on tasks, then write the report"),
    "judge": ("harness.cli.judge", "re-score a stored run with other judges (cached; no model), then re-render reports"),
    "report": ("harness.cli.report", "re-render reports from stored results (--latex PATH for tables only)"),
    "export": ("harness.cli.export", "write a stored run in another tool's layout (lm-eval's results and samples files)"),
    "compare": ("harness.cli.compare", "regression gate: compare two result sets, exit 1 on a significant regression"),
    "calibrate": ("harness.cli.calibrate", "fit a defense's artifacts (directions, probers, prototypes) for a model"),
    "build": ("harness.cli.build", "build an offline model (smol-llava) into the local cache"),
    "cache": ("harness.cli.cache", "generation cache upkeep: merge per-rank cache files into the cache"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, for ``harness --help``: each command parses its own arguments."""
    parser = argparse.ArgumentParser(prog="harness", description="Evaluate inference-time safety defenses of multimodal LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        # httpx logs one INFO line per request (an LLM judge makes thousands); the SDK's retry notices,
        # the judging stage's counts and errors stay visible
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli.errors import EXIT_BAD_INPUT, run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False  # the global -v/--verbose may precede any command
    while argv and argv[0] in ("-v", "--verbose"):
        verbose, argv = True, argv[1:]
    if not argv or argv[0].startswith("-"):
        return run_command(lambda rest: build_parser().parse_args(rest) and 0, argv)
    if argv[0] not in COMMANDS:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=2)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"error: unknown command {argv[0]!r}.{hint} Commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    module = importlib.import_module(COMMANDS[argv[0]][0])
    setup_logging(verbose)
    return run_command(module.main, argv[1:])
