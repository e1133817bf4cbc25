"""Every tasks/*.yaml is a valid TaskSpec whose loader and metric resolve and accept its arguments."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from harness.core.records import Sample, TaskSpec
from harness.core.registry import Registry
from harness.tasks import TASKS_DIR, load_spec, register_tasks

EXPECTED = {
    # name: (judge, max_new_tokens, default_limit, stratify_by, metric)
    "figstep": ("keyword-gcg", 64, None, "category", "harness.core.metrics:safety_metrics"),
    "figstep-tiny": ("keyword-gcg", 64, None, "category", "harness.core.metrics:safety_metrics"),
    "figstep-tiny-text": ("keyword-gcg", 64, None, "category", "harness.core.metrics:safety_metrics"),
    "xstest": ("keyword-gcg", 64, 100, "harmful", "harness.core.metrics:safety_metrics"),
    "easyvqa": (None, 8, 200, "category", "harness.tasks.easyvqa:easyvqa_metrics"),
    "mme": (None, 16, None, "category", "harness.tasks.mme:mme_metrics"),
    "mmbench": (None, 16, None, "category", "harness.tasks.mmbench:mmbench_metrics"),
    "mm-safetybench": ("keyword-gcg", 64, 160, "category", "harness.core.metrics:safety_metrics"),
    "mm-safetybench-sd": ("keyword-gcg", 64, 260, "category", "harness.core.metrics:safety_metrics"),
    "mm-safetybench-typo": ("keyword-gcg", 64, 260, "category", "harness.core.metrics:safety_metrics"),
    "mm-safetybench-sd-typo": ("keyword-gcg", 64, 260, "category", "harness.core.metrics:safety_metrics"),
    "jailbreakv-mini": ("keyword-gcg", 64, None, "category", "harness.core.metrics:safety_metrics"),
    "vlsafe": ("keyword-gcg", 64, 200, "category", "harness.core.metrics:safety_metrics"),
    "spa-vl": ("keyword-gcg", 64, None, "category", "harness.core.metrics:safety_metrics"),
    "mossbench": ("keyword-gcg", 128, 90, "category", "harness.core.metrics:safety_metrics"),
    "mossbench-contrast": ("keyword-gcg", 128, 90, "category", "harness.core.metrics:safety_metrics"),
    "siuo": ("keyword-gcg", 256, 90, "category", "harness.core.metrics:safety_metrics"),
    "vlguard-unsafes": ("keyword-vlguard", 256, 100, "category", "harness.core.metrics:safety_metrics"),
    "vlguard-safe-unsafes": ("keyword-vlguard", 256, 100, "category", "harness.core.metrics:safety_metrics"),
    "vlguard-safe-safes": ("keyword-vlguard", 256, 100, "category", "harness.core.metrics:safety_metrics"),
    "pope": (None, 32, 300, "category", "harness.tasks.pope:pope_metrics"),
    "pope-random": (None, 32, 300, "answer", "harness.tasks.pope:pope_metrics"),
    "pope-popular": (None, 32, 300, "answer", "harness.tasks.pope:pope_metrics"),
    "pope-adversarial": (None, 32, 300, "answer", "harness.tasks.pope:pope_metrics"),
}


def specs():
    return {spec.name: spec for spec in map(load_spec, sorted(TASKS_DIR.glob("*.yaml")))}


def test_registry_has_all_tasks():
    registry = Registry("task", TaskSpec)
    register_tasks(registry)
    assert set(registry.names()) == set(EXPECTED)
    assert registry.canonical("mmbench-en-dev") == "mmbench"
    assert registry.canonical("easy-vqa") == "easyvqa"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_fields(name):
    spec = specs()[name]
    judge, max_new_tokens, limit, stratify_by, metric = EXPECTED[name]
    assert (spec.judge, spec.generation.max_new_tokens, spec.default_limit, spec.stratify_by, str(spec.metric)) == (
        judge, max_new_tokens, limit, stratify_by, metric
    )
    assert spec.version and spec.description and spec.citation and spec.license
    assert stratify_by is None or stratify_by in {f.name for f in dataclasses.fields(Sample)}
    assert callable(spec.metric.load())
    loader = spec.loader.load()
    # The harness calls loader(task_name, **loader_args): the arguments must bind.
    inspect.signature(loader).bind(spec.name, **spec.loader_args)
