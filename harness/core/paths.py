"""Where things live on disk. Everything is overridable by environment so tests can isolate."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    """Run outputs and the generation cache (git-ignored)."""
    return Path(os.environ.get("HARNESS_RESULTS_DIR", PROJECT_ROOT / "results"))


def reports_dir() -> Path:
    """Rendered reports (git-ignored)."""
    return Path(os.environ.get("HARNESS_REPORTS_DIR", PROJECT_ROOT / "reports"))


def cache_dir() -> Path:
    """Derived files that can be rebuilt: rendered task images, converted model weights."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "mm-safety-harness"))


def calibration_dir() -> Path:
    """Fitted defense artifacts (safetensors + JSON manifest), one folder per (defense, model)."""
    return Path(os.environ.get("HARNESS_CALIBRATION_DIR", results_dir() / "calibration"))
