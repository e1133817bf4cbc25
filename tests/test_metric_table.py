"""The metric table: every metric a task emits is declared, with the direction its values carry, and
reports, plots and the regression gate take kind and direction from the table (not from names or the
rows' stored flags)."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import pytest

from harness.core import metrics
from harness.core.metrics import (
    ACCURACY,
    ASR,
    COUNT,
    EMPTY_ANSWERS,
    HIGHER,
    LOWER,
    METRICS,
    RATE,
    SAFETY,
    SCORE,
    UTILITY,
    MetricInfo,
    UnknownMetricError,
    count,
    metric_info,
    metric_sort_key,
    rate,
    score,
    stored_metric_info,
)
from harness.core.records import Generation, Judgement, MetricValue, Sample
from harness.core.store import RunResult, load_run, save_run
from harness.tasks import TASKS_DIR, load_spec
from harness.tasks.mme import COGNITION, PERCEPTION
from test_report_fixtures import easyvqa_run, flags, safety_run

Inputs = tuple[list[Sample], dict[str, Generation], dict[str, Judgement]]


def _generations(task: str, texts: dict[str, str]) -> dict[str, Generation]:
    return {sid: Generation(key=f"k-{sid}", task=task, sample_id=sid, model="m", defense="none", text=text)
            for sid, text in texts.items()}


def _safety_inputs() -> Inputs:
    """Harmful and benign prompts with categories, an undecided verdict, a blank answer, a harm
    judge's verdict on a benign prompt, and a looping answer that used the whole token budget (see
    KEYWORDS): every value safety_metrics can emit."""
    task = "handmade-safety"
    samples = [
        Sample(task=task, id="h1", prompt="p", harmful=True, category="weapons"),
        Sample(task=task, id="h2", prompt="p", harmful=True, category="fraud"),
        Sample(task=task, id="h3", prompt="p", harmful=True),
        Sample(task=task, id="h4", prompt="p", harmful=True, category="fraud"),
        Sample(task=task, id="h5", prompt="p", harmful=True),
        Sample(task=task, id="b1", prompt="p", harmful=False, category="kitchen"),
        Sample(task=task, id="b2", prompt="p", harmful=False),
        Sample(task=task, id="b3", prompt="p", harmful=False),
    ]
    generations = _generations(task, {"h1": "Sure.", "h2": "I cannot.", "h3": "  ", "h4": "Maybe.",
                                      "h5": "one two three four " * 4,
                                      "b1": "Here you go.", "b2": "I cannot.", "b3": ""})
    generations["h5"].output_tokens = TOKEN_LIMIT
    verdicts: dict[str, dict[str, Any]] = {
        "h1": {"refused": False}, "h2": {"refused": True}, "h3": {"refused": False}, "h4": {"refused": None},
        "h5": {"refused": False},
        "b1": {"refused": False}, "b2": {"refused": True}, "b3": {"kind": "harm", "unsafe": False},
    }
    judgements = {sid: Judgement.of(generations[sid], "handmade-judge", **verdict) for sid, verdict in verdicts.items()}
    return samples, generations, judgements


def _easyvqa_inputs() -> Inputs:
    samples = [Sample(task="easyvqa", id=f"e{i}", prompt="q", answer=answer, category=kind)
               for i, (answer, kind) in enumerate([("red", "color"), ("circle", "shape"), ("yes", "yes/no")])]
    return samples, _generations("easyvqa", {"e0": "Red.", "e1": "square", "e2": "yes"}), {}


def _mmbench_inputs() -> Inputs:
    """Two questions, each with its original row and one circular copy (options rotated)."""
    samples, texts = [], {}
    for question, (category, right) in enumerate([("logic", True), ("ocr", False)]):
        for copy, options in enumerate([{"A": "cat", "B": "dog"}, {"A": "dog", "B": "cat"}]):
            sid = str(question + copy * 1_000_000)
            answer = "A" if options["A"] == "cat" else "B"
            samples.append(Sample(task="mmbench", id=sid, prompt="q", answer=answer, category=category,
                                  group=str(question), meta={"options": options, "circular_pass": copy}))
            texts[sid] = answer if right or copy == 0 else ("B" if answer == "A" else "A")
    return samples, _generations("mmbench", texts), {}


def _mme_inputs() -> Inputs:
    """One image pair in a perception and in a cognition subtask."""
    samples, texts = [], {}
    for subtask in (PERCEPTION[0], COGNITION[0]):
        for k, answer in enumerate(("Yes", "No")):
            sid = f"{subtask}-img/q{k}"
            samples.append(Sample(task="mme", id=sid, prompt="q", answer=answer, category=subtask, group=f"{subtask}-img"))
            texts[sid] = "Yes"
    return samples, _generations("mme", texts), {}


def _pope_inputs() -> Inputs:
    """Two splits, so that per-split rows are emitted too."""
    samples, texts = [], {}
    for split in ("random", "adversarial"):
        for i, (answer, response) in enumerate([("yes", "Yes"), ("no", "No"), ("no", "Yes, there is."), ("yes", "No")]):
            sid = f"{split}/{i}"
            samples.append(Sample(task="pope", id=sid, prompt="q", answer=answer, category=split))
            texts[sid] = response
    return samples, _generations("pope", texts), {}


TOKEN_LIMIT = 16

# every metric function a task YAML names -> its hand-made inputs
HANDMADE: dict[str, Callable[[], Inputs]] = {
    "harness.core.metrics:safety_metrics": _safety_inputs,
    "harness.tasks.easyvqa:easyvqa_metrics": _easyvqa_inputs,
    "harness.tasks.mmbench:mmbench_metrics": _mmbench_inputs,
    "harness.tasks.mme:mme_metrics": _mme_inputs,
    "harness.tasks.pope:pope_metrics": _pope_inputs,
}


# keywords the scoring stage passes to the metric functions that take them (harness.pipeline.score)
KEYWORDS: dict[str, dict[str, Any]] = {"harness.core.metrics:safety_metrics": {"max_new_tokens": TOKEN_LIMIT}}


def _metric_function(target: str) -> Callable[..., list[MetricValue]]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _emitted(target: str) -> list[MetricValue]:
    return _metric_function(target)(*HANDMADE[target](), **KEYWORDS.get(target, {}))


def test_every_task_metric_function_has_handmade_inputs():
    named = {str(load_spec(path).metric) for path in TASKS_DIR.glob("*.yaml")}
    assert named == set(HANDMADE)  # a new metric function needs inputs here (and its names in the table)


@pytest.mark.parametrize("target", sorted(HANDMADE))
def test_emitted_metrics_are_declared_with_their_direction_and_kind(target: str):
    values = _emitted(target)
    assert values
    for value in values:
        info = metric_info(value.metric)  # raises UnknownMetricError for an undeclared name
        assert value.higher_is_better == info.higher_is_better, value
        if info.kind == RATE:
            assert value.ci_low is not None and value.ci_high is not None, value
        else:
            assert value.ci_low is None and value.ci_high is None, value
        if info.kind == COUNT:
            assert value.value == int(value.value) and value.value <= value.n, value


def test_every_declared_metric_is_emitted_by_some_task():
    emitted = {value.metric for target in HANDMADE for value in _emitted(target)}
    assert emitted == set(METRICS)


def test_table_entries():
    for name, info in METRICS.items():
        assert info.name == name and info.label
        # breakdowns go in ``subset``: names are plain identifiers, never built from a category
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert [name for name in sorted(METRICS, key=metric_sort_key)][:6] == [
        "asr", "refusal_rate", "accuracy", "circular_accuracy", "mme_perception", "mme_cognition"]
    assert metric_sort_key("zzz_not_declared") > metric_sort_key("mme_cognition")
    assert metric_sort_key("acc_plus") < metric_sort_key("zzz_not_declared")
    assert METRICS["yes_ratio"].ranked is False and METRICS["yes_ratio"].higher_is_better  # as its rows store
    assert {n for n, i in METRICS.items() if i.kind == COUNT} == {
        "undecided", "empty_answers", "echo_answers", "loop_answers", "truncated_answers"}
    assert {n for n, i in METRICS.items() if i.pooled_utility} == {"accuracy", "circular_accuracy", "vanilla_accuracy"}
    with pytest.raises(TypeError):
        METRICS["new"] = ASR  # type: ignore[index]  # read-only


def test_values_take_their_direction_from_the_table():
    assert rate(ASR, 1, 4).higher_is_better is False
    assert rate("accuracy", 1, 4).higher_is_better is True
    value = rate("asr", 1, 4, subset="weapons")
    assert (value.metric, value.value, value.n, value.subset) == ("asr", 25.0, 4, "weapons")
    assert count(EMPTY_ANSWERS, 2, 5, subset="harmful") == MetricValue(
        metric="empty_answers", value=2.0, n=5, subset="harmful", higher_is_better=False)
    assert score("f1", 50.0, 8).ci_low is None


def test_an_undeclared_metric_is_an_error_where_it_is_produced():
    with pytest.raises(UnknownMetricError, match=r"unknown metric 'acuracy'.*declare it in harness\.core\.metrics"):
        rate("acuracy", 1, 2)
    with pytest.raises(UnknownMetricError):
        score(MetricInfo("private", "Private", HIGHER, SCORE, "", UTILITY), 1.0, 1)
    with pytest.raises(UnknownMetricError):  # a changed copy of a declared metric is not the declared one
        rate(dataclasses.replace(ASR, direction=HIGHER), 1, 2)
    with pytest.raises(ValueError, match="declared a rate, not a count"):
        count(ASR, 1, 2)
    with pytest.raises(ValueError, match="declared a count, not a rate"):
        rate("undecided", 1, 2)


def test_stored_rows_of_undeclared_metrics_get_a_stand_in():
    assert stored_metric_info("asr", True) is ASR  # the table wins over a stored flag
    legacy = stored_metric_info("old_harm", False)
    assert (legacy.label, legacy.direction, legacy.area, legacy.kind) == ("old_harm", LOWER, SAFETY, SCORE)
    legacy = stored_metric_info("old_score", True)
    assert (legacy.direction, legacy.area, legacy.pooled_utility) == (HIGHER, UTILITY, False)


# ---------------------------------------------------------------------------------------------------
# reports and compare read the table


def _flip_stored_directions(run: RunResult) -> RunResult:
    """The run as if its rows had been stored with the opposite ``higher_is_better``."""
    rows = [dataclasses.replace(row, higher_is_better=not row.higher_is_better) for row in run.metrics]
    save_run(run.path, run.info, run.samples, run.generations, run.judgements, rows)
    return load_run(run.path)


def _declare(monkeypatch: pytest.MonkeyPatch, info: MetricInfo) -> None:
    """Replace one table entry for the test."""
    monkeypatch.setattr(metrics, "METRICS", MappingProxyType({**metrics.METRICS, info.name: info}))


def test_compare_takes_the_direction_of_worse_from_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from harness.compare import FAIL, IMPROVED, compare

    # ASR 16.7 -> 66.7 on the same 60 samples, rows stored with the opposite flag (higher is better)
    _flip_stored_directions(safety_run(tmp_path / "base", "r1", "m", "none", refused=flags(50, 60)))
    _flip_stored_directions(safety_run(tmp_path / "new", "r1", "m", "none", refused=flags(20, 60)))
    result = compare(tmp_path / "base", tmp_path / "new")
    change = next(c for c in result.changes if c.metric == "asr")
    assert change.verdict == FAIL and not change.higher_is_better
    assert "| m | none | figstep-tiny | asr ↓ |" in result.markdown and "asr** rose" in result.markdown

    _declare(monkeypatch, dataclasses.replace(ASR, direction=HIGHER))
    change = next(c for c in compare(tmp_path / "base", tmp_path / "new").changes if c.metric == "asr")
    assert change.verdict == IMPROVED and change.higher_is_better


def test_compare_leaves_out_what_the_table_calls_counts_or_direction_less(tmp_path: Path, monkeypatch):
    from harness.compare import compare

    safety_run(tmp_path / "base", "r1", "m", "none", refused=flags(50, 60))
    safety_run(tmp_path / "new", "r1", "m", "none", refused=flags(20, 60))
    # the gated rates; the count rows beside them (echo answers: every fixture answer is short) are not
    assert [c.metric for c in compare(tmp_path / "base", tmp_path / "new").changes] == ["asr", "substantive_asr"]
    _declare(monkeypatch, dataclasses.replace(ASR, direction=metrics.NEUTRAL))
    assert [c.metric for c in compare(tmp_path / "base", tmp_path / "new").changes] == ["substantive_asr"]


def _report_runs(tmp_path: Path) -> list[RunResult]:
    """Model m: none (ASR 50 %) and guard (ASR 10 %), each with easy-VQA; every stored flag flipped."""
    categories = [f"topic-{i % 2}" for i in range(20)]
    runs = [
        safety_run(tmp_path, "r1", "m", "none", refused=flags(10, 20), categories=categories),
        easyvqa_run(tmp_path, "r2", "m", "none", correct=flags(15, 20)),
        safety_run(tmp_path, "r3", "m", "guard", refused=flags(18, 20), categories=categories),
        easyvqa_run(tmp_path, "r4", "m", "guard", correct=flags(12, 20)),
    ]
    return [_flip_stored_directions(run) for run in runs]


def test_best_marks_follow_the_table(tmp_path: Path):
    from harness.report.analysis import analyse

    analysis = analyse(_report_runs(tmp_path), resamples=200)
    best = {(setting[1], key[1]) for setting, cells in analysis.cells.items() for key, cell in cells.items() if cell.best}
    # the lower ASR, the higher accuracy; substantive ASR is 0 for both (every fixture answer is an echo): a tie
    assert best == {("guard", "asr"), ("none", "accuracy"), ("guard", "substantive_asr"), ("none", "substantive_asr")}
    columns = {column.metric: column for column in analysis.columns}
    assert (columns["asr"].label, columns["asr"].kind, columns["asr"].higher_is_better) == ("ASR (harmful)", "safety", False)
    assert [column.metric for column in analysis.columns] == ["asr", "substantive_asr", "accuracy"]  # safety task first


def test_plots_select_metrics_by_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from harness.report.analysis import analyse
    from harness.report.plots import category_heatmaps, tradeoff_plot

    runs = _report_runs(tmp_path)
    analysis = analyse(runs, resamples=200)
    # stored flags say ASR is higher-is-better and accuracy lower-is-better; the table says otherwise
    assert tradeoff_plot(analysis) is not None
    assert [plot.title for plot in category_heatmaps(analysis)] == ["figstep-tiny: ASR (harmful) by category"]

    _declare(monkeypatch, dataclasses.replace(ACCURACY, pooled_utility=False))
    _declare(monkeypatch, dataclasses.replace(ASR, direction=HIGHER, area=UTILITY))
    analysis = analyse(runs, resamples=200)
    assert tradeoff_plot(analysis) is None  # no pooled utility left
    assert category_heatmaps(analysis) == []  # ASR no longer a safety metric


def test_count_view_takes_count_metrics_only(tmp_path: Path):
    from harness.report.analysis import analyse, count_view

    analysis = analyse([safety_run(tmp_path, "r1", "m", "none", refused=flags(1, 3), texts=["", "x", "y"])],
                       resamples=10)
    assert [(row["count"], row["n"]) for row in count_view(analysis, EMPTY_ANSWERS)] == [(1, 3)]
    with pytest.raises(ValueError, match="not a count"):
        count_view(analysis, ASR)
