"""MMBench (Liu et al., arXiv:2307.06281), English dev split with CircularEval.

The HF rows include the circular copies of each question (options rotated, ``index + k*1_000_000``).
A question counts as solved only if every copy of it is answered correctly.

Deviation from the official evaluator, on purpose: answers are mapped to a letter by rules only
(:func:`extract_choice`). The official pipeline asks ChatGPT to match answers the rules cannot, then
falls back to a random letter; neither is available offline or reproducible, so an unmatched answer
here is simply wrong. With the "answer with the letter directly" prompt nearly all answers match.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from typing import Hashable, Mapping, Sequence

from harness.core.metrics import CIRCULAR_ACCURACY, VANILLA_ACCURACY, accuracy_metrics, clustered_rate
from harness.core.records import Generation, Judgement, MetricValue, Sample
from harness.tasks._common import generated_texts, is_missing, load_hf_split, rows_with_images

CIRCULAR_STRIDE = 1_000_000
OPTION_LETTERS = "ABCDE"
# LLaVA-1.5 model_vqa_mmbench.py --single-pred-prompt (English).
PROMPT_SUFFIX = "\nAnswer with the option's letter from the given choices directly."

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def options_of(row: Mapping[str, object]) -> dict[str, str]:
    """Option letter -> text, up to the first missing option (as LLaVA's get_options)."""
    options: dict[str, str] = {}
    for letter in OPTION_LETTERS:
        value = row.get(letter)
        if is_missing(value):
            break
        options[letter] = str(value)
    return options


def build_prompt(question: str, hint: object, options: Mapping[str, str]) -> str:
    """LLaVA-1.5 layout: [hint \\n] question, one "X. option" line per option, then the instruction."""
    text = question if is_missing(hint) else f"{hint}\n{question}"
    for letter, option in options.items():
        text += f"\n{letter}. {option}"
    return text + PROMPT_SUFFIX


def extract_choice(response: str, options: Mapping[str, str]) -> str | None:
    """Map a free-text answer to an option letter by rules, or None when no rule decides.

    1. the answer starts with a bare letter: "B", "B.", "(B)", "B) cat", "B: cat", "B\\n...";
    2. exactly one distinct option letter appears as a standalone capital word ("The answer is C");
    3. exactly one option's text appears in the answer, case-insensitively ("a red apple").
    """
    text = response.strip()
    letters = "".join(options)
    if not text or not letters:
        return None
    # Rule 1 needs punctuation or the end after the letter, so the article in "A cat" is not read as A.
    leading = re.match(rf"[(\[]?([{letters}])(?:[)\].:,\n]|$)", text)
    if leading:
        return leading.group(1)
    words = set(_PUNCTUATION.sub(" ", text).split())
    found = [letter for letter in options if letter in words]
    if len(found) == 1:
        return found[0]
    lowered = text.lower()
    matches = [letter for letter, option in options.items() if option.strip() and option.strip().lower() in lowered]
    return matches[0] if len(matches) == 1 else None


def is_correct(response: str, sample: Sample) -> bool:
    return extract_choice(response, sample.meta["options"]) == sample.answer


def load_mmbench(
    task_name: str,
    path: str = "lmms-lab/MMBench",
    name: str | None = "en",
    split: str = "dev",
    data_files: str | list[str] | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
) -> list[Sample]:
    """Every row (original and circular copies); id = the row's ``index``.

    A row with an empty or undecodable image is kept with ``meta["image_error"]``: it fails alone.
    Rows are ordered by question, original first; the pipeline's stratified order
    (``stratify_by: category``) shuffles whole circular groups and ``--limit`` never splits one.
    """
    dataset = load_hf_split(path, name, split, data_files, cache_dir, revision)
    samples = []
    for row, image in rows_with_images(dataset, task_name, sample_id=lambda row, _: str(row["index"])):
        index = int(row["index"])
        options = options_of(row)
        samples.append(
            Sample(
                task=task_name,
                id=str(index),
                prompt=build_prompt(row["question"], row.get("hint"), options),
                image=image.path,
                answer=row["answer"],
                category=row["category"],
                group=str(index % CIRCULAR_STRIDE),
                meta={
                    "index": index,
                    "circular_pass": index // CIRCULAR_STRIDE,
                    "options": options,
                    "l2_category": row.get("L2-category"),
                    "source": row.get("source"),
                    "split": row.get("split"),
                    **image.meta(),
                },
            )
        )
    samples.sort(key=lambda sample: (int(sample.group), sample.meta["circular_pass"]))
    return samples


def mmbench_metrics(
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    judgements: Mapping[str, Judgement],
    *,
    cluster_by: str | None = None,
) -> list[MetricValue]:
    """CircularEval accuracy overall and per category, and vanilla accuracy on the original rows.

    A question whose copies were not all generated is left out of the circular accuracy (its
    generated copies still count in vanilla accuracy if the original row is among them).

    ``cluster_by`` clusters the rate intervals; a circular question counts in the cluster of its first
    copy. MMBench's YAML declares ``group`` (the circular copies): both rates count one item per
    question, so every cluster has one item and the intervals are the plain Wilson ones.
    """
    del judgements  # scored against the reference answer
    correct = {sample.id: is_correct(text, sample) for sample, text in generated_texts(samples, generations)}

    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.group or sample.id].append(sample)
    circular: dict[str, list[tuple[Hashable, bool]]] = defaultdict(list)
    for members in groups.values():
        if not all(member.id in correct for member in members):
            continue
        solved = (members[0].cluster_key(cluster_by), all(correct[member.id] for member in members))
        circular["all"].append(solved)
        if members[0].category:
            circular[members[0].category].append(solved)

    values = [
        clustered_rate(CIRCULAR_ACCURACY, outcomes, subset=subset, clustered=cluster_by is not None)
        for subset, outcomes in sorted(circular.items(), key=lambda item: (item[0] != "all", item[0]))
    ]
    originals = [(s, correct[s.id]) for s in samples if s.id in correct and s.meta.get("circular_pass", 0) == 0]
    values.extend(accuracy_metrics(originals, metric=VANILLA_ACCURACY, cluster_by=cluster_by))
    return values
