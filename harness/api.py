"""The Python API: ``harness.evaluate(...)``, the library form of ``harness eval``.

    import harness

    results = harness.evaluate(model="smol-llava", defenses=["none", "self-reminder"],
                               tasks=["xstest", {"name": "figstep-tiny", "limit": 10}], limit=20)
    frame = results.to_pandas()   # one row per model x defense x task x metric x subset

It takes the keys of a run config (:mod:`harness.pipeline.config`: an unknown key is an error that
names it) and runs exactly what the command runs: cached generations, the model loaded at most once,
one stored run per defense.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import pandas

    from harness.core.store import RunResult

# The columns of Evaluation.to_pandas(), in order.
COLUMNS = ("model", "defense", "task", "task_version", "metric", "subset", "value", "ci_low", "ci_high", "n",
           "higher_is_better", "judge", "run_id")


@dataclass
class Evaluation:
    """The stored runs of one evaluation, one per defense, in the order the defenses were given."""

    runs: list["RunResult"]

    def to_pandas(self) -> "pandas.DataFrame":
        """One row per model x defense x task x metric x subset, with the value (percent for rates), its
        95 % interval (None where the metric has none) and n."""
        import pandas

        rows = [
            {"model": run.info.model, "defense": run.info.defense, "task": row.task, "task_version": row.task_version,
             "metric": row.metric, "subset": row.subset, "value": row.value, "ci_low": row.ci_low,
             "ci_high": row.ci_high, "n": row.n, "higher_is_better": row.higher_is_better, "judge": row.judge,
             "run_id": run.info.run_id}
            for run in self.runs
            for row in run.metrics
        ]
        return pandas.DataFrame(rows, columns=list(COLUMNS))


def evaluate(
    model: str | None = None,
    defenses: Sequence[str | dict[str, Any]] | str | None = None,
    tasks: Sequence[str | dict[str, Any]] | str | None = None,
    limit: int | str | None = None,
    *,
    results_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    progress: bool = False,
    write_report: bool = False,
    **settings: Any,
) -> Evaluation:
    """Evaluate ``model`` under each of ``defenses`` on ``tasks``. Other run-config keys (``dtype``,
    ``device``, ``generation``, ``judge``, ``judge_args``) go in ``settings``. Defaults as ``harness
    eval``'s: smol-llava, no defense, the offline suite, each task's default subset."""
    from harness.pipeline.config import RunConfig
    from harness.pipeline.evaluate import run_config

    given = {"model": model, "defenses": defenses, "tasks": tasks, "limit": limit}
    data = {key: value for key, value in {**given, **settings}.items() if value is not None}
    config = RunConfig.from_dict(data, where="harness.evaluate()")
    runs = run_config(config, results_dir=Path(results_dir) if results_dir else None,
                      reports_dir=Path(reports_dir) if reports_dir else None, progress=progress, write_report=write_report)
    return Evaluation(runs)
