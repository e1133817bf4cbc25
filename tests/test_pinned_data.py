"""A task pinned to a dataset revision: the loader gets it, the version names it, caches never mix."""

from __future__ import annotations

import json

import pytest

from harness import registries
from harness.core.records import GenerationSettings, TaskSpec
from harness.pipeline.evaluate import EvalConfig, run_eval
from harness.pipeline.plan import check_revision, resolve_tasks

TINY = "tiny-random-llava-ov"


def pinned_task(name: str, revision: str | None, **changes) -> TaskSpec:
    spec = TaskSpec(name=name, version="1", loader="helpers_tasks:pinned_dataset_samples",
                    metric="harness.core.metrics:safety_metrics", judge="keyword-gcg", revision=revision,
                    generation=GenerationSettings(max_new_tokens=3, batch_size=2), **changes)
    if name not in registries.tasks():
        registries.tasks().register(name, spec)
    return spec


def test_the_loader_gets_the_revision_through_load_dataset(monkeypatch):
    import datasets

    from harness.tasks._common import load_hf_split

    seen = {}
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: seen.update(kwargs) or [])
    load_hf_split("org/data", None, "test", None, None, "0123abcd" * 5)
    assert seen["revision"] == "0123abcd" * 5


def test_the_version_names_the_revision_and_runs_on_other_data_share_nothing(isolated_dirs):
    pinned_task("pinned-a", "a" * 40)
    pinned_task("pinned-b", "b" * 40)
    (spec,), _ = resolve_tasks(["pinned-a"], {})
    assert spec.version == "1+rev." + "a" * 12
    first = run_eval(EvalConfig(model=TINY, tasks=["pinned-a"], limit="all", progress=False))
    assert first.info.tasks == {"pinned-a": "1+rev." + "a" * 12}
    assert first.info.settings.data_revisions == {"pinned-a": "a" * 40}
    stored = json.loads((first.path / "run.json").read_text())
    assert stored["settings"]["data_revisions"] == {"pinned-a": "a" * 40}
    # the same prompts at another revision: new keys (no cache hit), as the task version differs
    registries.tasks().entry("pinned-a").target.revision = "b" * 40
    registries.tasks().entry("pinned-a")._loaded = None
    try:
        second = run_eval(EvalConfig(model=TINY, tasks=["pinned-a"], limit="all", progress=False))
    finally:
        registries.tasks().entry("pinned-a").target.revision = "a" * 40
    assert second.info.counts["cache_hits"] == 0 and second.info.counts["generated"] == 2
    assert {g.key for g in second.generations}.isdisjoint({g.key for g in first.generations})
    again = run_eval(EvalConfig(model=TINY, tasks=["pinned-a"], limit="all", progress=False))
    assert again.info.counts["cache_hits"] == 2 and not again.info.model_loaded


def test_a_revision_the_loader_cannot_take_is_refused():
    with pytest.raises(ValueError, match="takes no revision argument"):
        check_revision(TaskSpec(name="x", version="1", loader="helpers_tasks:bad_image_samples",
                                metric="harness.core.metrics:safety_metrics", revision="abc"))
    with pytest.raises(ValueError, match="name the dataset revision once"):
        check_revision(TaskSpec(name="x", version="1", loader="helpers_tasks:pinned_dataset_samples",
                                metric="harness.core.metrics:safety_metrics", revision="abc",
                                loader_args={"revision": "def"}))
