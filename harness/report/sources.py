"""Where reports and comparisons read stored runs from."""

from __future__ import annotations

from pathlib import Path

from harness.core.store import RunResult, latest_runs, load_run


def load_result_set(path: Path) -> list[RunResult]:
    """Runs of a results directory (the newest per model, defense and task) or of one run directory.

    Accepts ``results/`` (holding ``runs/``), ``results/runs/`` itself, or ``results/runs/<run_id>/``.
    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` when no complete run is found.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    if (path / "run.json").is_file():
        return [load_run(path)]
    if not (path / "runs").is_dir() and path.name == "runs":
        path = path.parent
    runs = latest_runs(path)
    if not runs:
        raise ValueError(f"{path} holds no complete run (expected runs/<run_id>/run.json or run.json)")
    return runs
