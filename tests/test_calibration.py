"""Calibration: shipped data disjoint from the test sets, artifacts, fingerprints, and every steering defense
calibrated and evaluated end to end on two tiny random models."""

from __future__ import annotations

import csv
import difflib
import json
import re
from pathlib import Path

import pytest

import harness.defenses.autosteer as autosteer
from harness import registries
from harness.defense_api.calibration import (
    ARTIFACT_FILE,
    DATA_DIR,
    MANIFEST_FILE,
    CalibrationMissingError,
    artifact_dir,
    load_artifact,
    load_builtin_data,
)
from harness.cli import main
from harness.pipeline.calibrate import calibrate
from harness.pipeline.evaluate import EvalConfig, run_eval

ROOT = Path(__file__).resolve().parent.parent
STEERING_DEFENSES = ["refusal-direction", "cast", "astra", "autosteer", "ras"]
TINY_MODELS = ["tiny-random-llava-ov", "tiny-random-qwen2-vl", "tiny-random-chameleon"]
LIMIT = 4


def normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def test_calibration_prompts_are_disjoint_from_the_test_sets():
    with open(ROOT / "tasks/data/figstep/safebench.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    test_prompts = [row["question"] for row in rows] + [row["instruction"] for row in rows]
    with open(ROOT / "tasks/data/xstest/xstest_prompts.csv", newline="", encoding="utf-8") as handle:
        test_prompts += [row["prompt"] for row in csv.DictReader(handle)]
    assert len(test_prompts) > 1400
    tests = [normalised(prompt) for prompt in test_prompts]
    data = load_builtin_data()
    for prompt in data.harmful + data.harmless:
        mine = normalised(prompt.prompt)
        closest = max(difflib.SequenceMatcher(None, mine, test).ratio() for test in tests)
        assert closest < 0.8, f"calibration prompt {prompt.id} nearly equals a test prompt ({closest:.2f})"


def test_builtin_data_is_paired_balanced_and_split():
    data = load_builtin_data()
    assert len(data) == 100
    assert all(bad.pair == good.id and good.pair == bad.id for bad, good in zip(data.harmful, data.harmless))
    assert len({prompt.prompt for prompt in data.harmful + data.harmless}) == 200
    train, val = data.split("train"), data.split("val")
    assert (len(train), len(val)) == (80, 20)
    assert not {p.id for p in train.harmful} & {p.id for p in val.harmful}
    first = load_builtin_data(limit=10)
    assert len({prompt.category for prompt in first.harmful}) == 10  # round-robin: every category early
    assert [source["sha256"] for source in data.sources] and all(len(s["sha256"]) == 64 for s in data.sources)
    assert (DATA_DIR / "README.md").is_file()


def test_missing_calibration_fails_in_prepare_naming_the_command(isolated_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(tmp_path / "nothing-here"))
    defense = registries.defenses().get("moras")()
    with pytest.raises(CalibrationMissingError, match=re.escape("run: harness calibrate --defense ras --model tiny-random-llava-ov")):
        defense.prepare("tiny-random-llava-ov", {})
    with pytest.raises(ValueError, match="harness calibrate --defense autosteer --model tiny-random-qwen2-vl"):
        run_eval(EvalConfig(model="tiny-random-qwen2-vl", tasks=["xstest"], defense="autosteer", limit=1, progress=False))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Every steering defense fitted on both tiny models (a few pairs, short training) in one folder."""
    folder = tmp_path_factory.mktemp("calibration")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CALIBRATION_DIR", str(folder))
        patch.setattr(autosteer, "PROBER_STEPS", 3)
        patch.setattr(autosteer, "HEAD_EPOCHS", 1)
        for model in TINY_MODELS:
            for defense in STEERING_DEFENSES:
                calibrate(defense, model, limit=LIMIT)
    return folder


def test_calibrate_writes_safetensors_and_a_manifest(calibrated, monkeypatch):
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(calibrated))
    from safetensors.torch import load_file

    from harness.core.images import file_sha256

    for defense in STEERING_DEFENSES:
        folder = artifact_dir(defense, "tiny-random-llava-ov")
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        assert manifest["defense"] == defense and manifest["model"] == "tiny-random-llava-ov"
        assert manifest["artifact"]["sha256"] == file_sha256(folder / ARTIFACT_FILE)
        assert manifest["seed"] == 0 and manifest["limit"] == LIMIT and manifest["model_layers"] == 3
        assert manifest["model_fingerprint"]["builder"] == "tiny-random-llava-ov"
        sources = manifest["data"]["sources"]
        assert [Path(s["path"]).name for s in sources] == ["harmful.jsonl", "harmless.jsonl"]
        assert all(s["sha256"] == file_sha256(ROOT / s["path"]) for s in sources)
        tensors = load_file(str(folder / ARTIFACT_FILE))
        assert sorted(tensors) == sorted(manifest["artifact"]["tensors"])
    fits = {d: json.loads((artifact_dir(d, "tiny-random-llava-ov") / MANIFEST_FILE).read_text())["fit"]
            for d in STEERING_DEFENSES}
    assert fits["autosteer"]["layer"] in fits["autosteer"]["candidate_layers"]
    assert set(fits["autosteer"]["sas"]) == {str(layer) for layer in fits["autosteer"]["candidate_layers"]}
    # x0 is the mean S over the 2 x LIMIT calibration queries, all run with an image (the caption stage on)
    ras = fits["ras"]
    assert len(ras["similarities"]) == 2 * LIMIT and ras["x0_inputs"]["images"] == 2 * LIMIT
    assert ras["x0"] == pytest.approx(sum(ras["similarities"]) / (2 * LIMIT))
    assert ras["x0_text"] == pytest.approx(sum(ras["similarities_text"]) / (2 * LIMIT))
    assert ras["similarities"] != ras["similarities_text"]
    assert 0 <= fits["refusal-direction"]["layer"] < 3 and fits["cast"]["behavior_layers"] == [1, 2]


@pytest.mark.parametrize("model", TINY_MODELS)
@pytest.mark.parametrize("defense", STEERING_DEFENSES)
def test_every_steering_defense_runs_through_the_runner(calibrated, isolated_dirs, monkeypatch, model, defense):
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(calibrated))
    config = dict(model=model, tasks=["figstep-tiny", "xstest"], defense=defense, limit=1, max_new_tokens=4,
                  progress=False, write_report=False)
    result = run_eval(EvalConfig(**config))
    assert result.info.counts["errors"] == 0 and result.info.counts["generated"] == 2
    hashes = load_artifact(defense, model).hashes
    assert result.info.defense_fingerprint["artifacts"] == hashes
    again = run_eval(EvalConfig(**config))
    assert not again.info.model_loaded and again.info.counts["cache_hits"] == 2


def test_a_new_artifact_changes_the_cache_key(calibrated, isolated_dirs, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "calibration"
    shutil.copytree(calibrated, copy)
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(copy))
    config = dict(model="tiny-random-llava-ov", tasks=["xstest"], defense="astra", limit=1, max_new_tokens=3,
                  progress=False, write_report=False)
    first = run_eval(EvalConfig(**config))
    calibrate("astra", "tiny-random-llava-ov", limit=3)  # different data: a different vector
    second = run_eval(EvalConfig(**config))
    assert second.info.defense_fingerprint != first.info.defense_fingerprint
    assert second.info.counts["cache_hits"] == 0 and second.info.model_loaded


def test_an_artifact_for_another_model_build_is_refused(calibrated, monkeypatch):
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(calibrated))
    defense = registries.defenses().get("cast")()
    manifest = json.loads((artifact_dir("cast", "tiny-random-llava-ov") / MANIFEST_FILE).read_text())
    defense.prepare("tiny-random-llava-ov", {**manifest["model_fingerprint"], "device": "cuda", "dtype": "bfloat16"})
    assert defense.artifact_hashes()[ARTIFACT_FILE] == manifest["artifact"]["sha256"]
    with pytest.raises(CalibrationMissingError, match="another build"):
        defense.prepare("tiny-random-llava-ov", {**manifest["model_fingerprint"], "version": -1})


def test_calibrate_main_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CALIBRATION_DIR", str(tmp_path))
    assert main(["calibrate", "--defense", "moras", "--model", "tiny-random-llava-ov", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert str(artifact_dir("ras", "tiny-random-llava-ov")) in out and '"x0"' in out
    # the default dtype and device ("auto") are recorded as what they resolved to
    from harness.core.hub import resolve_device

    manifest = json.loads((artifact_dir("ras", "tiny-random-llava-ov") / MANIFEST_FILE).read_text())
    assert manifest["dtype"] == "float32" and manifest["device"] == resolve_device("auto")
    assert main(["calibrate", "--defense", "self-reminder", "--model", "tiny-random-llava-ov", "--limit", "2"]) == 2
    assert "needs no calibration" in capsys.readouterr().err
    assert main(["calibrate", "--defense", "ras", "--limit", "1"]) == 2
    capsys.readouterr()
    assert main(["calibrate", "--defense", "ras", "--model", "tiny-random-llava-ov", "--limit", "2",
                           "--calibration-arg", "assistant_marker=true"]) == 2
    assert "no calibration option(s) ['assistant_marker']" in capsys.readouterr().err
