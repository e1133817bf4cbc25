"""MME and MMBench: loaders on tiny HF-format parquet fixtures, parsers, and scores computed by hand.

Fixture contents are listed in tests/fixtures/tasks/make_fixtures.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.core.records import Generation
from harness.tasks.mmbench import build_prompt, extract_choice, load_mmbench, mmbench_metrics, options_of
from harness.tasks.mme import load_mme, mme_metrics, mme_scores, parse_yes_no

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tasks"
MMBENCH_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
MME_SUFFIX = "\nAnswer the question using a single word or phrase."


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def mme_samples(tmp_path):
    return load_mme(
        "mme", path="parquet", split="train", data_files=str(FIXTURES / "mme_tiny.parquet"),
        cache_dir=str(tmp_path / "hf"),
    )


@pytest.fixture
def mmbench_samples(tmp_path):
    return load_mmbench(
        "mmbench",
        path="parquet",
        name=None,
        split="train",
        data_files=str(FIXTURES / "mmbench_tiny.parquet"),
        cache_dir=str(tmp_path / "hf"),
    )


def gen(sample_id: str, text: str | None) -> Generation:
    return Generation(
        key=sample_id, task="t", sample_id=sample_id, model="m", defense="none", text=text,
        error=None if text is not None else "failed",
    )


def by_key(values):
    return {(v.metric, v.subset): v for v in values}


# ----------------------------------------------------------------------------------------------- MME


DATASET_ORDER = [
    "existence/0001.png/q0", "existence/0001.png/q1",
    "existence/0002.png/q0", "existence/0002.png/q1",
    "code_reasoning/0020.png/q0", "code_reasoning/0020.png/q1",
]


def test_mme_loader_dataset_order(tmp_path):
    samples = load_mme(
        "mme", path="parquet", split="train", data_files=str(FIXTURES / "mme_tiny.parquet"),
        cache_dir=str(tmp_path / "hf"),
    )
    assert [s.id for s in samples] == DATASET_ORDER


def test_mme_limit_order_keeps_pairs_and_interleaves_subtasks(mme_samples):
    from harness import registries
    from harness.pipeline.plan import select_samples

    spec = registries.tasks().get("mme")
    assert spec.stratify_by == "category"
    ordered = select_samples(spec, mme_samples, "all")
    assert sorted(s.id for s in ordered) == sorted(DATASET_ORDER)
    groups = [s.group for s in ordered]
    assert groups[0::2] == groups[1::2]  # pairs stay adjacent, q0 before q1
    assert all(s.id.endswith("/q0") for s in ordered[0::2])
    # round-robin over sorted subtasks: code_reasoning's only image first, then an existence image
    assert [s.category for s in ordered[0::2]] == ["code_reasoning", "existence", "existence"]
    # a limit that cuts a pair is completed to the whole pair
    assert [s.id for s in select_samples(spec, mme_samples, 3)][:4] == [s.id for s in ordered[:4]]
    assert len(select_samples(spec, mme_samples, 3)) == 4


def test_mme_loader(mme_samples, isolated_cache):
    by_id = {s.id: s for s in mme_samples}
    first = by_id["existence/0001.png/q0"]
    assert first.prompt == "Is there a red square in the image? Please answer yes or no." + MME_SUFFIX
    assert (first.answer, first.category, first.group) == ("Yes", "existence", "existence/0001.png")
    assert first.harmful is None
    # The two questions of an image share one materialised file; different images get different files.
    assert first.image == by_id["existence/0001.png/q1"].image != by_id["existence/0002.png/q0"].image
    assert Path(first.image).parent == isolated_cache / "images" / "mme"
    assert len(list((isolated_cache / "images" / "mme").glob("*.png"))) == 3


@pytest.mark.parametrize(
    ("response", "label"),
    [
        ("Yes", "yes"),
        (" no\n", "no"),
        ("No, it is not.", "no"),
        ("yes.", "yes"),
        ("Not sure", "no"),  # official quirk: "no" inside the first 4 characters
        ("nope", "no"),
        ("Yesterday", "yes"),
        ("y", "other"),  # the official parser has no single-letter rule
        ("The answer is no", "other"),  # only the first 4 characters are read
        ("I don't know", "other"),
        ("", "other"),
    ],
)
def test_mme_parser(response, label):
    assert parse_yes_no(response) == label


def test_mme_scores_pure():
    scores = mme_scores(
        [
            ("count", "1.jpg", "Yes", "yes"),
            ("count", "1.jpg", "No", "no"),
            ("count", "2.jpg", "Yes", "no"),
            ("count", "2.jpg", "No", "no"),
            ("count", "3.jpg", "Yes", "yes"),
            ("count", "3.jpg", "No", None),  # not generated: out of acc, its image out of acc+
            ("count", "4.jpg", "Yes", "yes"),  # its pair was cut off: in acc, image out of acc+
        ]
    )
    count = scores["count"]
    assert (count.n_questions, count.n_correct, count.n_images, count.n_images_correct) == (6, 5, 2, 1)
    assert count.acc == pytest.approx(5 / 6)
    assert count.acc_plus == pytest.approx(0.5)
    assert count.score == pytest.approx(500 / 6 + 50)


def test_mme_metrics_by_hand(mme_samples):
    generations = {
        "existence/0001.png/q0": gen("existence/0001.png/q0", "Yes"),  # Yes: right
        "existence/0001.png/q1": gen("existence/0001.png/q1", "No."),  # No: right
        "existence/0002.png/q0": gen("existence/0002.png/q0", "yes, there is"),  # Yes: right
        "existence/0002.png/q1": gen("existence/0002.png/q1", "Yes"),  # No: wrong
        "code_reasoning/0020.png/q0": gen("code_reasoning/0020.png/q0", "The answer is yes"),  # other: wrong
        "code_reasoning/0020.png/q1": gen("code_reasoning/0020.png/q1", "no"),  # No: right
    }
    values = by_key(mme_metrics(mme_samples, generations, {}))
    # existence: acc 3/4, acc+ 1/2 -> 75 + 50; code_reasoning: acc 1/2, acc+ 0/1 -> 50 + 0
    assert values[("mme_score", "existence")].value == pytest.approx(125.0)
    assert values[("mme_score", "existence")].n == 4
    assert values[("mme_score", "code_reasoning")].value == pytest.approx(50.0)
    assert values[("acc_plus", "existence")].value == pytest.approx(50.0)
    assert values[("acc_plus", "existence")].n == 2
    assert values[("acc_plus", "code_reasoning")].value == pytest.approx(0.0)
    assert values[("mme_perception", "all")].value == pytest.approx(125.0)
    assert values[("mme_cognition", "all")].value == pytest.approx(50.0)
    assert values[("accuracy", "all")].value == pytest.approx(400 / 6)
    assert values[("accuracy", "all")].n == 6
    assert values[("accuracy", "existence")].value == pytest.approx(75.0)
    assert values[("accuracy", "code_reasoning")].value == pytest.approx(50.0)


def test_mme_failed_generation_leaves_acc_plus(mme_samples):
    texts = ["Yes", "No", "Yes", None, "No", "No"]  # existence/0002 q1 failed
    generations = {i: gen(i, t) for i, t in zip(DATASET_ORDER, texts) if t is not None}
    values = by_key(mme_metrics(mme_samples, generations, {}))
    # existence: acc 3/3, acc+ over image 0001 only = 1/1 -> 200
    assert values[("mme_score", "existence")].value == pytest.approx(200.0)
    assert values[("mme_score", "existence")].n == 3
    # code_reasoning: "No" to the Yes question -> acc 1/2, acc+ 0/1 -> 50
    assert values[("mme_score", "code_reasoning")].value == pytest.approx(50.0)
    assert values[("accuracy", "all")].value == pytest.approx(80.0)


# ------------------------------------------------------------------------------------------- MMBench


def test_mmbench_loader(mmbench_samples):
    assert len(mmbench_samples) == 10  # 4 + 4 + 2 circular rows
    by_id = {s.id: s for s in mmbench_samples}
    assert by_id["0"].prompt == (
        "The picture was taken outdoors.\nWhich animal is shown?\nA. cat\nB. dog\nC. horse\nD. cow" + MMBENCH_SUFFIX
    )
    # Hint None -> omitted.
    assert by_id["1"].prompt == "What word is written on the sign?\nA. stop\nB. go\nC. wait\nD. exit" + MMBENCH_SUFFIX
    # Hint "nan" -> omitted; options stop at the first missing one.
    assert by_id["2"].prompt == "Is it day or night?\nA. day\nB. night" + MMBENCH_SUFFIX
    assert by_id["1000000"].prompt.splitlines()[2:6] == ["A. dog", "B. horse", "C. cow", "D. cat"]
    assert {i: by_id[i].answer for i in ("0", "1000000", "2000000", "3000000", "2", "1000002")} == {
        "0": "B", "1000000": "A", "2000000": "D", "3000000": "C", "2": "A", "1000002": "B"
    }
    assert by_id["3000001"].group == "1"
    assert by_id["3000001"].meta["circular_pass"] == 3
    assert by_id["1000002"].meta["options"] == {"A": "night", "B": "day"}
    assert by_id["0"].category == "image_scene" and by_id["1"].category == "ocr"
    assert by_id["0"].image == by_id["3000000"].image != by_id["1"].image


def test_mmbench_order_keeps_circular_groups_whole(mmbench_samples, tmp_path):
    groups = [s.group for s in mmbench_samples]
    # each group is one contiguous run, original row (pass 0) first, passes ascending
    runs = [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g]
    assert sorted(runs) == ["0", "1", "2"]
    for group in runs:
        passes = [s.meta["circular_pass"] for s in mmbench_samples if s.group == group]
        assert passes == sorted(passes) and passes[0] == 0
    # round-robin over sorted categories: image_scene, ocr, image_scene
    assert [mmbench_samples[groups.index(g)].category for g in runs] == ["image_scene", "ocr", "image_scene"]
    unordered = load_mmbench(
        "mmbench", path="parquet", name=None, split="train", data_files=str(FIXTURES / "mmbench_tiny.parquet"),
        cache_dir=str(tmp_path / "hf2"),
    )
    assert [s.id for s in unordered] == [
        "0", "1000000", "2000000", "3000000", "1", "1000001", "2000001", "3000001", "2", "1000002"
    ]


def test_options_and_prompt_helpers():
    assert options_of({"A": "x", "B": None, "C": "z"}) == {"A": "x"}
    assert options_of({"A": "x", "B": "nan", "C": "z"}) == {"A": "x"}
    assert build_prompt("Q?", float("nan"), {"A": "x", "B": "y"}) == "Q?\nA. x\nB. y" + MMBENCH_SUFFIX
    assert build_prompt("Q?", "H", {"A": "x"}) == "H\nQ?\nA. x" + MMBENCH_SUFFIX


OPTS = {"A": "cat", "B": "dog", "C": "horse", "D": "cow"}


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        (" C\n", "C"),
        ("(C)", "C"),
        ("[D]", "D"),
        ("A: cat", "A"),
        ("B. A dog", "B"),  # leading letter wins over the article
        ("B\nA is wrong because", "B"),  # letter alone on the first line
        ("A dog", "A"),  # as in MMBench's rule: a lone capital A is read as a letter
        ("The answer is C.", "C"),
        ("It is a horse.", "C"),  # no letter: unique option text
        ("Either A or B", None),  # two letters, no option text
        ("I see a cat and a dog", None),  # two option texts
        ("b", None),  # letters are upper-case only, as in MMBench
        ("E", None),  # not an option
        ("", None),
    ],
)
def test_extract_choice(response, letter):
    assert extract_choice(response, OPTS) == letter


MMBENCH_ANSWERS = {
    "0": "B",  # right (B)
    "1000000": "A.",  # right (A)
    "2000000": "(D) dog",  # right (D)
    "3000000": "The answer is C.",  # right (C)
    "1": "B",  # wrong (C)
    "1000001": "B) wait",  # right (B)
    "2000001": "wait",  # right by option text (A)
    "3000001": "D",  # right (D)
    "2": "A",  # right (A)
    "1000002": "I am not sure",  # unmatched -> wrong (B)
}


def test_mmbench_metrics_by_hand(mmbench_samples):
    generations = {i: gen(i, t) for i, t in MMBENCH_ANSWERS.items()}
    values = by_key(mmbench_metrics(mmbench_samples, generations, {}))
    # circular: question 0 all right; 1 wrong on its original row; 2 wrong on its copy -> 1/3
    assert values[("circular_accuracy", "all")].value == pytest.approx(100 / 3)
    assert values[("circular_accuracy", "all")].n == 3
    assert values[("circular_accuracy", "image_scene")].value == pytest.approx(50.0)
    assert values[("circular_accuracy", "ocr")].value == pytest.approx(0.0)
    # vanilla (index < 1e6): rows 0 right, 1 wrong, 2 right
    assert values[("vanilla_accuracy", "all")].value == pytest.approx(200 / 3)
    assert values[("vanilla_accuracy", "all")].n == 3
    assert values[("vanilla_accuracy", "image_scene")].value == pytest.approx(100.0)
    assert values[("vanilla_accuracy", "ocr")].value == pytest.approx(0.0)
    ci = values[("circular_accuracy", "all")]
    assert ci.ci_low < ci.value < ci.ci_high


def test_mmbench_two_questions_one_bad_pass(mmbench_samples):
    # Questions 0 and 1 only (4 circular rows each): one fully right, one with a wrong pass -> 50 %.
    subset = [s for s in mmbench_samples if s.group in ("0", "1")]
    generations = {i: gen(i, t) for i, t in MMBENCH_ANSWERS.items()}
    values = by_key(mmbench_metrics(subset, generations, {}))
    assert values[("circular_accuracy", "all")].value == pytest.approx(50.0)
    assert values[("circular_accuracy", "all")].n == 2


def test_mmbench_incomplete_group_not_scored(mmbench_samples):
    generations = {i: gen(i, t) for i, t in MMBENCH_ANSWERS.items() if i != "3000001"}
    values = by_key(mmbench_metrics(mmbench_samples, generations, {}))
    # question 1 lacks a pass -> only questions 0 (right) and 2 (wrong) are scored
    assert values[("circular_accuracy", "all")].value == pytest.approx(50.0)
    assert values[("circular_accuracy", "all")].n == 2
    assert ("circular_accuracy", "ocr") not in values
    assert values[("vanilla_accuracy", "all")].n == 3
    assert not any(math.isnan(v.value) for v in values.values())


# ----------------------------------------------------------------------------- one bad image, one failure


def corrupted_copy(source: Path, target: Path, bad_rows: set[int]) -> str:
    """The fixture with the image bytes of ``bad_rows`` replaced by garbage."""
    import pandas as pd

    frame = pd.read_parquet(source)
    frame["image"] = [
        {"bytes": b"\x89PNG truncated", "path": None} if i in bad_rows else cell for i, cell in enumerate(frame["image"])
    ]
    frame.to_parquet(target)
    return str(target)


@pytest.mark.parametrize(
    ("task", "loader", "fixture", "extra"),
    [("mme", load_mme, "mme_tiny.parquet", {}), ("mmbench", load_mmbench, "mmbench_tiny.parquet", {"name": None})],
)
def test_undecodable_image_fails_only_its_sample(task, loader, fixture, extra, tmp_path):
    from harness import registries
    from harness.core.records import GenerationSettings
    from harness.pipeline.plan import build_requests

    data_files = corrupted_copy(FIXTURES / fixture, tmp_path / fixture, bad_rows={2})
    clean = loader(task, path="parquet", split="train", data_files=str(FIXTURES / fixture),
                   cache_dir=str(tmp_path / "hf-clean"), **extra)
    samples = loader(task, path="parquet", split="train", data_files=data_files, cache_dir=str(tmp_path / "hf"), **extra)
    assert [s.id for s in samples] == [s.id for s in clean]  # nothing dropped
    bad = [s for s in samples if "image_error" in s.meta]
    assert len(bad) == 1 and bad[0].meta["image_error"].startswith("cannot read dataset image: UnidentifiedImageError")

    planned = build_requests(registries.tasks().get(task), samples, GenerationSettings(), {"model": "m"},
                             {"defense": "none"})
    failed = {item.sample.id: item.error for item in planned if item.error}
    assert list(failed) == [bad[0].id]
    assert failed[bad[0].id].startswith("image file not found") and "UnidentifiedImageError" in failed[bad[0].id]
