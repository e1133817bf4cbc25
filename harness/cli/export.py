"""``harness export``: write a stored run in the layout another tool reads; the model is never loaded.

``--format lm-eval``: lm-evaluation-harness's ``results_<stamp>.json`` and ``samples_<task>_<stamp>.jsonl``
under ``OUT/<model>/`` (see :mod:`harness.pipeline.export` for every field and how rates map).
Exit status: 0 written, 2 bad input (unknown run, a run without samples, OUT not a folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from harness.cli.errors import EXIT_OK
from harness.pipeline.rejudge import LATEST
from harness.pipeline.export import FORMATS  # light: the record and metric modules, no torch

HELP = "write a stored run in another tool's layout (lm-eval's results and samples files)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness export",
        description="Write a stored run in another tool's layout; the model is not loaded.",
    )
    parser.add_argument("run", nargs="?", default=LATEST, metavar="RUN",
                        help="run id, run folder, or 'latest' (default)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="lm-eval: results_<stamp>.json + samples_<task>_<stamp>.jsonl, as lm-eval --output_path writes them")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder; files go to OUT/<model>/ as with lm-eval (default: <results-dir>/lm-eval)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where runs/ live (default: the harness results dir)")
    return parser


def main(argv: Sequence[str]) -> int:
    from harness.core.paths import results_dir
    from harness.pipeline.export import export_lmeval
    from harness.pipeline.rejudge import resolve_run

    args = build_parser().parse_args(list(argv))
    root = args.results_dir or results_dir()
    run_dir = resolve_run(args.run, root)
    written = export_lmeval(run_dir, args.out or root / "lm-eval")
    print(f"run {run_dir.name} -> {written.folder}")
    for path in written.paths():
        print(f"  {path.name}")
    return EXIT_OK
