"""Option parsing shared by the commands: limits, KEY=VALUE pairs, model loading options."""

from __future__ import annotations

import argparse

from harness.core.options import (  # noqa: F401 - the commands' option parsers, in one place
    RAW_STRING_OPTIONS,
    parse_limit,
    parse_option_value,
    parse_params,
    parse_scoped,
)
from harness.pipeline.defaults import DEFAULT_DEFENSE, DEFAULT_MODEL, OFFLINE_SUITE  # noqa: F401

DTYPES = ["auto", "float32", "bfloat16", "float16"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def split_names(text: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--dtype and --device, as every command that loads a model takes them."""
    from harness.models.spec import DEVICE_HELP, DTYPE_HELP

    parser.add_argument("--dtype", default="auto", choices=DTYPES, help=DTYPE_HELP)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
