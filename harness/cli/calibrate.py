"""``harness calibrate``: fit a defense's artifacts (directions, probers, prototypes) for a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from harness.cli.options import DEFAULT_MODEL, add_model_options, parse_params

HELP = "fit a defense's artifacts (directions, probers, prototypes) for a model"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness calibrate",
        description="Fit an activation-steering defense on a model (directions, probers, thresholds) and "
        "store it under the calibration folder.",
    )
    parser.add_argument("--defense", required=True, help="refusal-direction, cast, astra, autosteer or ras")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registered model name, HF id or local folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompt pairs (default: all)")
    add_model_options(parser)
    parser.add_argument("--data", default="builtin", help="'builtin' (shipped prompts) or 'vlsafe:DIR'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="calibration-time option of the defense, e.g. autosteer's assistant_marker=true "
                        "(repeatable; stored in the artifact and used at inference)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the calibration folder)")
    return parser


def main(argv: Sequence[str]) -> int:
    from harness.cli.errors import CommandError
    from harness.defense_api.calibration import MANIFEST_FILE
    from harness.pipeline.calibrate import calibrate

    args = build_parser().parse_args(list(argv))
    if args.limit is not None and args.limit < 2:
        raise CommandError("--limit must be at least 2")
    folder = calibrate(args.defense, args.model, limit=args.limit, dtype=args.dtype, device=args.device,
                       out_dir=args.out, data=args.data, seed=args.seed,
                       options=parse_params(args.calibration_arg, flag="--calibration-arg"))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    print(folder)
    print(json.dumps(manifest["fit"], indent=2, sort_keys=True))
    return 0
