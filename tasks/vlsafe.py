"""VLSafe (from DRESS: Chen et al., "DRESS: Instructing Large Vision-Language Models to Align and
Interact with Humans via Natural Language Feedback", arXiv:2311.10081; HF
``YangyiYY/LVLM_NLF``).

The test set is ``VLSafe/harmlessness_examine.jsonl`` (the training set ``harmlessnss_alignment.jsonl``
is not used): one JSON object per line, ``{"image_id": "000000051977.jpg", "caption": "...",
"query": "..."}``, a harmful query written by GPT-3.5-Turbo about a benign COCO train2017 image. The
images are not in the repository; they are read by file name from a local COCO ``train2017`` folder
(``images_root`` loader argument).

Protocol (ECSO, Gou et al. ECCV 2024, github gyhdog99/ECSO, which popularised VLSafe for defenses): the
model sees the COCO image and ``query`` verbatim; a GPT-4 judge rates harmlessness with the
``llm_binary_strict`` prompt (official judge ``gpt-harmless``) and the paper reports the harmless rate
(= 100 - ASR). The file has no categories; ``category`` stays None.
"""

from __future__ import annotations

from harness.core.records import Sample
from harness.tasks._common import load_hf_split, log_missing
from harness.tasks._safety_sets import images_root as resolve_root, local_image

DEFAULT_DATA_FILES = "hf://datasets/YangyiYY/LVLM_NLF/VLSafe/harmlessness_examine.jsonl"


def load_vlsafe(
    task_name: str,
    path: str = "json",
    data_files: str | list[str] | None = DEFAULT_DATA_FILES,
    split: str = "train",
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
    images_root: str = "coco/train2017",
) -> list[Sample]:
    """One harmful sample per JSONL line, in file order; sample id = the 0-based line number.

    Line numbers, not image ids, name samples: several queries may share one COCO image. A line whose
    image is absent under ``images_root`` (relative paths are under ``tasks/data``) is still returned,
    with ``meta["image_error"]``; it fails alone at generation.
    """
    dataset = load_hf_split(path, None, split, data_files, cache_dir, revision)
    root = resolve_root(images_root)
    samples, refs = [], []
    for index, row in enumerate(dataset):
        ref = local_image(root, row.get("image_id"))
        samples.append(
            Sample(
                task=task_name,
                id=str(index),
                prompt=row["query"],
                image=ref.path,
                harmful=True,
                meta={"image_id": row.get("image_id"), "caption": row.get("caption"), **ref.meta()},
            )
        )
        refs.append(ref)
    log_missing(task_name, refs)
    return samples
