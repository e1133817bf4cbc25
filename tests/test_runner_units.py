from collections import Counter

import pytest

from harness.core.metrics import percentile, safety_metrics, wilson_interval
from harness.core.records import Generation, Judgement, Sample, TaskSpec
from harness.pipeline.plan import select_samples, stratified_order


def samples(n_harmful, n_benign):
    out = [Sample(task="t", id=f"h{i}", prompt="p", harmful=True, category="a") for i in range(n_harmful)]
    out += [Sample(task="t", id=f"b{i}", prompt="p", harmful=False, category="b") for i in range(n_benign)]
    return out


def test_stratified_order_balances_every_prefix_and_is_seeded():
    items = samples(30, 10)
    order = stratified_order(items, seed=0, stratify_by="harmful")
    assert sorted(s.id for s in order) == sorted(s.id for s in items)
    assert Counter(s.harmful for s in order[:20]) == {True: 10, False: 10}
    assert [s.id for s in order] == [s.id for s in stratified_order(items, seed=0, stratify_by="harmful")]
    assert [s.id for s in order] != [s.id for s in stratified_order(items, seed=1, stratify_by="harmful")]


def test_select_samples_limits():
    spec = TaskSpec(name="t", version="1", loader="x:y", metric="x:y", default_limit=6, stratify_by="harmful")
    items = samples(10, 10)
    assert len(select_samples(spec, items, None)) == 6
    assert len(select_samples(spec, items, 3)) == 3
    assert len(select_samples(spec, items, "all")) == 20
    unstratified = TaskSpec(name="t", version="1", loader="x:y", metric="x:y")
    assert [s.id for s in select_samples(unstratified, items, 2)] == ["h0", "h1"]  # first N in loader order


def test_wilson_interval_matches_hand_computation():
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = 1.96*sqrt(0.025+0.0096)/1.384 = 0.2634
    low, high = wilson_interval(5, 10)
    assert abs(low - 0.2366) < 1e-3 and abs(high - 0.7634) < 1e-3
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and abs(high - 0.1611) < 1e-3
    # the interval contains the estimate exactly at the edges (rounding gave 1.7e-16 > 0 for 0 of 200)
    for n in (1, 7, 200, 1000):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
        for k in range(0, n + 1, max(1, n // 7)):
            low, high = wilson_interval(k, n)
            assert low <= k / n <= high


def test_safety_metrics_asr_and_refusal_rate():
    items = samples(4, 2)
    verdicts = {
        "h0": True, "h1": False, "h2": False, "h3": None,  # one undecided harmful
        "b0": True, "b1": False,
    }
    judgements = {sid: Judgement(key=sid, task="t", sample_id=sid, judge="k", refused=r) for sid, r in verdicts.items()}
    values = {(v.metric, v.subset): v for v in safety_metrics(items, {}, judgements)}
    asr = values[("asr", "all")]
    assert asr.n == 3 and abs(asr.value - 200 / 3) < 1e-9  # 2 of 3 decided harmful were not refused
    assert values[("refusal_rate", "all")].value == 50.0
    assert values[("undecided", "harmful")].value == 1
    assert values[("asr", "a")].n == 3


def test_safety_metrics_count_empty_answers_per_kind():
    items = samples(3, 2)
    texts = {"h0": "", "h1": "  \n", "h2": "Sure, step 1", "b0": "", "b1": None}  # b1 failed: not counted
    generations = {sid: Generation(key=sid, task="t", sample_id=sid, model="m", defense="d", text=text,
                                   error=None if text is not None else "boom") for sid, text in texts.items()}
    judgements = {sid: Judgement(key=sid, task="t", sample_id=sid, judge="k", refused=False) for sid in texts}
    values = {(v.metric, v.subset): v for v in safety_metrics(items, generations, judgements)}
    assert (values[("empty_answers", "harmful")].value, values[("empty_answers", "harmful")].n) == (2.0, 3)
    assert (values[("empty_answers", "benign")].value, values[("empty_answers", "benign")].n) == (1.0, 1)
    assert values[("asr", "all")].value == 100.0  # the keyword verdicts still count them as compliance
    generations["h0"].text = generations["h1"].text = generations["b0"].text = "answer"
    assert not any(v.metric == "empty_answers" for v in safety_metrics(items, generations, judgements))


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert abs(percentile(list(range(1, 101)), 95) - 95.05) < 1e-9


def test_limit_never_splits_a_scoring_group():
    spec = TaskSpec(name="t", version="1", loader="x:y", metric="x:y")
    items = [Sample(task="t", id=f"{g}-{k}", prompt="p", group=str(g)) for g in range(3) for k in range(2)]
    assert [s.id for s in select_samples(spec, items, 3)] == ["0-0", "0-1", "1-0", "1-1"]
    assert [s.id for s in select_samples(spec, items, 2)] == ["0-0", "0-1"]


def test_device_auto_asks_torch_only_where_a_gpu_device_node_exists(monkeypatch, tmp_path):
    import torch

    import harness.core.hub as hf

    node = tmp_path / "nvidiactl"
    monkeypatch.setattr(hf.sys, "platform", "linux")
    monkeypatch.setattr(hf, "GPU_DEVICE_NODES", (str(node),))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("torch was asked"))
    assert hf.resolve_device("auto") == "cpu"
    node.touch()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hf.resolve_device("auto") == "cuda" and hf.resolve_device(None) == "cuda"
    assert hf.resolve_device("cuda:1") == "cuda:1" and hf.resolve_device("cpu") == "cpu"
