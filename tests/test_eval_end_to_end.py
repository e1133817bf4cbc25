"""The whole pipeline on a tiny random model: cache, resume, bad input, re-run without the model."""

from __future__ import annotations

import json

import pytest

from harness import registries
from harness.core.records import GenerationSettings, TaskSpec
from harness.core.registry import LazyRef
from harness.pipeline.evaluate import EvalConfig, run_eval

TINY = "tiny-random-llava-ov"


def spy_on_imports(monkeypatch):
    """Every lazy reference resolved from now on (all resolution goes through LazyRef.load)."""
    imported = []
    real = LazyRef.load

    def spy(ref):
        imported.append(ref)
        return real(ref)

    monkeypatch.setattr(LazyRef, "load", spy)
    return imported


def register_task(name, loader, **loader_args):
    tasks = registries.tasks()
    if name not in tasks:
        tasks.register(name, TaskSpec(
            name=name, version="1", loader=loader, loader_args=loader_args,
            metric="harness.core.metrics:safety_metrics", judge="keyword-gcg",
            generation=GenerationSettings(max_new_tokens=4, batch_size=2),
        ))


def test_rerun_is_served_from_cache_without_loading_the_model(isolated_dirs, monkeypatch):
    results, reports = isolated_dirs
    config = dict(model=TINY, tasks=["figstep-tiny", "xstest"], limit=2, max_new_tokens=4, progress=False)
    first = run_eval(EvalConfig(**config))
    assert first.info.model_loaded
    assert first.info.counts == {"samples": 4, "cache_hits": 0, "generated": 4, "errors": 0}
    assert (reports / "latest.html").is_file() and (reports / "latest.tex").is_file()
    assert (reports / f"{first.info.run_id}.html").is_file()

    imported = spy_on_imports(monkeypatch)
    second = run_eval(EvalConfig(**config))
    spec = registries.models().get(TINY)
    assert spec.fingerprinter in imported  # the spy sees the references the run resolves...
    assert spec.builder not in imported  # ...and the model code was never even imported
    assert not second.info.model_loaded
    assert second.info.counts["cache_hits"] == 4 and second.info.counts["generated"] == 0
    assert [g.text for g in second.generations] == [g.text for g in first.generations]
    assert all(g.from_cache for g in second.generations)
    assert [(m.metric, m.value) for m in second.metrics] == [(m.metric, m.value) for m in first.metrics]
    stored = json.loads((second.path / "run.json").read_text())
    assert stored["model_loaded"] is False


def test_changing_the_defense_misses_the_cache(isolated_dirs):
    config = dict(model=TINY, tasks=["xstest"], limit=2, max_new_tokens=4, progress=False)
    run_eval(EvalConfig(**config))
    defended = run_eval(EvalConfig(**config, defense="self-reminder"))
    assert defended.info.model_loaded and defended.info.counts["cache_hits"] == 0


def test_bad_images_fail_alone_and_are_recorded(isolated_dirs, tmp_path):
    register_task("bad-images", "helpers_tasks:bad_image_samples", directory=str(tmp_path / "imgs"))
    result = run_eval(EvalConfig(model=TINY, tasks=["bad-images"], limit="all", progress=False))
    by_id = {g.sample_id: g for g in result.generations}
    assert by_id["good"].ok
    assert "cannot decode image" in by_id["corrupt"].error
    assert "image file not found" in by_id["missing"].error
    assert "DecompressionBombError" in by_id["bomb"].error  # PIL's pixel limit: a sample error, not a crash
    assert result.info.counts["errors"] == 3
    # the report still renders, with the errors listed
    html = (isolated_dirs[1] / "latest.html").read_text()
    assert "image file not found" in html


def test_a_kill_mid_run_loses_no_finished_generation(isolated_dirs, monkeypatch):
    from harness.defenses.none import NoDefense

    register_task("numbers", "helpers_tasks:text_samples", count=8)
    config = dict(model=TINY, tasks=["numbers"], limit="all", progress=False)
    calls = {"n": 0}
    real_generate = NoDefense.generate

    def dies_on_third_batch(self, adapter, requests):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")  # not an Exception: the runner must not swallow it
        return real_generate(self, adapter, requests)

    monkeypatch.setattr(NoDefense, "generate", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run_eval(EvalConfig(**config))
    monkeypatch.setattr(NoDefense, "generate", real_generate)

    resumed = run_eval(EvalConfig(**config))  # batch size 2: two batches (4 samples) were finished
    assert resumed.info.counts["cache_hits"] == 4
    assert resumed.info.counts["generated"] == 4


def test_samples_sharing_a_cache_key_keep_their_own_ids_on_a_rerun(isolated_dirs, monkeypatch):
    register_task("repeated", "helpers_tasks:repeated_prompt_samples")
    config = dict(model=TINY, tasks=["repeated"], limit="all", progress=False)
    calls = []
    from harness.defenses.none import NoDefense

    real_generate = NoDefense.generate

    def counting(self, adapter, requests):
        calls.extend(r.sample_id for r in requests)
        return real_generate(self, adapter, requests)

    monkeypatch.setattr(NoDefense, "generate", counting)
    first = run_eval(EvalConfig(**config))
    monkeypatch.setattr(NoDefense, "generate", real_generate)
    assert sorted(calls) == ["a", "c"]  # b repeats a's input: generated once, copied
    assert first.info.counts["generated"] == 3
    second = run_eval(EvalConfig(**config))
    assert not second.info.model_loaded and second.info.counts["cache_hits"] == 3
    for result in (first, second):
        assert sorted(g.sample_id for g in result.generations) == ["a", "b", "c"]
        assert sorted(j.sample_id for j in result.judgements) == ["a", "b", "c"]
        assert {(m.metric, m.n) for m in result.metrics if m.subset == "all"} == {("asr", 3), ("substantive_asr", 3)}
    by_id = {g.sample_id: g for g in second.generations}
    assert by_id["a"].text == by_id["b"].text and by_id["a"] is not by_id["b"]



def test_device_and_dtype_auto_are_keyed_and_recorded_as_what_they_resolve_to(isolated_dirs):
    config = dict(model=TINY, tasks=["xstest"], limit=2, max_new_tokens=2, progress=False)
    from harness.core.hub import resolve_device

    auto = run_eval(EvalConfig(**config, device="auto", dtype="auto"))
    resolved = resolve_device("auto")
    assert auto.info.model_fingerprint["device"] == resolved
    assert auto.info.settings.device == resolved and auto.info.settings.dtype == "float32"  # the spec's default
    explicit = run_eval(EvalConfig(**config, device=resolved, dtype="float32"))
    assert not explicit.info.model_loaded and explicit.info.counts["cache_hits"] == 2
    half = run_eval(EvalConfig(**config, device=resolved, dtype="bfloat16"))
    assert half.info.model_loaded and half.info.counts["cache_hits"] == 0
