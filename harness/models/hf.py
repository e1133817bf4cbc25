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

from harness.images import file_sha256
from harness.models.spec import AUTO_FAMILY, MODEL_TYPE_FAMILIES, ModelSpec, resolve_dtype
from harness.paths import cache_dir

if TYPE_CHECKING:
    from harness.models.adapter import VLMAdapter

# Files of a local model folder that determine its outputs.
FINGERPRINT_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.gguf",
    "config.json",
    "generation_config.json",
    "tokenizer*.json",
    "tokenizer.model",
    "vocab.*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)
# A file modified this recently may be rewritten within the filesystem's mtime granularity without its
# size changing; hash it every time until it is older than this (git's "racy clean" rule).
MEMO_MIN_AGE_S = 2.0
COMMIT = re.compile(r"[0-9a-f]{40}")
UNRESOLVED = "main (unresolved)"

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- loading
def model_class(family: str) -> type:
    import transformers

    classes = {
        "llava-onevision": transformers.LlavaOnevisionForConditionalGeneration,
        "llava": transformers.LlavaForConditionalGeneration,
        "qwen2-vl": transformers.Qwen2VLForConditionalGeneration,
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
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def resolve_device(device: str | None = "auto") -> str:
    """"auto" -> "cuda" if torch sees a GPU, else "cpu". On a Linux host with no GPU device node the
    answer is "cpu" without importing torch (about 1.5 s), so a cached re-run stays quick."""
    if device not in (None, "auto"):
        return str(device)
    if sys.platform.startswith("linux") and not any(os.path.exists(node) for node in GPU_DEVICE_NODES):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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

    from harness.models.adapter import VLMAdapter

    location = str(source if source is not None else spec.source)
    on_hub = not Path(location).is_dir()
    revision = spec.revision if on_hub else None
    family = detect_family(location, revision) if spec.family == AUTO_FAMILY else spec.family
    dtype_name = resolve_dtype(spec, dtype)
    device_name = resolve_device(device)
    processor = AutoProcessor.from_pretrained(location, revision=revision, trust_remote_code=False)
    model = model_class(family).from_pretrained(
        location,
        revision=revision,
        dtype=getattr(torch, dtype_name),
        device_map=device_name,
        trust_remote_code=False,
    )
    if on_hub:
        commit = hub_commit(location, revision)
        if not COMMIT.fullmatch(commit):  # the cache key then holds a branch name, not a commit
            log.warning("model %s: the Hub revision could not be resolved to a commit (%s); generations are "
                        "cached under that name and would be reused after the repository changes", spec.name, commit)
    return VLMAdapter(model, processor, spec, device_name, dtype_name)


# --------------------------------------------------------------------------------------- fingerprints
def fingerprint_pretrained(spec: ModelSpec, dtype: str = "auto") -> dict[str, Any]:
    """Identify a Hub or local checkpoint without loading it."""
    dtype_name = resolve_dtype(spec, dtype)
    path = Path(spec.source).expanduser()
    if path.is_dir():
        return {"source": "local", "sha256": folder_sha256(path), "dtype": dtype_name}
    return {"source": spec.source, "revision": hub_commit(spec.source, spec.revision), "dtype": dtype_name}


def hub_cache() -> Path:
    """The Hugging Face Hub cache folder, resolved as huggingface_hub does (read at call time):
    HF_HUB_CACHE, then the legacy HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME or
    ~/.cache + huggingface/hub; ``~`` and ``$VARS`` expanded."""
    def expand(value: str) -> Path:
        return Path(os.path.expandvars(os.path.expanduser(value)))

    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return expand(os.environ[variable])
    if os.environ.get("HF_HOME"):
        return expand(os.environ["HF_HOME"]) / "hub"
    return expand(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface" / "hub"


def hub_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit a revision points to in the local Hub cache; the revision itself when not cached."""
    if revision and COMMIT.fullmatch(revision):
        return revision
    ref = hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.is_file():
        return ref.read_text().strip()
    return revision or UNRESOLVED


def fingerprint_files(folder: Path) -> list[Path]:
    files = {path for pattern in FINGERPRINT_PATTERNS for path in folder.glob(pattern) if path.is_file()}
    return sorted(files)


def folder_sha256(folder: str | Path) -> str:
    """sha256 over the (name, content sha256) of every output-determining file of a model folder."""
    folder = Path(folder)
    files = fingerprint_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no model files ({', '.join(FINGERPRINT_PATTERNS[:4])}, ...)")
    digests = memoised_sha256(files)
    combined = hashlib.sha256()
    for path in files:
        combined.update(f"{path.name}\0{digests[path]}\n".encode())
    return combined.hexdigest()


def _memo_path() -> Path:
    return cache_dir() / "fingerprints" / "file-sha256.json"


def memoised_sha256(paths: Iterable[Path]) -> dict[Path, str]:
    """Content sha256 per file, reusing earlier results while a file's size and mtime are unchanged."""
    memo_path = _memo_path()
    try:
        memo: dict[str, dict[str, Any]] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    result: dict[Path, str] = {}
    changed = False
    for path in paths:
        key = str(Path(path).resolve())
        stat = os.stat(key)
        known = memo.get(key)
        if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
            result[path] = known["sha256"]
            continue
        digest = file_sha256(key)
        result[path] = digest
        if time.time_ns() - stat.st_mtime_ns >= MEMO_MIN_AGE_S * 1e9:
            memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
            changed = True
    if changed:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a concurrent reader sees the old or the new memo, never half of one.
            tmp = memo_path.with_name(f"{memo_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo, indent=0, sort_keys=True))
            tmp.replace(memo_path)
        except OSError:
            pass  # the memo only saves time
    return result
