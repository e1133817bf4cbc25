"""easy-VQA (Victor Zhou, `easy-vqa` package, MIT): synthetic shapes, 13 one-word answers.

A cheap, offline utility check: every image and question ships inside the pip package.
"""

from __future__ import annotations

import re
import string
from typing import Mapping, Sequence

from harness.core.metrics import accuracy_metrics
from harness.core.records import Generation, Judgement, MetricValue, Sample
from harness.tasks._common import generated_texts

PROMPT_SUFFIX = "\nAnswer with a single word."

SHAPES = frozenset({"circle", "rectangle", "triangle"})
COLORS = frozenset({"red", "green", "blue", "black", "gray", "yellow", "teal", "brown"})
YES_NO = frozenset({"yes", "no"})

ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def answer_type(answer: str) -> str:
    if answer in YES_NO:
        return "yes/no"
    if answer in COLORS:
        return "color"
    if answer in SHAPES:
        return "shape"
    raise ValueError(f"easy-vqa: unknown answer {answer!r}")


def question_kind(question: str) -> str:
    """'open colour', 'open shape', 'negated yes/no' ("is there not ...", "is no ... present") or 'yes/no'."""
    words = question.lower().replace("?", "").split()
    if words and words[0] == "what":
        return "open colour" if {"color", "colour"} & set(words) else "open shape"
    return "negated yes/no" if {"not", "no"} & set(words) else "yes/no"


def normalize(text: str) -> list[str]:
    """Lower-cased words with punctuation removed and leading articles dropped."""
    # Punctuation becomes a space so that "yes,it" splits into two words rather than gluing.
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    while words and words[0] in ARTICLES:
        words.pop(0)
    return words


def is_correct(response: str, answer: str) -> bool:
    """Correct iff the first normalised word of the response is the reference answer."""
    words = normalize(response)
    return bool(words) and words[0] == answer.lower()


def load_easyvqa(task_name: str, split: str = "test") -> list[Sample]:
    """All questions of a split, in the package's order; ids are ``<split>-<position>``."""
    import easy_vqa

    if split == "test":
        questions, answers, image_ids = easy_vqa.get_test_questions()
        image_paths = easy_vqa.get_test_image_paths()
    elif split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        image_paths = easy_vqa.get_train_image_paths()
    else:
        raise ValueError(f"easy-vqa split must be 'test' or 'train', got {split!r}")
    return [
        Sample(
            task=task_name,
            id=f"{split}-{position}",
            prompt=question + PROMPT_SUFFIX,
            image=image_paths[image_id],
            answer=answer,
            category=answer_type(answer),
            meta={"question": question, "image_id": image_id},
        )
        for position, (question, answer, image_id) in enumerate(zip(questions, answers, image_ids))
    ]


def easyvqa_metrics(
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    judgements: Mapping[str, Judgement],
    *,
    cluster_by: str | None = None,
) -> list[MetricValue]:
    """Accuracy overall and per answer type (intervals clustered by ``cluster_by`` when a task declares it)."""
    del judgements  # scored against the reference answer
    return accuracy_metrics(
        ((sample, is_correct(text, sample.answer or "")) for sample, text in generated_texts(samples, generations)),
        cluster_by=cluster_by,
    )
