"""SPA-VL (Zhang et al., "SPA-VL: A Comprehensive Safety Preference Alignment Dataset for Vision
Language Models", arXiv:2406.12030; HF ``sqrti/SPA-VL``, CC BY 4.0).

The ``test`` config has two splits of 265 rows each, ``harm`` (harmful questions, used here) and
``help`` (helpfulness, judged by GPT-4V win-rate in the paper). Fields: ``image`` (embedded), ``question``,
and the three levels of the SPA-VL harm taxonomy ``class1`` (6 domains), ``class2`` (13 categories),
``class3`` (53 subcategories).

Protocol: the model sees the image and ``question`` verbatim; the paper scores the harm split with
MD-Judge (``OpenSafetyLab/MD-Judge-v0.1``, official judge ``md-judge``) as the unsafe rate = ASR.
``category`` is ``class1``; ``class2``/``class3`` are kept in ``meta``.
"""

from __future__ import annotations

from harness.core.records import Sample
from harness.tasks._common import load_hf_split, rows_with_images


def load_spavl(
    task_name: str,
    path: str = "sqrti/SPA-VL",
    name: str | None = "test",
    split: str = "harm",
    data_files: str | list[str] | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
) -> list[Sample]:
    """One harmful sample per row, in dataset order; sample id = the 0-based row number.

    Images are written to the image cache (``harness.tasks._common.save_image``); a row whose image cell is
    empty or undecodable is still returned, pointing at a file that is never created, with
    ``meta["image_error"]``; it fails alone at generation.
    """
    dataset = load_hf_split(path, name, split, data_files, cache_dir, revision)
    samples = []
    for index, (row, ref) in enumerate(rows_with_images(dataset, task_name, sample_id=lambda _, i: str(i))):
        sample_id = str(index)
        samples.append(
            Sample(
                task=task_name,
                id=sample_id,
                prompt=row["question"],
                image=ref.path,
                harmful=True,
                category=row["class1"],
                meta={"class2": row.get("class2"), "class3": row.get("class3"), **ref.meta()},
            )
        )
    return samples
