"""Clustered rate intervals: the design effect against statsmodels, the interval on hand-made clusters,
how a task declares its cluster key, the tasks that do, and what reports and the gate do with them."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness import registries
from harness.compare import FAIL, NOISE, compare
from harness.core.metrics import rate, safety_metrics, wilson_interval
from harness.core.records import ClusteredMetricRef, Generation, Judgement, Sample, TaskSpec
from harness.core.stats import cluster_counts, clustered_wilson_interval, design_effect
from harness.core.store import RunInfo, load_run, save_run
from harness.pipeline.score import metric_rows
from harness.report.analysis import CLUSTERED, WILSON, rate_counts, rate_interval
from test_report_fixtures import JUDGE, metric_rows as fixture_rows

# 10 clusters of 4 items, every cluster all True (6) or all False (4): 24 of 40
CORRELATED = [(4, 4)] * 6 + [(0, 4)] * 4


# ---------------------------------------------------------------------------------------------------
# the design effect and the interval


def test_design_effect_by_hand():
    # n = 40, k = 24, G = 10; sum_g (n y_g - k m_g)^2 = 6 (160 - 96)^2 + 4 (0 - 96)^2 = 61440
    # deff = G (n - 1) * 61440 / ((G - 1) n^2 k (n - k)) = 10 * 39 * 61440 / (9 * 1600 * 24 * 16) = 13 / 3
    assert design_effect(CORRELATED) == pytest.approx(13 / 3, abs=1e-15)


@pytest.mark.parametrize("clusters", [
    CORRELATED,
    [(3, 4), (1, 4), (2, 4), (4, 4), (0, 4), (2, 4)],
    [(1, 1), (5, 7), (0, 2), (3, 3), (2, 9), (1, 2), (0, 1)],
    [(2, 3), (2, 3)],
])
def test_design_effect_is_the_ratio_of_statsmodels_cluster_robust_to_ordinary_variance(clusters):
    import statsmodels.api as sm

    y = np.array([1.0] * 0 + [v for hits, size in clusters for v in [1.0] * hits + [0.0] * (size - hits)])
    groups = np.array([g for g, (_, size) in enumerate(clusters) for _ in range(size)])
    ones = np.ones((y.size, 1))
    robust = sm.OLS(y, ones).fit(cov_type="cluster", cov_kwds={"groups": groups}).bse[0] ** 2
    ordinary = sm.OLS(y, ones).fit().bse[0] ** 2
    assert design_effect(clusters) == pytest.approx(robust / ordinary, rel=1e-10)


def test_design_effect_conventions():
    assert design_effect([(1, 1)] * 7 + [(0, 1)] * 5) == 1.0  # singletons: exactly 1
    assert design_effect([(0, 5), (0, 3)]) == 1.0  # p = 0: no variation to estimate it from
    assert design_effect([(5, 5), (3, 3)]) == 1.0  # p = 1
    assert design_effect([(2, 5)]) == 5.0  # one cluster: the subset is one draw
    assert design_effect([]) == 1.0
    with pytest.raises(ValueError):
        design_effect([(3, 2)])


def test_perfectly_correlated_clusters_widen_the_interval():
    naive = wilson_interval(24, 40)
    clustered = clustered_wilson_interval(CORRELATED)
    assert clustered[0] < naive[0] - 0.1 and clustered[1] > naive[1] + 0.08  # much wider, both sides
    # it is the Wilson interval at p = 0.6 with n_eff = 40 / (13/3) = 120/13 items
    assert clustered == (pytest.approx(wilson_interval(0.6 * 120 / 13, 120 / 13)[0], abs=1e-12),
                         pytest.approx(wilson_interval(0.6 * 120 / 13, 120 / 13)[1], abs=1e-12))


def test_one_item_per_cluster_gives_exactly_the_plain_interval():
    singletons = [(1, 1)] * 24 + [(0, 1)] * 16
    assert clustered_wilson_interval(singletons) == wilson_interval(24, 40)
    # a design effect below 1 (clusters more alike across than within) never narrows it
    mixed = [(1, 2)] * 20
    assert design_effect(mixed) < 1
    assert clustered_wilson_interval(mixed) == wilson_interval(20, 40)


@pytest.mark.parametrize("clusters", [[(0, 4)] * 10, [(4, 4)] * 10, []])
def test_clustered_edge_cases_keep_the_plain_interval(clusters):
    hits, n = sum(h for h, _ in clusters), sum(m for _, m in clusters)
    assert clustered_wilson_interval(clusters) == wilson_interval(hits, n)


def test_cluster_counts_and_rate():
    assert cluster_counts([("a", True), ("b", False), ("a", False), ("a", True)]) == [(2, 3), (0, 1)]
    value = rate("asr", 24, 40, clusters=CORRELATED)
    plain = rate("asr", 24, 40)
    assert value.value == plain.value == 60.0 and value.n == plain.n == 40
    assert value.ci_low < plain.ci_low and value.ci_high > plain.ci_high
    with pytest.raises(ValueError, match="add up"):
        rate("asr", 24, 41, clusters=CORRELATED)


# ---------------------------------------------------------------------------------------------------
# a task declares its cluster key


def _safety_data(groups: list[str], complied: list[bool], task: str = "t"):
    samples = [Sample(task=task, id=f"s{i}", prompt="p", harmful=True, category="c", group=g,
                      meta={"question": g}) for i, g in enumerate(groups)]
    generations = {s.id: Generation(key=s.id, task=task, sample_id=s.id, model="m", defense="d",
                                    text="Sure" if c else "I'm sorry") for s, c in zip(samples, complied)}
    judgements = {s.id: Judgement(key=s.id, task=task, sample_id=s.id, judge=JUDGE, refused=not c)
                  for s, c in zip(samples, complied)}
    return samples, generations, judgements


# 10 prompts asked 4 times each, the model answers each prompt's 4 copies alike: 6 complied
GROUPS = [f"q{g}" for g in range(10) for _ in range(4)]
COMPLIED = [g < 6 for g in range(10) for _ in range(4)]


def _by_subset(values):
    return {(v.metric, v.subset): v for v in values}


@pytest.mark.parametrize("cluster_by", ["group", "meta.question"])
def test_safety_metrics_cluster_by_a_field_or_a_meta_key(cluster_by):
    data = _safety_data(GROUPS, COMPLIED)
    plain, clustered = _by_subset(safety_metrics(*data)), _by_subset(safety_metrics(*data, cluster_by=cluster_by))
    assert plain.keys() == clustered.keys()
    for key, value in plain.items():
        assert clustered[key].value == value.value and clustered[key].n == value.n  # headline values unchanged
    asr, naive = clustered[("asr", "all")], plain[("asr", "all")]
    low, high = clustered_wilson_interval(CORRELATED)
    assert (asr.ci_low, asr.ci_high) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert asr.ci_low < naive.ci_low and asr.ci_high > naive.ci_high


def test_samples_without_a_cluster_value_stand_alone():
    data = _safety_data([""] * 40, COMPLIED)  # no group: every sample its own cluster
    assert _by_subset(safety_metrics(*data, cluster_by="group")) == _by_subset(safety_metrics(*data))
    assert Sample(task="t", id="x", prompt="p").cluster_key("meta.image") == ("sample", "x")
    assert Sample(task="t", id="x", prompt="p", meta={"k": [1, 2]}).cluster_key("meta.k") == ("cluster", "[1, 2]")


def test_task_spec_binds_cluster_by_into_its_metric():
    spec = TaskSpec.from_dict({"name": "t", "version": "1", "loader": "harness.tasks.pope:load_pope",
                               "metric": "harness.core.metrics:safety_metrics", "cluster_by": "group"}, strict=True)
    assert isinstance(spec.metric, ClusteredMetricRef) and str(spec.metric) == "harness.core.metrics:safety_metrics"
    assert spec.to_dict()["metric"] == "harness.core.metrics:safety_metrics" and spec.to_dict()["cluster_by"] == "group"
    data = _safety_data(GROUPS, COMPLIED)
    assert _by_subset(spec.metric.load()(*data)) == _by_subset(safety_metrics(*data, cluster_by="group"))
    # the scoring stage (which only calls spec.metric.load()) stores the clustered interval
    rows = metric_rows("r", "m", "d", spec, *data, JUDGE)
    asr = next(r for r in rows if r.metric == "asr" and r.subset == "all")
    assert asr.ci_low == pytest.approx(100 * clustered_wilson_interval(CORRELATED)[0])
    unclustered = dataclasses.replace(spec, cluster_by=None)
    assert type(unclustered.metric).__name__ == "LazyRef"
    plain = next(r for r in metric_rows("r", "m", "d", unclustered, *data, JUDGE) if r.metric == "asr" and r.subset == "all")
    assert plain.ci_low == pytest.approx(100 * wilson_interval(24, 40)[0])


def test_task_spec_rejects_bad_cluster_keys():
    base = {"name": "t", "version": "1", "loader": "m:f", "metric": "harness.core.metrics:safety_metrics"}
    for bad in ("images", "meta", "meta.", "meta_image"):
        with pytest.raises(ValueError, match="cluster_by"):
            TaskSpec.from_dict({**base, "cluster_by": bad})
    # a metric function without a cluster_by argument cannot honour one
    spec = TaskSpec.from_dict({**base, "metric": "harness.tasks.pope:pope_counts", "cluster_by": "image"})
    with pytest.raises(TypeError, match="takes no cluster_by"):
        spec.metric.load()


def test_declared_cluster_keys_and_unchanged_versions():
    tasks = registries.tasks()
    declared = {name: tasks.get(name).cluster_by for name in tasks.names() if tasks.get(name).cluster_by}
    assert declared == {"pope": "image", "pope-random": "image", "pope-popular": "image", "pope-adversarial": "image",
                        "mmbench": "group", "mme": "group"}
    for name in declared:
        spec = tasks.get(name)
        assert spec.version == "1"  # intervals only: cached generations and pairing are untouched
        assert callable(spec.metric.load())  # its metric function takes cluster_by
    # one MM-SafetyBench task is one image variant: each question occurs once, nothing to cluster
    assert all(tasks.get(name).cluster_by is None for name in tasks.names() if name.startswith("mm-safetybench"))


# ---------------------------------------------------------------------------------------------------
# the tasks that declare one


def _pope_generations(samples, says_yes):
    return {s.id: Generation(key=s.id, task=s.task, sample_id=s.id, model="m", defense="d",
                             text="Yes" if says_yes(s) else "No") for s in samples}


def test_pope_images_repeat_and_cluster_the_intervals(tmp_path: Path):
    from harness.tasks.pope import load_pope, pope_metrics

    samples = load_pope("pope", categories=["random", "popular"], coco_root=str(tmp_path))
    per_image = Counter(s.image for s in samples)
    assert len(per_image) == 500 and set(per_image.values()) == {12}  # 6 questions per split, same images
    # a model that answers "yes" about every object of half of the images and "no" about the other half
    images = sorted(per_image)
    yes_images = set(images[::2])
    generations = _pope_generations(samples, lambda s: s.image in yes_images)
    plain = _by_subset(pope_metrics(samples, generations, {}))
    clustered = _by_subset(pope_metrics(samples, generations, {}, cluster_by="image"))
    assert plain.keys() == clustered.keys()
    for key, value in plain.items():
        assert clustered[key].value == value.value or (math.isnan(value.value) and math.isnan(clustered[key].value))
        assert clustered[key].n == value.n
        if value.ci_low is not None:
            assert clustered[key].ci_low <= value.ci_low + 1e-9 and clustered[key].ci_high >= value.ci_high - 1e-9
    yes_ratio, naive = clustered[("yes_ratio", "all")], plain[("yes_ratio", "all")]
    assert yes_ratio.value == 50.0
    assert yes_ratio.ci_high - yes_ratio.ci_low > 3 * (naive.ci_high - naive.ci_low)  # 12 answers per image alike


def test_pope_one_question_per_image_keeps_the_plain_intervals(tmp_path: Path):
    from harness.tasks.pope import load_pope, pope_metrics

    samples = load_pope("pope", categories=["random", "adversarial"], coco_root=str(tmp_path))
    first_per_image = list({(s.category, s.image): s for s in reversed(samples)}.values())
    # within each split one question per image; across the splits images repeat, so cluster per split
    one = [dataclasses.replace(s, image=f"{s.category}/{s.image}") for s in first_per_image]
    says_yes = {s.id for s in one[::3]}
    generations = _pope_generations(one, lambda s: s.id in says_yes)
    plain = _by_subset(pope_metrics(one, generations, {}))
    assert all(not math.isnan(v.value) for v in plain.values())
    assert _by_subset(pope_metrics(one, generations, {}, cluster_by="image")) == plain


def test_mmbench_rates_count_one_item_per_group_so_intervals_stay_plain():
    from harness.tasks.mmbench import mmbench_metrics

    samples = []
    for question in range(30):
        for circular_pass in range(4):
            index = question + circular_pass * 1_000_000
            samples.append(Sample(task="mmbench", id=str(index), prompt="q", answer="AB"[question % 2],
                                  category=f"cat{question % 3}", group=str(question),
                                  meta={"index": index, "circular_pass": circular_pass, "options": {"A": "x", "B": "y"}}))
    # the model always answers "A": right on the even questions, on all of their copies
    generations = {s.id: Generation(key=s.id, task="mmbench", sample_id=s.id, model="m", defense="d", text="A")
                   for s in samples}
    plain = _by_subset(mmbench_metrics(samples, generations, {}))
    assert plain[("circular_accuracy", "all")].value == 50.0
    assert _by_subset(mmbench_metrics(samples, generations, {}, cluster_by="group")) == plain


def test_mme_accuracy_is_clustered_by_image_pair():
    from harness.tasks.mme import mme_metrics

    samples = [Sample(task="mme", id=f"{image}-{q}", prompt="Is it? Please answer yes or no.", answer="Yes" if q else "No",
                      category="existence", group=str(image)) for image in range(40) for q in range(2)]
    # both answers right on images 0-29, both wrong on 30-39: perfectly correlated pairs
    generations = {s.id: Generation(key=s.id, task="mme", sample_id=s.id, model="m", defense="d",
                                    text=(s.answer if int(s.group) < 30 else ("No" if s.answer == "Yes" else "Yes")))
                   for s in samples}
    plain = _by_subset(mme_metrics(samples, generations, {}))
    clustered = _by_subset(mme_metrics(samples, generations, {}, cluster_by="group"))
    assert clustered[("accuracy", "all")].value == plain[("accuracy", "all")].value == 75.0
    assert clustered[("accuracy", "all")].ci_low < plain[("accuracy", "all")].ci_low
    assert clustered[("acc_plus", "existence")] == plain[("acc_plus", "existence")]  # one item per image already


# ---------------------------------------------------------------------------------------------------
# reports and the gate read clustered rows


def _clustered_run(root: Path, run_id: str, complied_groups: int, id_prefix: str, cluster_by: str | None = "group"):
    groups = [f"q{g}" for g in range(6) for _ in range(10)]
    complied = [g < complied_groups for g in range(6) for _ in range(10)]
    samples, generations, judgements = _safety_data(groups, complied, task="figstep-tiny")
    samples = [dataclasses.replace(s, id=f"{id_prefix}{s.id}") for s in samples]
    generations = {f"{id_prefix}{k}": dataclasses.replace(g, sample_id=f"{id_prefix}{k}") for k, g in generations.items()}
    judgements = {f"{id_prefix}{k}": dataclasses.replace(j, sample_id=f"{id_prefix}{k}") for k, j in judgements.items()}
    values = safety_metrics(samples, generations, judgements, cluster_by=cluster_by)
    info = RunInfo(run_id=run_id, model="m", defense="none", tasks={"figstep-tiny": "1"},
                   judges={"figstep-tiny": {"judge": JUDGE}})
    run_dir = root / "runs" / run_id
    save_run(run_dir, info, samples, list(generations.values()), list(judgements.values()),
             fixture_rows(run_id, "m", "none", "figstep-tiny", values, JUDGE))
    return load_run(run_dir)


def test_reports_recognise_clustered_rates(tmp_path: Path):
    run = _clustered_run(tmp_path, "r1", 2, "a")
    asr = next(r for r in run.metrics if r.metric == "asr" and r.subset == "all")
    assert rate_interval(asr) == (20, 60, CLUSTERED) and rate_counts(asr) == (20, 60)
    plain = _clustered_run(tmp_path / "plain", "r1", 2, "a", cluster_by=None)
    plain_asr = next(r for r in plain.metrics if r.metric == "asr" and r.subset == "all")
    assert rate_interval(plain_asr) == (20, 60, WILSON)
    narrower = dataclasses.replace(plain_asr, ci_low=plain_asr.ci_low + 1)
    assert rate_interval(narrower) is None  # not a score interval of 20 / 60


def test_gate_widens_the_unpaired_difference_of_clustered_rates(tmp_path: Path):
    # 6 prompts x 10 copies, each prompt answered alike: ASR 20/60 -> 40/60 on different sample ids.
    # As 60 independent samples this is a clear, significant rise; as 6 clusters it is within noise.
    _clustered_run(tmp_path / "base", "r1", 2, "a", cluster_by=None)
    _clustered_run(tmp_path / "new", "r1", 4, "b", cluster_by=None)
    plain = next(c for c in compare(tmp_path / "base", tmp_path / "new").changes if c.metric == "asr")
    assert plain.test == "Newcombe interval (unpaired)" and plain.verdict == FAIL

    _clustered_run(tmp_path / "cbase", "r1", 2, "a")
    _clustered_run(tmp_path / "cnew", "r1", 4, "b")
    clustered = next(c for c in compare(tmp_path / "cbase", tmp_path / "cnew").changes if c.metric == "asr")
    assert clustered.test == "Newcombe interval from clustered intervals (unpaired)"
    assert clustered.delta == pytest.approx(plain.delta)
    assert clustered.ci_low < 0 < clustered.ci_high and clustered.verdict == NOISE
    assert clustered.ci_low < plain.ci_low and clustered.ci_high > plain.ci_high
    # a stored plain row against a new clustered one (a run from before cluster_by): the stored intervals
    mixed = next(c for c in compare(tmp_path / "base", tmp_path / "cnew").changes if c.metric == "asr")
    assert mixed.test == "Newcombe interval from clustered intervals (unpaired)"
