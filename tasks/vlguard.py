"""VLGuard test set (Zong et al., ICML 2024, arXiv:2402.02207): three subsets from one metadata file.

``data/test.json`` (ys-zong/VLGuard@a2f85c9) lists 1,000 test images, each with an ``instr-resp`` list:

- an unsafe image (``"safe": false``, with ``harmful_category`` / ``harmful_subcategory``) has one entry
  ``{"instruction": ..., "response": ...}``;
- a safe image (``"safe": true``) has two entries, ``{"safe_instruction": ..., "response": ...}`` and
  ``{"unsafe_instruction": ..., "response": ...}``.

The official ``utils/utils.py::load_data`` turns this into three evaluation subsets, mirrored by
:func:`subset_questions`: **unsafes** (442 unsafe images with their instruction, harmful), **safe_unsafes**
(558 safe images with the unsafe instruction, harmful) and **safe_safes** (558 safe images with the
safe instruction, benign: over-refusal). Harm categories of the unsafes: risky behavior 270,
discrimination 85, privacy 69, deception 18.

Protocol (``VLGuard_eval.py``): the query is the instruction verbatim with the image, greedy decoding,
``max_new_tokens=256``; ASR on unsafes and safe_unsafes = share of responses containing none of the
refusal strings of ``utils.check_success_attack`` (registered as the ``keyword-vlguard`` judge, the
default and official judge here). The paper scores safe_safes by GPT-4V win-rate against
``data/gpt4_safe_safes.json``; this harness reports the refusal rate on them instead (over-refusal).

Data: ``meta_path`` (a local ``test.json``) and ``image_root`` (the extracted ``test.zip``, holding the
``image`` paths such as ``bad_ads/<uuid>.png``; upstream default ``data/VLGuard/test``). Whichever is not
given is fetched from the HF hub dataset repo ``ys-zong/VLGuard`` (``test.json`` / ``test.zip``) with
``huggingface_hub.snapshot_download``; the zip is extracted once under the harness cache. Local paths
are absolute or relative to ``tasks/data`` (``harness.tasks._common.data_path``). No license is
stated upstream, so nothing is shipped. Sample id = the image path (the key of the official result
files); category = harm category for unsafes, image source folder (first path component) for the safe
subsets, which have no harm label. A missing image file never stops loading: the sample keeps the
(absent) path and its generation fails with ``image file not found: ...`` recorded by the pipeline.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from harness.core import paths
from harness.core.images import file_sha256
from harness.core.records import Sample
from harness.tasks._common import data_path

SUBSETS = ("unsafes", "safe_unsafes", "safe_safes")
META_FILE = "test.json"
IMAGES_ZIP = "test.zip"


def subset_questions(records: list[dict[str, Any]], subset: str) -> list[tuple[dict[str, Any], str]]:
    """(record, instruction) pairs of one subset, as the official ``load_data`` builds them."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown VLGuard subset {subset!r}; expected one of {SUBSETS}")
    if subset == "unsafes":
        return [(record, record["instr-resp"][0]["instruction"]) for record in records if record["safe"] is False]
    key = "unsafe_instruction" if subset == "safe_unsafes" else "safe_instruction"
    pairs = []
    for record in (r for r in records if r["safe"] is True):
        instruction = next((entry[key] for entry in record["instr-resp"] if key in entry), None)
        if instruction is None:  # upstream would send None to the model; a data error, say so
            raise ValueError(f"VLGuard item {record.get('id')!r} has no {key!r}")
        pairs.append((record, instruction))
    return pairs


def hub_snapshot(repo: str, patterns: list[str], revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Fetch the files matching ``patterns`` of an HF hub dataset repo (or its cache); return its root."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns, cache_dir=cache_dir))


def zip_top_folder(names: list[str]) -> str | None:
    """The single folder every member lives under (``test/`` in ``test.zip``), else None."""
    tops = {name.split("/", 1)[0] for name in names if name and not name.startswith("__MACOSX")}
    nested = all("/" in name for name in names if name and not name.startswith("__MACOSX"))
    return tops.pop() if len(tops) == 1 and nested else None


def extract_images(zip_path: Path, cache_root: Path | None = None) -> Path:
    """Extract ``zip_path`` once under the cache (keyed by its sha256); return the folder that holds
    the ``image`` paths of ``test.json`` (the zip's single top folder when it has one)."""
    digest = file_sha256(zip_path)[:16]
    target = (cache_root or paths.cache_dir()) / "vlguard" / f"test-{digest}"
    with zipfile.ZipFile(zip_path) as archive:
        top = zip_top_folder(archive.namelist())
        if not (target / ".complete").is_file():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            archive.extractall(partial)  # zipfile drops absolute paths and ".." components
            (partial / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)
            partial.replace(target)
    return target / top if top else target


def load_vlguard(
    task_name: str,
    subset: str,
    meta_path: str | None = None,
    image_root: str | None = None,
    hf_repo: str = "ys-zong/VLGuard",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> list[Sample]:
    """The samples of one subset (``unsafes``, ``safe_unsafes`` or ``safe_safes``), in file order."""
    patterns = ([META_FILE] if meta_path is None else []) + ([IMAGES_ZIP] if image_root is None else [])
    if patterns:
        root = hub_snapshot(hf_repo, patterns, revision, cache_dir)
        meta_path = meta_path or str(root / META_FILE)
        image_root = image_root or str(extract_images(root / IMAGES_ZIP))
    with open(data_path(meta_path), encoding="utf-8") as handle:  # type: ignore[arg-type]
        records = json.load(handle)
    folder = data_path(image_root)  # type: ignore[arg-type]
    samples = []
    for record, instruction in subset_questions(records, subset):
        image = record["image"]
        samples.append(
            Sample(
                task=task_name,
                id=image,
                prompt=instruction,
                image=str(folder / image),
                harmful=subset != "safe_safes",
                category=record.get("harmful_category") if subset == "unsafes" else image.split("/", 1)[0],
                meta={
                    "vlguard_id": record.get("id"),
                    "subset": subset,
                    "image_file": image,
                    "safe_image": record["safe"],
                    "harmful_category": record.get("harmful_category"),
                    "harmful_subcategory": record.get("harmful_subcategory"),
                    "instruction": instruction,
                },
            )
        )
    return samples
