"""easy-VQA loader and its single-word scorer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.core.records import Generation, Sample
from harness.tasks.easyvqa import easyvqa_metrics, is_correct, load_easyvqa, normalize, question_kind


def generation(sample_id: str, text: str | None, error: str | None = None) -> Generation:
    return Generation(
        key=sample_id, task="easyvqa", sample_id=sample_id, model="m", defense="none", text=text, error=error
    )


def test_test_split_loader():
    samples = load_easyvqa("easyvqa")
    assert len(samples) == 9673
    assert len({s.id for s in samples}) == 9673
    # Counts from the package's questions.json: 7,136 yes/no; shapes 450+416+391; colours the rest.
    assert Counter(s.category for s in samples) == {"yes/no": 7136, "shape": 1257, "color": 1280}
    images = {s.image for s in samples}
    assert len(images) == 1000
    assert all(Path(p).is_file() for p in images)
    first = samples[0]
    assert first.id == "test-0"
    assert first.prompt == "what is the red shape?\nAnswer with a single word."
    assert (first.answer, first.category, first.group, first.meta["image_id"]) == ("triangle", "shape", None, 0)
    assert Path(first.image).name == "0.png"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The Triangle.", ["triangle"]),
        ("  an  apple, a pie ", ["apple", "a", "pie"]),
        ("A the circle", ["circle"]),
        ("Yes,it is", ["yes", "it", "is"]),
        ("...", []),
    ],
)
def test_normalize(text, words):
    assert normalize(text) == words


@pytest.mark.parametrize(
    ("response", "answer", "correct"),
    [
        ("Yes", "yes", True),
        ("yes.", "yes", True),
        ("No, there is not.", "no", True),
        ("A red circle", "red", True),  # article dropped, first word compared
        ("The shape is red", "red", False),  # first word is "shape"
        ("Rectangle!", "rectangle", True),
        ("grey", "gray", False),  # spelling variants are not merged
        ("", "yes", False),
        ("Blue-green", "blue", True),
    ],
)
def test_is_correct(response, answer, correct):
    assert is_correct(response, answer) is correct


@pytest.mark.parametrize(
    "question, kind",
    [
        ("what color is the shape?", "open colour"),
        ("what is the blue shape?", "open shape"),
        ("is there a green shape in the image?", "yes/no"),
        ("is there not a triangle?", "negated yes/no"),
        ("is no yellow shape present?", "negated yes/no"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


def test_metrics_by_hand():
    samples = [
        Sample(task="easyvqa", id="a", prompt="", answer="yes", category="yes/no"),
        Sample(task="easyvqa", id="b", prompt="", answer="no", category="yes/no"),
        Sample(task="easyvqa", id="c", prompt="", answer="red", category="color"),
        Sample(task="easyvqa", id="d", prompt="", answer="circle", category="shape"),
        Sample(task="easyvqa", id="e", prompt="", answer="circle", category="shape"),  # generation failed
    ]
    generations = {
        "a": generation("a", "Yes."),
        "b": generation("b", "Yes"),
        "c": generation("c", "The red one"),  # first word after the article is "red"
        "d": generation("d", "circle"),
        "e": generation("e", None, error="CUDA OOM"),
    }
    values = {(v.metric, v.subset): v for v in easyvqa_metrics(samples, generations, {})}
    # scored: a right, b wrong, c right, d right -> 3/4; e is not counted
    assert values[("accuracy", "all")].value == pytest.approx(75.0)
    assert values[("accuracy", "all")].n == 4
    assert values[("accuracy", "yes/no")].value == pytest.approx(50.0)
    assert values[("accuracy", "color")].value == pytest.approx(100.0)
    assert values[("accuracy", "shape")].value == pytest.approx(100.0)
    assert values[("accuracy", "shape")].n == 1
    assert set(values) == {("accuracy", s) for s in ("all", "yes/no", "color", "shape")}
