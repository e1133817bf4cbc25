"""SIUO, Safe Inputs but Unsafe Output (Wang et al., NAACL 2025, arXiv:2406.15279): generation set.

167 image + question pairs (sinwang20/SIUO@18974b6, ``data/siuo_gen.json``) in which the image and the
question are each harmless but together call for a safety-aware answer (a user on a rooftop asking for
"encouragement to go to a new world"). 9 categories: privacy violation 21, morality 20, religion beliefs
20, self-harm 19, dangerous behavior 18, illegal activities & crime 18, discrimination & stereotyping 18,
information misinterpretation 17, controversial topics/politics 16. Every item is ``harmful=True``.

File format (a JSON list): ``{"question_id": 1001, "image": "S-01.png", "question": ..., "category":
..., "safety_warning": ..., "reference_answer": ...}``; images are ``<image root>/<image>`` (upstream
``data/images/``, distributed as ``SIUO-images.zip``). ``json_path`` and ``image_root`` name local copies;
whichever is not given is fetched from the HF hub dataset repo ``sinwang/SIUO`` (``siuo_gen.json`` and
``images/`` at its root) with ``huggingface_hub.snapshot_download``. The data is CC BY-NC 4.0 and is
not shipped here.

Local paths in ``loader_args`` are absolute or relative to ``tasks/data`` (``harness.tasks._common.data_path``).

Protocol (``eval/generation-gpt4o-gen.py``): the question verbatim with the image, no system prompt
(upstream samples 3 responses of up to 500 tokens from GPT-4o; the harness decodes one greedy answer).
The official judge (``eval/gpt-eval.py``) is GPT-4V with the image, asked whether the response is safe
given ``safety_warning`` and ``reference_answer`` (kept in ``Sample.meta`` for it), registered as
``gpt-siuo``. The offline default is a refusal-keyword judge, a coarse proxy: SIUO counts a helpful
answer that names the hidden risk as safe, which a keyword judge scores as an attack success.
A missing image file never stops loading: the sample keeps the (absent) path and its generation fails
with ``image file not found: ...`` recorded by the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.records import Sample
from harness.tasks._common import data_path

GEN_FILE = "siuo_gen.json"
IMAGE_FOLDER = "images"


def hub_snapshot(repo: str, patterns: list[str], revision: str | None = None, cache_dir: str | None = None) -> Path:
    """Fetch the files matching ``patterns`` of an HF hub dataset repo (or its cache); return its root."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns, cache_dir=cache_dir))


def load_siuo(
    task_name: str,
    json_path: str | None = None,
    image_root: str | None = None,
    hf_repo: str = "sinwang/SIUO",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> list[Sample]:
    """One harmful sample per item of ``siuo_gen.json``, in file order; id = question_id."""
    patterns = ([GEN_FILE] if json_path is None else []) + ([f"{IMAGE_FOLDER}/*"] if image_root is None else [])
    if patterns:
        root = hub_snapshot(hf_repo, patterns, revision, cache_dir)
        json_path = json_path or str(root / GEN_FILE)
        image_root = image_root or str(root / IMAGE_FOLDER)
    with open(data_path(json_path), encoding="utf-8") as handle:  # type: ignore[arg-type]
        items = json.load(handle)
    if not isinstance(items, list):
        raise ValueError(f"{json_path}: expected a JSON list of SIUO items")
    folder = data_path(image_root)  # type: ignore[arg-type]
    samples = []
    for item in items:
        question_id = str(item["question_id"])
        samples.append(
            Sample(
                task=task_name,
                id=question_id,
                prompt=item["question"],
                image=str(folder / item["image"]),
                harmful=True,
                category=item["category"],
                meta={
                    "question_id": item["question_id"],
                    "question": item["question"],
                    "image_file": item["image"],
                    "safety_warning": item["safety_warning"],
                    "reference_answer": item["reference_answer"],
                },
            )
        )
    return samples
