"""MOSSBench (Li et al., arXiv:2406.17806): is a multimodal model oversensitive to safe queries?

300 benign image + question pairs, 100 per stimulus type (type 1 Exaggerated Risk, type 2 Negated Harm,
type 3 Counterintuitive Interpretation), plus a contrast set of 244 harmful queries on the same kind
of images (100 / 44 / 100). Over-sensitivity = refusal rate on the benign set (lower is better); the
contrast set checks that a model (or defense) still refuses real harm.

Data. Text and labels come from the official metadata files ``data/images_information/information.json``
and ``data_contrast/images_information/information.json`` (xirui-li/MOSSBench@8d68b06), shipped in
``tasks/data/mossbench/`` (CC BY-SA 4.0, test use only): ``pid -> {image: "images/<pid>.png", question,
metadata: {over: "type N", ...}, ...}``. Images (292 MB, not shipped) come from

- ``image_dir``: a local folder holding ``<pid>.png`` (upstream ``data/images``, ``data_contrast/images``,
  or a download of the HF repo's ``images/`` / ``contrast_images/``), or else
- the HF hub dataset repo ``AIcell/MOSSBench``, folder ``hf_image_dir`` (``images`` for the benign set,
  ``contrast_images`` for the contrast set), fetched with ``huggingface_hub.snapshot_download``.

Local paths in ``loader_args`` are absolute or relative to ``tasks/data`` (``harness.tasks._common.data_path``).

``datasets.load_dataset("AIcell/MOSSBench", ...)`` is not used: the repo's configs list ``*.png`` next to
a root ``metadata.csv``; on a local replica of that layout ``datasets`` 5.2 picks the csv builder and
fails on the PNGs, and the hub viewer fails on the ``contrast`` config (its images have no rows in the
metadata). The card also types ``metadata_over`` as bool, so the stimulus type would be lost anyway.

Protocol (``experiments/main.py``): the model gets the question verbatim with the image, no system
prompt. Upstream decodes open models with beam search (num_beams 5, max_length 1000, min_length 10,
repetition_penalty 1.5); this harness decodes greedily with the YAML's ``max_new_tokens``.

Metric: refusal rate overall and per stimulus type, the README leaderboard's columns (ALL, Exaggerated
Risk, Negated Harm, Counterintuitive Interpretation) via ``harness.core.metrics.safety_metrics``. The official
judge is GPT-4-turbo with the image attached and the refusal-score template of
``MOSSBench/evaluation/evaluation_prompts.py`` (``gpt-mossbench``); the offline default is a keyword judge.
A missing image file never stops loading: the sample keeps the (absent) path and its generation fails
with ``image file not found: ...`` recorded by the pipeline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.core.records import Sample
from harness.tasks._common import data_path

# Upstream maps "type N" -> column N-1 of its reject-rate table (experiments/main.py, add_per_type_reject).
STIMULUS_TYPES = {1: "Exaggerated Risk", 2: "Negated Harm", 3: "Counterintuitive Interpretation"}

# The README says images are provided as JPG while the metadata names PNGs, and the GitHub history
# holds .webp copies: a file with the same stem and one of these suffixes is accepted.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def stimulus_name(over: str) -> str:
    """``"type 2"`` -> ``"Negated Harm"``; the first integer in the string decides, as upstream."""
    match = re.search(r"\d+", over)
    if match is None or int(match.group()) not in STIMULUS_TYPES:
        raise ValueError(f"unknown MOSSBench stimulus type {over!r}")
    return STIMULUS_TYPES[int(match.group())]


def resolve_image(image_dir: Path, file_name: str) -> Path:
    """``image_dir/<file_name>``, else the same stem with another image suffix; the first candidate
    when none exists (the pipeline then records the missing file as the sample's error)."""
    candidate = image_dir / file_name
    if candidate.is_file():
        return candidate
    for suffix in IMAGE_SUFFIXES:
        other = candidate.with_suffix(suffix)
        if other.is_file():
            return other
    return candidate


def hub_image_dir(repo: str, subdir: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Fetch ``<repo>/<subdir>/*`` from the HF hub (or its local cache) and return that folder."""
    from huggingface_hub import snapshot_download

    root = snapshot_download(
        repo, repo_type="dataset", revision=revision, allow_patterns=[f"{subdir}/*"], cache_dir=cache_dir
    )
    return Path(root) / subdir


def read_information(path: str | Path) -> dict[str, dict[str, Any]]:
    with open(data_path(path), encoding="utf-8") as handle:
        information = json.load(handle)
    if not isinstance(information, dict):
        raise ValueError(f"{path}: expected a JSON object pid -> item")
    return information


def load_mossbench(
    task_name: str,
    information_json: str = "mossbench/oversensitivity_information.json",
    harmful: bool = False,
    image_dir: str | None = None,
    hf_repo: str = "AIcell/MOSSBench",
    hf_image_dir: str = "images",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> list[Sample]:
    """One sample per metadata item, in file order; id = pid, category = stimulus type name.

    ``harmful`` is False for the benign over-sensitivity set (refusal rate) and True for the contrast
    set (ASR). Images come from ``image_dir`` when given, else from the hub repo (module docstring).
    """
    information = read_information(information_json)
    folder = data_path(image_dir) if image_dir else hub_image_dir(hf_repo, hf_image_dir, revision, cache_dir)
    samples = []
    for key, item in information.items():
        pid = str(item.get("pid", key))
        metadata = dict(item.get("metadata") or {})
        over = str(metadata.pop("over", ""))
        samples.append(
            Sample(
                task=task_name,
                id=pid,
                prompt=item["question"],
                image=str(resolve_image(folder, Path(item["image"]).name)),
                harmful=harmful,
                category=stimulus_name(over),
                meta={
                    "pid": pid,
                    "stimulus_type": over,
                    "question": item["question"],
                    "image_file": item["image"],
                    "short_description": item.get("short description", ""),
                    "description": item.get("description", ""),
                    **metadata,  # human / child / syn / ocr flags and harm types (benign set only)
                },
            )
        )
    return samples
