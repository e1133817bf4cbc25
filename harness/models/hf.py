"""Loading Hugging Face checkpoints (Hub ids or local folders) and fingerprinting them without loading.

Fingerprints go into the generation cache key, so they must be cheap and must change whenever the
weights change: a Hub model is identified by the commit its revision resolves to in the local Hub
cache; a local folder by the sha256 of its weight, config and tokenizer files (memoised by size and
mtime, so repeat calls do not re-read gigabytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from harness.core.hub import (  # noqa: F401 - re-exported: loaders and tests name them here
    COMMIT,
    UNRESOLVED,
    folder_sha256,
    hub_cache,
    hub_commit,
    memoised_sha256,
    resolve_device,
)
from harness.models.chameleon import apply_prompt_format, prompt_format_sha256
from harness.models.spec import AUTO_FAMILY, MODEL_TYPE_FAMILIES, SHARD_DEVICE, ModelSpec, resolve_dtype
from harness.core.paths import cache_dir

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- loading
def model_class(family: str) -> type:
    import transformers

    classes = {
        "llava-onevision": transformers.LlavaOnevisionForConditionalGeneration,
        "llava": transformers.LlavaForConditionalGeneration,
        "qwen2-vl": transformers.Qwen2VLForConditionalGeneration,
        "chameleon": transformers.ChameleonForConditionalGeneration,
    }
    if family not in classes:
        raise ValueError(f"unsupported model family {family!r}; supported: {', '.join(classes)}")
    return classes[family]


def detect_family(source: str, revision: str | None = None) -> str:
    """The family named by a checkpoint's config.json ``model_type``."""
    from transformers import PreTrainedConfig

    config, _ = PreTrainedConfig.get_config_dict(source, revision=revision)
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPE_FAMILIES:
        raise ValueError(
            f"{source}: model_type {model_type!r} is not a supported vision-language model "
            f"(supported: {', '.join(sorted(MODEL_TYPE_FAMILIES))})"
        )
    return MODEL_TYPE_FAMILIES[model_type]


# Device nodes a CUDA (or ROCm) runtime opens on Linux: NVIDIA's driver, AMD's KFD, WSL2's GPU bridge.
def load_pretrained(
    spec: ModelSpec,
    dtype: str = "auto",
    device: str = "auto",
    *,
    source: str | Path | None = None,
) -> "VLMAdapter":
    """Load ``spec`` (or ``source``, a folder that holds its files) with the real ``from_pretrained`` path."""
    import torch
    from transformers import AutoProcessor

    from harness.defense_api.adapter import VLMAdapter

    location = str(source if source is not None else spec.source)
    on_hub = not Path(location).is_dir()
    revision = spec.revision if on_hub else None
    family = detect_family(location, revision) if spec.family == AUTO_FAMILY else spec.family
    dtype_name = resolve_dtype(spec, dtype)
    device_name = resolve_device(device)
    processor = AutoProcessor.from_pretrained(location, revision=revision, trust_remote_code=False)
    placement = shard_placement() if device_name == SHARD_DEVICE else {"device_map": device_name}
    model = model_class(family).from_pretrained(
        location,
        revision=revision,
        dtype=getattr(torch, dtype_name),
        trust_remote_code=False,
        **placement,
    )
    if family == "chameleon":
        apply_prompt_format(model, processor)
    if on_hub:
        commit = hub_commit(location, revision)
        if not COMMIT.fullmatch(commit):  # the cache key then holds a branch name, not a commit
            log.warning("model %s: the Hub revision could not be resolved to a commit (%s); generations are "
                        "cached under that name and would be reused after the repository changes", spec.name, commit)
    # a sharded model takes its inputs where its embeddings are (accelerate's hooks move them on from there)
    input_device = model.get_input_embeddings().weight.device if device_name == SHARD_DEVICE else device_name
    return VLMAdapter(model, processor, spec, input_device, dtype_name)


def shard_gpus(local_rank: int, local_world_size: int, visible: int) -> list[int]:
    """The GPUs that one process's model is spread over: the node's visible GPUs cut into equal runs of
    consecutive indices, one run per process on the node (8 GPUs, 2 processes: 0-3 and 4-7). Raises
    ValueError when there are fewer GPUs than processes."""
    per_process = visible // local_world_size
    if per_process < 1:
        raise ValueError(f"--device shard: {local_world_size} processes on this node share {visible} visible GPU(s); "
                         "each needs at least one")
    return list(range(local_rank * per_process, (local_rank + 1) * per_process))


def shard_placement() -> dict[str, Any]:
    """``from_pretrained`` arguments for ``--device shard``: ``device_map="auto"`` limited to this process's
    GPUs (:func:`shard_gpus`, by LOCAL_RANK and LOCAL_WORLD_SIZE as torchrun and accelerate set them). With
    no GPU, accelerate places everything on the CPU."""
    import torch
    from accelerate.utils import get_max_memory

    if not torch.cuda.is_available():
        return {"device_map": "auto"}
    gpus = shard_gpus(int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
                      torch.cuda.device_count())
    memory = get_max_memory()
    return {"device_map": "auto", "max_memory": {**{gpu: memory[gpu] for gpu in gpus}, "cpu": memory["cpu"]}}


# --------------------------------------------------------------------------------------- fingerprints
def fingerprint_pretrained(spec: ModelSpec, dtype: str = "auto") -> dict[str, Any]:
    """Identify a Hub or local checkpoint without loading it."""
    dtype_name = resolve_dtype(spec, dtype)
    path = Path(spec.source).expanduser()
    if path.is_dir():
        fingerprint = {"source": "local", "sha256": folder_sha256(path), "dtype": dtype_name}
    else:
        fingerprint = {"source": spec.source, "revision": hub_commit(spec.source, spec.revision), "dtype": dtype_name}
    return {**fingerprint, **prompt_format_fingerprint(known_family(spec))}


def prompt_format_fingerprint(family: str | None) -> dict[str, str]:
    """The harness's own prompt format of a family whose checkpoints' chat templates it replaces (Chameleon):
    it shapes the output, so it enters the cache key. Other families add nothing (their keys stay as they were)."""
    return {"prompt_format_sha256": prompt_format_sha256()} if family == "chameleon" else {}


def known_family(spec: ModelSpec) -> str | None:
    """The spec's family; for an ad-hoc model, the family its config.json names when that file is on disk
    (a local folder or the Hub cache), else None. Reads no weights and never downloads."""
    if spec.family != AUTO_FAMILY:
        return spec.family
    path = Path(spec.source).expanduser()
    if path.is_dir():
        config = path / "config.json"
    else:
        commit = hub_commit(spec.source, spec.revision)
        config = hub_cache() / f"models--{spec.source.replace('/', '--')}" / "snapshots" / commit / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None
    return MODEL_TYPE_FAMILIES.get(model_type)
