"""Run configs, several defenses in one command, and the Python API, on a tiny random model."""

from __future__ import annotations

import json

import pytest

import harness
from harness.cli import main
from harness.pipeline.config import ConfigError, RunConfig

TINY = "tiny-random-llava-ov"


def test_a_config_is_read_with_defaults_and_every_key_checked():
    config = RunConfig.from_dict({
        "model": TINY,
        "defenses": ["none", {"name": "self-reminder"}, {"name": "adashield-s", "args": {"repeat_query": False}}],
        "tasks": ["xstest", {"name": "figstep-tiny", "limit": 3, "args": {"variant": "x"}}],
        "limit": "all",
        "generation": {"max_new_tokens": 4},
    })
    assert [d.name for d in config.defenses] == ["none", "self-reminder", "adashield-s"]
    assert config.defenses[2].args == {"repeat_query": False}
    assert [(t.name, t.limit, t.args) for t in config.tasks] == [("xstest", None, {}), ("figstep-tiny", 3, {"variant": "x"})]
    assert config.limit == "all" and config.max_new_tokens == 4 and config.batch_size is None and config.dtype == "auto"
    with pytest.raises(ConfigError, match=r"unknown key 'modle' \(did you mean 'model'\?\)"):
        RunConfig.from_dict({"modle": TINY})
    with pytest.raises(ConfigError, match=r"tasks\[0\]: unknown key 'limt'"):
        RunConfig.from_dict({"tasks": [{"name": "xstest", "limt": 2}]})
    with pytest.raises(ConfigError, match=r"generation: unknown key 'max_tokens'"):
        RunConfig.from_dict({"generation": {"max_tokens": 2}})
    with pytest.raises(ConfigError, match=r"generation.batch_size: expected a whole number >= 1, got 0"):
        RunConfig.from_dict({"generation": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"limit: --limit takes a whole number"):
        RunConfig.from_dict({"limit": "many"})


def test_flags_override_the_file_and_the_resolved_config_is_stored(isolated_dirs, tmp_path, capsys):
    results, _ = isolated_dirs
    path = tmp_path / "run.yaml"
    path.write_text(f"model: {TINY}\ndefenses: [self-reminder]\ntasks:\n  - name: xstest\n    limit: 3\n"
                    "limit: 1\ngeneration: {max_new_tokens: 4}\n")
    assert main(["eval", "--config", str(path), "--max-new-tokens", "3", "--no-progress"]) == 0
    (run_json,) = results.rglob("run.json")
    stored = json.loads(run_json.read_text())
    assert stored["defense"] == "self-reminder"
    assert stored["counts"]["samples"] == 3  # the task's own limit wins over the run's
    assert stored["settings"]["generation"]["xstest"]["max_new_tokens"] == 3  # the flag wins over the file
    assert stored["settings"]["config"]["tasks"] == [{"name": "xstest", "limit": 3, "args": {}}]
    assert stored["settings"]["config"]["max_new_tokens"] == 3 and stored["format_version"] == 2
    path.write_text("model: x\ntask: [xstest]\n")
    assert main(["eval", "--config", str(path)]) == 2
    assert "unknown key 'task' (did you mean 'tasks'?)" in capsys.readouterr().err


def test_several_defenses_load_the_model_once_and_store_one_run_each(isolated_dirs, monkeypatch):
    import harness.models.tiny as tiny

    loads = []
    real = tiny.build_tiny
    monkeypatch.setattr(tiny, "build_tiny", lambda *args, **kwargs: loads.append(1) or real(*args, **kwargs))
    results, reports = isolated_dirs
    assert main(["eval", "--model", TINY, "--defense", "none,self-reminder,figstep-prompt", "--tasks", "xstest",
                 "--limit", "2", "--max-new-tokens", "3", "--no-progress"]) == 0
    assert len(loads) == 1
    runs = sorted(json.loads(path.read_text())["defense"] for path in results.rglob("run.json"))
    assert runs == ["figstep-prompt", "none", "self-reminder"]
    assert (reports / "latest.html").is_file()
    # each defense is keyed on its own: the same command again is answered from the cache, no load
    assert main(["eval", "--model", TINY, "--defense", "none,self-reminder,figstep-prompt", "--tasks", "xstest",
                 "--limit", "2", "--max-new-tokens", "3", "--no-progress"]) == 0
    assert len(loads) == 1


def test_defense_arguments_need_their_defense_named_when_there_are_several(isolated_dirs, capsys):
    base = ["eval", "--model", TINY, "--tasks", "xstest", "--limit", "1", "--no-progress"]
    assert main([*base, "--defense", "none,adashield-s", "--defense-arg", "repeat_query=false"]) == 2
    assert "ambiguous with several defenses" in capsys.readouterr().err
    assert main([*base, "--defense", "none,adashield-s", "--defense-arg", "ecso:x=1"]) == 2
    assert "names 'ecso', which is not being run" in capsys.readouterr().err


def test_the_python_api_returns_typed_results_as_a_frame(isolated_dirs):
    results = harness.evaluate(model=TINY, defenses=["none", "self-reminder"], tasks=["xstest"], limit=2,
                               generation={"max_new_tokens": 3})
    assert [run.info.defense for run in results.runs] == ["none", "self-reminder"]
    frame = results.to_pandas()
    assert list(frame.columns[:7]) == ["model", "defense", "task", "task_version", "metric", "subset", "value"]
    asr = frame[(frame.metric == "asr") & (frame.subset == "all")].set_index("defense")
    for run in results.runs:
        stored = next(row for row in run.metrics if row.metric == "asr" and row.subset == "all")
        assert asr.loc[run.info.defense, "value"] == stored.value and asr.loc[run.info.defense, "n"] == stored.n
        assert asr.loc[run.info.defense, "ci_low"] == stored.ci_low
    assert set(frame.model) == {TINY} and len(frame) == sum(len(run.metrics) for run in results.runs)
    with pytest.raises(ConfigError, match="unknown key 'defence'"):
        harness.evaluate(model=TINY, defence="none")
