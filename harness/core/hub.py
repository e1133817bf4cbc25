"""Identifying model files without loading them, and the device a run uses.

Fingerprints go into the generation cache key, so they must be cheap and must change whenever the
weights change: a Hub model is identified by the commit its revision resolves to in the local Hub
cache; a local folder by the sha256 of its weight, config and tokenizer files (memoised by size and
mtime, so repeat calls do not re-read gigabytes). Models, judges and scorers all fingerprint their
checkpoints this way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from harness.core.images import file_sha256
from harness.core.paths import cache_dir

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
