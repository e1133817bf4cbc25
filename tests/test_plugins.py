"""Third-party tasks, defenses and judges: entry points of an installed package, and --include-path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TINY = "tiny-random-llava-ov"

DEFENSE = '''
from harness.defense_api.defense import Defense, with_fields


class Shout(Defense):
    name = "plugin-shout"
    summary = "upper-cases the prompt"

    def transform(self, request):
        return with_fields(request, prompt=request.prompt.upper())
'''
JUDGE = '''
from harness.core.records import Judgement
from harness.judges import judge_factory


class EveryAnswerRefuses:
    def __init__(self, name):
        self.name = name

    def fingerprint(self):
        return {"judge": self.name}

    def judge(self, sample, generation):
        return Judgement(key=generation.key, task=sample.task, sample_id=sample.id, judge=self.name,
                         kind="refusal", refused=True)


@judge_factory("plugin-refuses", summary="says every answer refuses")
def make_judge(*, name):
    return EveryAnswerRefuses(name)
'''
TASK_YAML = '''
name: plugin-echo
version: "1"
loader: "plugin_loaders:load_echo"
metric: "harness.core.metrics:safety_metrics"
judge: plugin-refuses
generation: {max_new_tokens: 3, batch_size: 2}
'''
LOADER = '''
from harness.core.records import Sample


def load_echo(task_name):
    return [Sample(task=task_name, id=str(i), prompt=f"say {i}", harmful=True) for i in range(3)]
'''


def make_plugin(root: Path) -> None:
    """A package 'shouty' with a defense, a judge and a task folder, 'installed' by its dist-info."""
    package = root / "shouty"
    (package / "tasks").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "defense.py").write_text(DEFENSE)
    (package / "judge.py").write_text(JUDGE)
    (package / "tasks" / "__init__.py").write_text("")
    (package / "tasks" / "plugin-echo.yaml").write_text(TASK_YAML)
    (root / "plugin_loaders.py").write_text(LOADER)
    info = root / "shouty-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shouty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [mm_safety_harness.defenses]
        plugin-shout = shouty.defense:Shout
        [mm_safety_harness.judges]
        plugin-refuses = shouty.judge:make_judge
        [mm_safety_harness.tasks]
        shouty-tasks = shouty.tasks
        """))


def harness_cli(root: Path, *args: str, results: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    if results is not None:
        env.update(HARNESS_RESULTS_DIR=str(results), HARNESS_REPORTS_DIR=str(results / "reports"))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_installed_package_adds_a_defense_a_judge_and_tasks(tmp_path):
    make_plugin(tmp_path)
    listed = {kind: harness_cli(tmp_path, "list", kind).stdout for kind in ("defenses", "judges", "tasks")}
    assert "plugin-shout" in listed["defenses"] and "plugin shouty" in listed["defenses"]
    assert "plugin-refuses" in listed["judges"] and "plugin-echo" in listed["tasks"]
    proc = harness_cli(tmp_path, "eval", "--model", TINY, "--defense", "plugin-shout", "--tasks", "plugin-echo",
                       "--no-progress", results=tmp_path / "results")
    assert proc.returncode == 0, proc.stderr
    (run_json,) = (tmp_path / "results").rglob("run.json")
    info = json.loads(run_json.read_text())
    assert info["defense"] == "plugin-shout" and info["tasks"] == {"plugin-echo": "1"}
    asr = [json.loads(line) for line in (run_json.parent / "metrics.jsonl").read_text().splitlines()]
    assert [(row["metric"], row["value"]) for row in asr if row["subset"] == "all"][0] == ("asr", 0.0)  # all refused


def test_a_plugin_that_misnames_its_component_fails_with_its_names(tmp_path):
    make_plugin(tmp_path)
    entry_points = tmp_path / "shouty-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text().replace("plugin-shout = ", "plugin-whisper = "))
    proc = harness_cli(tmp_path, "eval", "--model", TINY, "--defense", "plugin-whisper", "--tasks", "plugin-echo",
                       "--no-progress", results=tmp_path / "results")
    assert proc.returncode != 0
    assert "plugin-whisper" in proc.stderr and "plugin-shout" in proc.stderr  # the entry point vs the declaration
    entry_points.write_text(entry_points.read_text().replace("shouty.defense:Shout", "shouty.defense"))
    proc = harness_cli(tmp_path, "list", "defenses")
    assert proc.returncode == 2 and "plugin shouty" in proc.stderr and "module:attribute" in proc.stderr


def test_include_path_adds_a_folder_of_task_files(tmp_path, isolated_dirs):
    from harness import registries
    from harness.cli import main
    from harness.plugins import PluginError, register_task_folder

    folder = tmp_path / "my_tasks"
    folder.mkdir()
    (folder / "included-echo.yaml").write_text(TASK_YAML.replace("plugin-echo", "included-echo")
                                               .replace("plugin-refuses", "keyword-gcg"))
    (folder / "plugin_loaders.py").write_text(LOADER)
    assert main(["eval", "--model", TINY, "--tasks", "included-echo", "--include-path", str(folder),
                 "--no-progress"]) == 0
    assert "included-echo" in registries.tasks()
    assert register_task_folder(registries.tasks(), folder) == ["included-echo"]  # a second include is a no-op
    with pytest.raises(PluginError, match="no such folder"):
        register_task_folder(registries.tasks(), tmp_path / "missing")
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "t.yaml").write_text("name: typo-task\nversion: '1'\nloader: a:b\nmetric: a:b\njugde: x\n")
    with pytest.raises(PluginError, match="unknown key 'jugde'"):
        register_task_folder(registries.tasks(), tmp_path / "typo")
