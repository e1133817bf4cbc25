"""JailBreakV-28K (Luo et al., "JailBreakV: A Benchmark for Assessing the Robustness of MultiModal Large
Language Models against Jailbreak Attacks", COLM 2024, arXiv:2404.03027; HF
``JailbreakV-28K/JailBreakV-28k``, MIT).

The HF dataset config ``JailBreakV_28K`` has the splits ``JailBreakV_28K`` (28,000 rows) and
``mini_JailBreakV_28K`` (280 rows, the authors' small evaluation set), read from the CSV files
``JailBreakV_28K/{split}.csv`` with columns ``id, jailbreak_query, redteam_query, format, policy,
image_path, from, selected_mini, transfer_from_llm``. ``image_path`` is relative to the unpacked
``JailBreakV_28K/`` folder (``llm_transfer_attack/...``, ``query_related/...``, ``figstep/...``); the
images come from the authors' zip (the HF repository lacks many of them), so they are read from a local
``images_root`` given as a loader argument.

Protocol: the model sees the image and ``jailbreak_query`` verbatim (the text attack already wraps the
RedTeam-2K ``redteam_query``). The paper judges (``jailbreak_query``, response) with LlamaGuard-7B and
reports ASR; here the official judge is Llama Guard 3 (``llama-guard-3``). ``category`` is the safety
policy (16 policies); ``meta`` keeps ``format`` (Template / Persuade / Logic / FigStep / query-related
attacks) and ``from`` (the RedTeam-2K source) for per-attack breakdowns.
"""

from __future__ import annotations

from harness.core.records import Sample
from harness.tasks._common import is_missing, load_hf_split, log_missing
from harness.tasks._safety_sets import images_root as resolve_root, local_image

META_FIELDS = ("format", "from", "redteam_query", "image_path", "selected_mini", "transfer_from_llm")


def load_jailbreakv(
    task_name: str,
    path: str = "JailbreakV-28K/JailBreakV-28k",
    name: str | None = "JailBreakV_28K",
    split: str = "mini_JailBreakV_28K",
    data_files: str | list[str] | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
    images_root: str = "jailbreakv-28k/JailBreakV_28K",
) -> list[Sample]:
    """One harmful sample per row, in dataset order; sample id = the dataset's ``id``.

    ``images_root`` (relative paths are under ``tasks/data``) is the unpacked ``JailBreakV_28K/`` folder.
    A row whose image file is absent is still returned, with ``meta["image_error"]``; it fails alone at
    generation.
    """
    dataset = load_hf_split(path, name, split, data_files, cache_dir, revision)
    root = resolve_root(images_root)
    samples, refs = [], []
    for row in dataset:
        ref = local_image(root, None if is_missing(row.get("image_path")) else row["image_path"])
        meta = {field: row.get(field) for field in META_FIELDS}
        samples.append(
            Sample(
                task=task_name,
                id=str(row["id"]),
                prompt=row["jailbreak_query"],
                image=ref.path,
                harmful=True,
                category=row["policy"],
                meta={**meta, **ref.meta()},
            )
        )
        refs.append(ref)
    log_missing(task_name, refs)
    return samples
