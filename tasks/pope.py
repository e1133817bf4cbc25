"""POPE (Li et al., EMNLP 2023, arXiv:2305.10355): polling-based object-hallucination probe on COCO.

Three splits of 3,000 yes/no questions "Is there a <object> in the image?" on 500 MS-COCO val2014
images each, half "yes": **random**, **popular** and **adversarial** (absent objects drawn at random,
among the most frequent ones, or among frequent co-occurring ones). The category of a sample is its
split.

Data, two sources with the same samples:

- default: HF ``lmms-lab/POPE`` (config default, split ``test``, 9,000 rows; columns ``id, question_id,
  question, answer, image_source, image, category``), images embedded, read with ``datasets`` and
  written to files by ``harness.tasks._common.rows_with_images``;
- ``coco_root`` given: the official RUCAIBox/POPE@3df3ba1 files ``output/coco/coco_pope_<split>.json``
  (JSON lines ``{"question_id", "image", "text", "label"}``, shipped in ``tasks/data/pope/``, MIT) with
  the images read from a local COCO val2014 folder.

Local paths in ``loader_args`` are absolute or relative to ``tasks/data`` (``harness.tasks._common.data_path``).

Prompt (LLaVA-1.5 ``llava_pope_test.jsonl``, also lmms-eval): the question followed by
``"\\nAnswer the question using a single word or phrase."``. Scoring follows LLaVA's
``llava/eval/eval_pope.py`` (the scorer behind most reported POPE numbers), see :func:`parse_yes_no`;
a response is "no" or "yes", never unparsed. Metrics: accuracy, precision, recall, F1 and yes-ratio
with "yes" as the positive class, in percent, overall and, when several splits are loaded, per split
("all" then pools the splits: equal-size splits make its accuracy the mean of theirs, not its F1).
Upstream divides by zero when nothing is predicted "yes"; here such a precision or F1 is NaN.
The yes-ratio has no better direction (0.5 = unbiased); it is marked higher-is-better only because a
metric must pick one. A missing COCO image, or an empty or undecodable HF image cell, never stops
loading: the sample keeps an (absent) path and its generation fails with ``image file not found: ...``
recorded by the pipeline.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable, Mapping, Sequence

from harness.core.metrics import ACCURACY, F1, PRECISION, RECALL, YES_RATIO, cluster_counts, rate, score
from harness.core.records import Generation, Judgement, MetricValue, Sample
from harness.tasks._common import ImageRef, data_path, load_hf_split, rows_with_images

SPLITS = ("random", "popular", "adversarial")
PROMPT_SUFFIX = "\nAnswer the question using a single word or phrase."
LABELS = ("yes", "no")


def parse_yes_no(response: str) -> str:
    """LLaVA ``eval_pope.py``: keep the text before the first ".", drop commas, split on spaces; "no"
    if any word is exactly "No", "not" or "no", else "yes" (so "Nope", "NO" and refusals count as yes).

    The response is stripped first, as LLaVA's ``model_vqa_loader.py`` stores stripped outputs; other
    whitespace is kept, so "No\\nThere is ..." is one word "No\\nThere" and parses as yes, as upstream.
    """
    text = response.strip()
    text = text.split(".")[0] if "." in text else text
    words = text.replace(",", "").split(" ")
    return "no" if any(word in ("No", "not", "no") for word in words) else "yes"


def _check_splits(categories: Sequence[str]) -> list[str]:
    unknown = [c for c in categories if c not in SPLITS]
    if unknown or not categories:
        raise ValueError(f"POPE categories must be a non-empty subset of {SPLITS}, got {list(categories)}")
    return list(categories)


def _sample(task_name: str, split: str, question_id: object, question: str, answer: str, image: ImageRef, image_file: str) -> Sample:
    answer = answer.strip().lower()
    if answer not in LABELS:
        raise ValueError(f"POPE {split}/{question_id}: label {answer!r} is not yes/no")
    return Sample(
        task=task_name,
        id=f"{split}/{question_id}",
        prompt=question.strip() + PROMPT_SUFFIX,
        image=image.path,
        answer=answer,
        category=split,
        meta={"question_id": question_id, "question": question, "image_file": image_file, **image.meta()},
    )


def read_pope_json(path: str | Path) -> list[dict]:
    """An official ``coco_pope_<split>.json``: JSON lines despite the extension."""
    with open(data_path(path), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_pope(
    task_name: str,
    categories: Sequence[str] = ("adversarial",),
    path: str = "lmms-lab/POPE",
    name: str | None = None,
    split: str = "test",
    data_files: str | list[str] | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
    coco_root: str | None = None,
    json_dir: str = "pope",
) -> list[Sample]:
    """POPE questions of the given splits; id = ``<split>/<question_id>``, answer "yes"/"no".

    With ``coco_root`` the official JSON files under ``json_dir`` (relative to ``tasks/data``) are read,
    splits in the order given; otherwise the HF dataset, in its row order, filtered on ``category``.
    """
    wanted = _check_splits(categories)
    if coco_root is not None:
        root = data_path(coco_root)
        return [
            _sample(task_name, category, row["question_id"], row["text"], row["label"], ImageRef(str(root / row["image"])), row["image"])
            for category in wanted
            for row in read_pope_json(Path(json_dir) / f"coco_pope_{category}.json")
        ]
    dataset = load_hf_split(path, name, split, data_files, cache_dir, revision)
    # Select on the text column first so that only the wanted rows' images are decoded and written.
    column = list(dataset["category"])
    rows = [i for i, category in enumerate(column) if category in wanted]
    if not rows:  # a renamed column value must not turn into an empty task
        raise ValueError(f"POPE {path}: no rows with category in {wanted}; found {sorted(set(column))}")
    dataset = dataset.select(rows)
    samples = []
    for row, image in rows_with_images(dataset, task_name, sample_id=lambda row, _: f"{row['category']}/{row['question_id']}"):
        samples.append(_sample(task_name, row["category"], row["question_id"], row["question"], row["answer"], image,
                               row.get("image_source") or ""))
    return samples


@dataclass(frozen=True)
class PopeCounts:
    """Confusion counts with "yes" as the positive class, as in ``eval_pope.py``."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def f1(self) -> float:
        """2PR/(P+R) as a fraction; NaN when P or R is undefined (no "yes" predicted or no "yes"
        gold), 0 when both are 0 (upstream raises ZeroDivisionError in all three cases)."""
        if self.tp + self.fp == 0 or self.tp + self.fn == 0:
            return float("nan")
        if self.tp == 0:
            return 0.0
        precision = self.tp / (self.tp + self.fp)
        recall = self.tp / (self.tp + self.fn)
        return 2 * precision * recall / (precision + recall)


