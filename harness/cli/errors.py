"""One mapping from errors to exit codes for every command.

0: done; 1: done, but the command has something to flag (a regression, a task that could not run, a
judge that raised on some items); 2: bad input (unknown name, bad option, missing file), reported as
one ``error:`` line without a traceback; 3: a multi-process launch failed (a rank died or hung, or
the ranks disagree), also one ``error:`` line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

EXIT_OK, EXIT_FLAGGED, EXIT_BAD_INPUT, EXIT_PEER_FAILED = 0, 1, 2, 3


class CommandError(ValueError):
    """Bad input found by a command itself (its message is shown as is)."""


def run_command(command: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run ``command(argv)`` and map what it raises to an exit code."""
    from harness.core.registry import UnknownNameError
    from harness.pipeline.distributed import DistributedError

    try:
        return int(command(argv))
    except SystemExit as exc:  # argparse: 0 after --help, 2 on a bad argument (it printed why)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PEER_FAILED
    except (UnknownNameError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. a Hub id that does not exist, or no network: no traceback for that
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
