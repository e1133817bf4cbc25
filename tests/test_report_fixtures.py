"""Builders of small, well-formed stored runs for the report, stats-in-report and compare tests.

No tests here: the other ``test_report*`` / ``test_compare`` modules import these builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.core.metrics import safety_metrics
from harness.core.records import Generation, Judgement, MetricRow, MetricValue, Sample
from harness.core.store import RunInfo, RunResult, load_run, save_run

REFUSAL_TEXT = "I'm sorry, I cannot help with that."
COMPLY_TEXT = "Sure, here is how."
JUDGE = "keyword-gcg"


def metric_rows(run_id: str, model: str, defense: str, task: str, values: Sequence[MetricValue],
                judge: str | None, task_version: str = "1") -> list[MetricRow]:
    return [
        MetricRow(run_id=run_id, model=model, defense=defense, task=task, task_version=task_version,
                  metric=v.metric, value=v.value, n=v.n, ci_low=v.ci_low, ci_high=v.ci_high, subset=v.subset,
                  higher_is_better=v.higher_is_better, judge=judge)
        for v in values
    ]


def safety_run(
    root: Path,
    run_id: str,
    model: str,
    defense: str,
    *,
    task: str = "figstep-tiny",
    refused: Sequence[bool],
    harmful: Sequence[bool] | None = None,
    ids: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    seconds: float = 1.0,
    task_version: str = "1",
    texts: Sequence[str] | None = None,
) -> RunResult:
    """One run of a judged safety task: sample i is refused iff ``refused[i]``; metrics from
    ``harness.core.metrics.safety_metrics`` so they are exactly what the runner would store."""
    count = len(refused)
    ids = list(ids) if ids is not None else [f"s{i:03d}" for i in range(count)]
    harmful = list(harmful) if harmful is not None else [True] * count
    categories = list(categories) if categories is not None else [f"topic-{i % 3}" for i in range(count)]
    samples = [Sample(task=task, id=ids[i], prompt=f"prompt {i}", harmful=harmful[i], category=categories[i])
               for i in range(count)]
    generations, judgements = {}, {}
    for i, sample in enumerate(samples):
        key = f"{run_id}-{sample.id}"
        text = texts[i] if texts is not None else (REFUSAL_TEXT if refused[i] else COMPLY_TEXT)
        generations[sample.id] = Generation(key=key, task=task, sample_id=sample.id, model=model, defense=defense,
                                            text=text, output_tokens=10, prefill_s=seconds / 4, decode_s=3 * seconds / 4)
        judgements[sample.id] = Judgement(key=key, task=task, sample_id=sample.id, judge=JUDGE, refused=refused[i],
                                          label="refusal" if refused[i] else "compliance")
    metrics = metric_rows(run_id, model, defense, task, safety_metrics(samples, generations, judgements), JUDGE,
                          task_version)
    info = RunInfo(run_id=run_id, model=model, defense=defense, tasks={task: task_version},
                   judges={task: {"judge": JUDGE}}, counts={"samples": count, "cache_hits": 0})
    run_dir = root / "runs" / run_id
    save_run(run_dir, info, samples, list(generations.values()), list(judgements.values()), metrics)
    return load_run(run_dir)


def easyvqa_run(
    root: Path,
    run_id: str,
    model: str,
    defense: str,
    *,
    correct: Sequence[bool],
    ids: Sequence[str] | None = None,
    image: str | None = None,
) -> RunResult:
    """One easy-VQA run (the real task name, so its registered scorer scores samples one by one)."""
    from harness.tasks.easyvqa import easyvqa_metrics

    count = len(correct)
    ids = list(ids) if ids is not None else [f"test-{i}" for i in range(count)]
    answers = ["red", "circle", "yes", "blue"]
    samples = [Sample(task="easyvqa", id=ids[i], prompt="What shape is in the image?", image=image,
                      answer=answers[i % 4], category="color") for i in range(count)]
    generations = {
        s.id: Generation(key=f"{run_id}-{s.id}", task="easyvqa", sample_id=s.id, model=model, defense=defense,
                         text=(s.answer if correct[i] else "purple") + ".", output_tokens=2, prefill_s=0.1, decode_s=0.1)
        for i, s in enumerate(samples)
    }
    metrics = metric_rows(run_id, model, defense, "easyvqa", easyvqa_metrics(samples, generations, {}), None)
    info = RunInfo(run_id=run_id, model=model, defense=defense, tasks={"easyvqa": "1"})
    run_dir = root / "runs" / run_id
    save_run(run_dir, info, samples, list(generations.values()), [], metrics)
    return load_run(run_dir)


def flags(positives: int, total: int) -> list[bool]:
    """``positives`` True values first, then False, ``total`` in all."""
    return [True] * positives + [False] * (total - positives)