def pope_counts(pairs: Iterable[tuple[str, str]]) -> PopeCounts:
    """Counts from (gold answer, response) pairs; the response is parsed with :func:`parse_yes_no`."""
    tp = fp = tn = fn = 0
    for answer, response in pairs:
        predicted_yes = parse_yes_no(response) == "yes"
        gold_yes = answer == "yes"
        tp += predicted_yes and gold_yes
        fp += predicted_yes and not gold_yes
        tn += not predicted_yes and not gold_yes
        fn += not predicted_yes and gold_yes
    return PopeCounts(tp, fp, tn, fn)


def count_metrics(
    counts: PopeCounts, subset: str = "all", answers: Sequence[tuple[Hashable, bool, bool]] | None = None
) -> list[MetricValue]:
    """accuracy, precision, recall, f1, yes_ratio (percent) of one set of counts.

    ``answers``: ``(cluster key, gold yes, predicted yes)`` of each answer behind ``counts``, when the
    rate intervals are clustered (the same image asked about several objects); None, plain Wilson.
    """
    def clusters(pairs: Iterable[tuple[Hashable, bool]]) -> list[tuple[int, int]] | None:
        return None if answers is None else cluster_counts(pairs)

    every = answers or []
    f1 = counts.f1
    return [
        rate(ACCURACY, counts.tp + counts.tn, counts.n, subset=subset,
             clusters=clusters((key, gold == predicted) for key, gold, predicted in every)),
        rate(PRECISION, counts.tp, counts.tp + counts.fp, subset=subset,
             clusters=clusters((key, gold) for key, gold, predicted in every if predicted)),
        rate(RECALL, counts.tp, counts.tp + counts.fn, subset=subset,
             clusters=clusters((key, predicted) for key, gold, predicted in every if gold)),
        score(F1, 100.0 * f1 if not math.isnan(f1) else f1, counts.n, subset=subset),
        rate(YES_RATIO, counts.tp + counts.fp, counts.n, subset=subset,
             clusters=clusters((key, predicted) for key, _, predicted in every)),
    ]


def pope_metrics(
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    judgements: Mapping[str, Judgement],
    *,
    cluster_by: str | None = None,
) -> list[MetricValue]:
    """POPE metrics overall ("all") and per split when more than one split is present.

    Samples without a usable generation are left out, as everywhere in the harness. ``cluster_by``
    (``image`` in POPE's YAML: each image is asked about six objects per split, and the splits share
    images) clusters the rate intervals; the values do not depend on it.
    """
    del judgements  # scored against the reference answer
    by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
    keys: dict[str, list[Hashable]] = defaultdict(list)
    for sample in samples:
        generation = generations.get(sample.id)
        if generation is not None and generation.ok:
            by_split[sample.category or ""].append((sample.answer or "", generation.text or ""))
            keys[sample.category or ""].append(sample.cluster_key(cluster_by))
    if not by_split:
        return []

    def answers(split_names: Iterable[str]) -> list[tuple[Hashable, bool, bool]] | None:
        if cluster_by is None:
            return None
        return [(key, answer == "yes", parse_yes_no(text) == "yes")
                for name in split_names for key, (answer, text) in zip(keys[name], by_split[name])]

    values = count_metrics(pope_counts(pair for pairs in by_split.values() for pair in pairs),
                           answers=answers(by_split))
    if len(by_split) > 1:
        order = {name: i for i, name in enumerate(SPLITS)}
        for split in sorted(by_split, key=lambda s: (order.get(s, len(order)), s)):
            values.extend(count_metrics(pope_counts(by_split[split]), subset=split, answers=answers([split])))
    return values
