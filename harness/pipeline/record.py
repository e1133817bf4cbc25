"""Record: what a run stores about itself (settings, provenance, id), and storing it."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
from typing import Any

from harness.core.version import __version__
from harness.core.paths import PROJECT_ROOT


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


PROVENANCE_PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "pillow", "jinja2")


def provenance(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, Any]:
    """Harness and Python versions, platform, package versions and the git commit of the checkout."""
    import importlib.metadata as metadata

    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit or None,
    }


def make_run_id(model: str, defense: str, tasks: list[str]) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(f"{model}|{defense}|{','.join(tasks)}".encode()).hexdigest()[:6]
    safe_model = model.replace("/", "_")
    return f"{stamp}-{safe_model}-{defense}-{digest}"
