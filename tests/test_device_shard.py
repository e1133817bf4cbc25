"""--device shard: one model spread over a process's share of the node's GPUs (device_map=auto)."""

from __future__ import annotations

import pytest
import torch

from harness.core.records import GenerationSettings, Request
from harness.core.registry import Registry
from harness.models import hf
from harness.models.catalog import register_models, resolve_model
from harness.models.spec import ModelSpec


@pytest.mark.parametrize(
    "local_rank, local_world_size, visible, expected",
    [(0, 1, 8, [0, 1, 2, 3, 4, 5, 6, 7]), (0, 2, 8, [0, 1, 2, 3]), (1, 2, 8, [4, 5, 6, 7]),
     (2, 3, 8, [4, 5]),  # 8 // 3 = 2 each; GPUs 6 and 7 stay unused
     (3, 4, 4, [3])],
)
def test_each_process_gets_its_own_run_of_gpus(local_rank, local_world_size, visible, expected):
    assert hf.shard_gpus(local_rank, local_world_size, visible) == expected


def test_fewer_gpus_than_processes_is_a_clear_error():
    with pytest.raises(ValueError, match="3 processes on this node share 2 visible GPU"):
        hf.shard_gpus(0, 3, 2)


def test_placement_limits_device_map_auto_to_the_ranks_gpus(monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(accelerate.utils, "get_max_memory", lambda: {**{i: 80 << 30 for i in range(8)}, "cpu": 64 << 30})
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    placement = hf.shard_placement()
    assert placement == {"device_map": "auto", "max_memory": {4: 80 << 30, 5: 80 << 30, 6: 80 << 30, 7: 80 << 30, "cpu": 64 << 30}}


def test_sharded_load_without_gpus_answers_as_the_cpu_load():
    models = Registry("model", ModelSpec)
    register_models(models)
    spec = resolve_model(models, "tiny-random-llava")
    request = Request("t", "s", "Describe the scene.", None, None, None, GenerationSettings(max_new_tokens=6))
    on_cpu = spec.builder.load()(spec, dtype="float32", device="cpu")
    sharded = spec.builder.load()(spec, dtype="float32", device="shard")
    assert sharded.device == torch.device("cpu")  # accelerate put every layer on the CPU
    assert sharded.generate([request])[0].text == on_cpu.generate([request])[0].text
