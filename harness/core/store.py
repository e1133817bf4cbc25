"""Stored run outputs: one folder per run under ``results/runs/<run_id>/``.

    run.json            RunInfo: model, defense, tasks, fingerprints, settings, counts, provenance
    samples.jsonl       Sample records, in evaluation order
    generations.jsonl   Generation records (errors included, ``error`` set)
    judgements.jsonl    Judgement records: one per (judge, sample); several judges may have scored a run
    metrics.jsonl       MetricRow records (also written as metrics.csv for pandas/spreadsheets); with
                        several judges, one set of rows per judge (``MetricRow.judge``), the task's
                        headline judge first

Each file is the stored output of one stage, so later stages (judging, metrics, reports) can be re-run
from it without the model.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence, TypeVar

from harness.core.records import Generation, JsonRecord, Judgement, MetricRow, Sample

R = TypeVar("R", bound=JsonRecord)


# run.json's layout: 1 = settings as a free dict (runs before the typed RunSettings); 2 = RunSettings.
# Older files load unchanged: unknown keys are ignored and a missing field takes its default.
RUN_FORMAT_VERSION = 2


@dataclass
class RunSettings(JsonRecord):
    """How a run was made, beyond model, defense and tasks."""

    limit: int | str | None = None  # None: each task's default subset; "all"; or the first N
    dtype: str = ""
    device: str = ""
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> GenerationSettings dict
    task_errors: dict[str, str] = field(default_factory=dict)  # tasks that could not be loaded, with why
    task_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> --task-arg overrides
    judge_arg_names: dict[str, list[str]] = field(default_factory=dict)  # judge -> option names (never values)
    task_limits: dict[str, int | str] = field(default_factory=dict)  # tasks with their own --limit
    data_revisions: dict[str, str] = field(default_factory=dict)  # task -> pinned dataset revision
    config: dict[str, Any] = field(default_factory=dict)  # the resolved run config (harness.pipeline.config)

    def max_new_tokens(self, task: str) -> int | None:
        """The token limit ``task`` was generated with, or None when the run does not record it (the
        ``truncated`` answer-quality flag needs it)."""
        value = self.generation.get(task, {}).get("max_new_tokens")
        return int(value) if value is not None else None


@dataclass
class RunInfo(JsonRecord):
    run_id: str
    model: str
    defense: str
    tasks: dict[str, str]  # task name -> version
    model_fingerprint: dict[str, Any] = field(default_factory=dict)
    defense_fingerprint: dict[str, Any] = field(default_factory=dict)
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> headline judge's fingerprint
    settings: RunSettings = field(default_factory=RunSettings)
    counts: dict[str, int] = field(default_factory=dict)  # samples, cache_hits, generated, errors
    model_loaded: bool = False
    started_at: str = ""
    finished_at: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)  # versions, git commit, host
    # task -> judge name -> {"fingerprint", "primary" (the headline judge), "judged_at", and the judging
    # stage's counts: verdicts, cache_hits, judged, errors, undecided, not_judged}. Every judge whose
    # verdicts are stored has an entry; ``harness judge`` adds them.
    judging: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    format_version: int = 1  # a run.json without the field is a version-1 file; new runs write RUN_FORMAT_VERSION

    _nested: ClassVar[dict[str, type]] = {"settings": RunSettings}

    def __post_init__(self) -> None:
        if isinstance(self.settings, dict):  # written by hand (tests, scripts) as a plain mapping
            self.settings = RunSettings.from_dict(self.settings)


@dataclass
class RunResult:
    """Everything one run stored, read back as typed records."""

    path: Path
    info: RunInfo
    samples: list[Sample]
    generations: list[Generation]
    judgements: list[Judgement]
    metrics: list[MetricRow]


def runs_dir(results_dir: Path) -> Path:
    return results_dir / "runs"


def write_jsonl(path: Path, records: Iterable[JsonRecord]) -> None:
    """Write atomically (tmp + rename) so a crash never leaves a half-written stage file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path, record_type: type[R]) -> list[R]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [record_type.from_dict(json.loads(line)) for line in handle if line.strip()]


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_metrics_csv(path: Path, rows: Sequence[MetricRow]) -> None:
    fields = list(MetricRow.__dataclass_fields__)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_dict())
    os.replace(tmp, path)


