"""Report: render the comparison report over the newest stored run per (model, defense, task)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from harness.core.store import latest_runs, load_run

log = logging.getLogger("harness.pipeline.report")


def write_reports(results_root: Path, out_dir: Path, run_id: str | None = None) -> tuple[Path, Path]:
    """Render the comparison report over the newest stored run per (model, defense, task)."""
    from harness.report import render_report

    runs = latest_runs(results_root)
    html, tex = render_report(runs, out_dir, "latest")
    if run_id:
        shutil.copyfile(html, out_dir / f"{run_id}.html")
        shutil.copyfile(tex, out_dir / f"{run_id}.tex")
    log.info("report written to %s and %s", html, tex)
    return html, tex


def rerender_reports(run_dir: Path, reports_root: Path) -> tuple[Path, Path]:
    """As after ``harness eval``: the comparison report over the run's results folder (when the run lives
    in ``<results>/runs/``), else a report of this run alone; a copy named after the run either way."""
    from harness.report import render_report

    run_dir = Path(run_dir)
    if run_dir.parent.name == "runs":
        return write_reports(run_dir.parent.parent, reports_root, run_dir.name)
    html, tex = render_report([load_run(run_dir)], reports_root, "latest")
    shutil.copyfile(html, reports_root / f"{run_dir.name}.html")
    shutil.copyfile(tex, reports_root / f"{run_dir.name}.tex")
    return html, tex
