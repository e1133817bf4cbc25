"""Shared fixtures: every test gets private results/reports/cache folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point results and reports at tmp folders (the model/data cache stays shared: it is derived data)."""
    results = tmp_path / "results"
    reports = tmp_path / "reports"
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(results))
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(reports))
    return results, reports


_LOADED_TINY: dict = {}


@pytest.fixture
def reuse_loaded_models(monkeypatch):
    """Load each tiny model once per test session (defenses leave the adapter as they found it)."""
    import harness.models.tiny as tiny

    real = tiny.build_tiny

    def cached(spec, dtype="auto", device="auto"):
        key = (spec.name, dtype, device)
        if key not in _LOADED_TINY:
            _LOADED_TINY[key] = real(spec, dtype=dtype, device=device)
        return _LOADED_TINY[key]

    monkeypatch.setattr(tiny, "build_tiny", cached)
