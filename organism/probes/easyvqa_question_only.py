"""easy-vqa's question-only baseline: what a model that never looks at the image can score (issue 3).

    .venv/bin/python -m organism.probes.easyvqa_question_only   # from the repository root

A "blind" answerer that gives each test question the answer most often given to that exact
question text in the train split (ties: alphabetical), and for a question text never seen in train
the most common train answer of its kind (open colour / open shape / yes-no / negated yes-no).
Scored with the task's own scorer (``harness.tasks.easyvqa.is_correct``) on the whole test split and on the
100 seeded questions that ``make organism`` evaluates. No model, a few seconds.

The issue's target (>= 85 %) is meant next to this figure: yes/no questions are mostly answerable
from the question alone (a plain one's answer is "no" 82 % of the time, a negated one's "yes" 83 %),
so a model whose accuracy equals this baseline has learnt the question prior, not to see.
"""

from __future__ import annotations

import collections
import sys

from harness.tasks.easyvqa import question_kind


def most_common(answers: collections.Counter) -> str:
    return sorted(answers.items(), key=lambda item: (-item[1], item[0]))[0][0]


def blind_answerer(questions: list[str], answers: list[str]):
    by_text: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for question, answer in zip(questions, answers):
        by_text[question][answer] += 1
        by_kind[question_kind(question)][answer] += 1

    def answer(question: str) -> str:
        seen = by_text.get(question)
        return most_common(seen) if seen else most_common(by_kind[question_kind(question)])

    return answer


def main() -> int:
    from organism.train import TrainConfig, easyvqa_eval_draw, easyvqa_split
    from harness.tasks.easyvqa import is_correct

    train_q, train_a, _, _ = easyvqa_split("train")
    test_q, test_a, _, _ = easyvqa_split("test")
    answer = blind_answerer(train_q, train_a)
    right = [is_correct(answer(q), a) for q, a in zip(test_q, test_a)]
    kinds: dict[str, list[bool]] = collections.defaultdict(list)
    for question, ok in zip(test_q, right):
        kinds[question_kind(question)].append(ok)
    seen = set(train_q)
    unseen = sum(q not in seen for q in test_q)
    print(f"whole test split: {100 * sum(right) / len(right):.1f} % of {len(right)} questions ({unseen} question texts unseen in train)")
    for kind, oks in sorted(kinds.items()):
        print(f"  {kind}: {100 * sum(oks) / len(oks):.1f} % of {len(oks)}")
    config = TrainConfig()
    chosen = easyvqa_eval_draw(len(test_q), config.eval_easyvqa, config.seed)  # the questions make organism evaluates
    print(f"make organism's {len(chosen)} seeded questions: {100 * sum(right[i] for i in chosen) / len(chosen):.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