def save_run(
    run_dir: Path,
    info: RunInfo,
    samples: Sequence[Sample],
    generations: Sequence[Generation],
    judgements: Sequence[Judgement],
    metrics: Sequence[MetricRow],
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(run_dir / "samples.jsonl", samples)
    write_jsonl(run_dir / "generations.jsonl", generations)
    write_jsonl(run_dir / "judgements.jsonl", judgements)
    write_jsonl(run_dir / "metrics.jsonl", metrics)
    write_metrics_csv(run_dir / "metrics.csv", metrics)
    # run.json last: its presence marks a complete run
    write_json(run_dir / "run.json", info.to_dict())


def load_run(run_dir: Path) -> RunResult:
    info = RunInfo.from_dict(json.loads((run_dir / "run.json").read_text(encoding="utf-8")))
    return RunResult(
        path=run_dir,
        info=info,
        samples=read_jsonl(run_dir / "samples.jsonl", Sample),
        generations=read_jsonl(run_dir / "generations.jsonl", Generation),
        judgements=read_jsonl(run_dir / "judgements.jsonl", Judgement),
        metrics=read_jsonl(run_dir / "metrics.jsonl", MetricRow),
    )


def list_runs(results_dir: Path) -> list[Path]:
    """Complete runs (those with run.json), oldest first by run id (ids start with a UTC timestamp)."""
    base = runs_dir(results_dir)
    if not base.is_dir():
        return []
    return sorted(path for path in base.iterdir() if (path / "run.json").is_file())


def latest_runs(results_dir: Path) -> list[RunResult]:
    """The newest run for each (model, defense, task): what a comparison report shows.

    A run covers several tasks; a task's rows come from the newest run that evaluated it for that
    (model, defense). Returned runs are filtered to those rows' tasks.
    """
    chosen: dict[tuple[str, str, str], Path] = {}
    for path in list_runs(results_dir):
        info = RunInfo.from_dict(json.loads((path / "run.json").read_text(encoding="utf-8")))
        for task in info.tasks:
            chosen[(info.model, info.defense, task)] = path  # later runs overwrite earlier ones
    by_run: dict[Path, set[str]] = {}
    for (_, _, task), path in chosen.items():
        by_run.setdefault(path, set()).add(task)
    results = []
    for path in sorted(by_run):
        run = load_run(path)
        keep = by_run[path]
        results.append(
            RunResult(
                path=run.path,
                info=run.info,
                samples=[s for s in run.samples if s.task in keep],
                generations=[g for g in run.generations if g.task in keep],
                judgements=[j for j in run.judgements if j.task in keep],
                metrics=[m for m in run.metrics if m.task in keep],
            )
        )
    return results


# ---------------------------------------------------------------------------------------------------
# several judges in one run


def primary_judge(run: RunResult, task: str) -> str | None:
    """The judge whose metric rows headline ``task`` in ``run``: the one run.json marks primary (the
    judge ``harness eval`` used), else (runs stored before ``judging`` existed) the judge of the task's
    first metric row; None for a task scored without a judge."""
    for name, entry in run.info.judging.get(task, {}).items():
        if entry.get("primary"):
            return name
    for row in run.metrics:
        if row.task == task:
            return row.judge
    return None


def judge_order(run: RunResult, task: str) -> list[str]:
    """Judges with verdicts or metric rows for ``task``: the headline judge first, then alphabetically."""
    names = {j.judge for j in run.judgements if j.task == task}
    names |= {row.judge for row in run.metrics if row.task == task and row.judge is not None}
    names |= set(run.info.judging.get(task, {}))
    primary = primary_judge(run, task)
    return sorted(names, key=lambda name: (name != primary, name))


def headline_metric_rows(run: RunResult) -> list[MetricRow]:
    """The metric rows of each task's headline judge only (rows of other judges are left out), so that
    tables never mix judges: what reports and comparisons should show for a run."""
    primaries: dict[str, str | None] = {}
    rows = []
    for row in run.metrics:
        if row.task not in primaries:
            primaries[row.task] = primary_judge(run, row.task)
        if row.judge == primaries[row.task]:
            rows.append(row)
    return rows
