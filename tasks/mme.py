"""MME (Fu et al., arXiv:2306.13394): 14 yes/no subtasks, two questions per image.

Scoring follows the official ``eval_tool/calculation.py``: a response is parsed to yes / no / other,
acc is per-question accuracy ("other" is wrong), acc+ is the share of images whose two questions are
both right, and a subtask scores 100*acc + 100*acc+ (0-200). Perception sums 10 subtasks (max 2000),
Cognition 4 (max 800).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from harness.core.metrics import ACC_PLUS, MME_COGNITION, MME_PERCEPTION, MME_SCORE, accuracy_metrics, rate, score
from harness.core.records import Generation, Judgement, MetricValue, Sample
from harness.tasks._common import load_hf_split, rows_with_images

# LLaVA-1.5's MME protocol (docs/Evaluation.md): the question as given, then this line.
PROMPT_SUFFIX = "\nAnswer the question using a single word or phrase."

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_yes_no(response: str) -> str:
    """Official parser: exact "yes"/"no", else "yes"/"no" within the first 4 characters, else "other".

    Surrounding whitespace is stripped first (the official result files hold stripped answers).
    The check order matters: "no" inside the first 4 characters wins only if "yes" is absent there.
    """
    text = response.strip().lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def is_correct(response: str, answer: str) -> bool:
    return parse_yes_no(response) == answer.strip().lower()


def load_mme(
    task_name: str,
    path: str = "lmms-lab/MME",
    name: str | None = None,
    split: str = "test",
    data_files: str | list[str] | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
) -> list[Sample]:
    """MME questions; ``group`` is the image key (HF ``question_id``, shared by a pair).

    Sample ids are ``<question_id>/q<k>``, k = the question's position among its image's questions.
    A row with an empty or undecodable image is kept with ``meta["image_error"]``: it fails alone.
    Dataset order; the pipeline's stratified order (``stratify_by: category``) shuffles whole pairs and
    interleaves subtasks, and ``--limit`` never splits a pair.
    """
    dataset = load_hf_split(path, name, split, data_files, cache_dir, revision)
    seen: dict[str, int] = defaultdict(int)
    samples = []
    for row, image in rows_with_images(dataset, task_name, sample_id=lambda row, _: str(row["question_id"])):
        key = row["question_id"]
        position = seen[key]
        seen[key] += 1
        samples.append(
            Sample(
                task=task_name,
                id=f"{key}/q{position}",
                prompt=row["question"] + PROMPT_SUFFIX,
                image=image.path,
                answer=row["answer"],
                category=row["category"],
                group=key,
                meta={"question_id": key, "question": row["question"], **image.meta()},
            )
        )
    return samples


@dataclass
class SubtaskScore:
    acc: float  # 0-1 over scored questions
    acc_plus: float  # 0-1 over images whose questions were all scored
    n_questions: int
    n_correct: int
    n_images: int
    n_images_correct: int

    @property
    def score(self) -> float:
        return 100.0 * self.acc + 100.0 * self.acc_plus


def mme_scores(items: Iterable[tuple[str, str, str, str | None]]) -> dict[str, SubtaskScore]:
    """Per-subtask acc / acc+ / score from (subtask, image key, answer, response or None) tuples.

    A None response (not generated) is left out of acc, and its image out of acc+; an image with fewer
    than two questions (e.g. a pair split by --limit) is also left out of acc+, which needs both.
    """
    by_image: dict[tuple[str, str], list[bool | None]] = defaultdict(list)
    for subtask, image, answer, response in items:
        by_image[(subtask, image)].append(None if response is None else is_correct(response, answer))

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # questions, correct, images, images right
    for (subtask, _), results in by_image.items():
        counts = totals[subtask]
        scored = [r for r in results if r is not None]
        counts[0] += len(scored)
        counts[1] += sum(scored)
        if len(scored) == len(results) >= 2:
            counts[2] += 1
            counts[3] += all(scored)
    return {
        subtask: SubtaskScore(
            acc=correct / questions if questions else float("nan"),
            acc_plus=images_right / images if images else float("nan"),
            n_questions=questions,
            n_correct=correct,
            n_images=images,
            n_images_correct=images_right,
        )
        for subtask, (questions, correct, images, images_right) in totals.items()
    }


def _subtask_order(subtask: str) -> tuple[int, str]:
    official = PERCEPTION + COGNITION
    return (official.index(subtask), "") if subtask in official else (len(official), subtask)


def mme_metrics(
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    judgements: Mapping[str, Judgement],
    *,
    cluster_by: str | None = None,
) -> list[MetricValue]:
    """Per-subtask score and acc+, Perception and Cognition totals, and plain accuracy.

    Totals sum only the subtasks present, so they are on the official 2000/800 scale only for a full run.
    ``cluster_by`` (``group`` in MME's YAML: the two questions on one image) clusters the plain
    accuracy's interval; acc+ already counts one item per image, so its interval stays the plain one.
    """
    del judgements  # scored against the reference answer
    responses: list[tuple[Sample, str | None]] = []
    for sample in samples:
        generation = generations.get(sample.id)
        responses.append((sample, generation.text if generation is not None and generation.ok else None))
    scores = mme_scores((s.category or "", s.group or s.id, s.answer or "", text) for s, text in responses)

    values: list[MetricValue] = []
    for total, subtasks in ((MME_PERCEPTION, PERCEPTION), (MME_COGNITION, COGNITION)):
        present = [scores[name] for name in subtasks if name in scores]
        if present:
            values.append(score(total, sum(s.score for s in present), sum(s.n_questions for s in present)))
    for subtask in sorted(scores, key=_subtask_order):
        result = scores[subtask]
        values.append(score(MME_SCORE, result.score, result.n_questions, subset=subtask))
        values.append(rate(ACC_PLUS, result.n_images_correct, result.n_images, subset=subtask))
    values.extend(
        accuracy_metrics(
            ((sample, is_correct(text, sample.answer or "")) for sample, text in responses if text is not None),
            cluster_by=cluster_by,
        )
    )
    return values
