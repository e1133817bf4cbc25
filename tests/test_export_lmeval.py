"""`harness export --format lm-eval`: a run of the tiny model written in lm-eval's layout, compared key by
key and type by type with what lm-eval's own EvaluationTracker writes for a run through our bridge, then
read back by lm-eval's own code (its file-name helpers, ``make_table``, the W&B logger's results
parsing, its aggregation and hashing functions), by ``datasets`` (as a Hub details repo is read) and
with the reads of lm-eval's ``scripts/zeno_visualize.py``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from lm_eval.api.metrics import mean, mean_stderr
from lm_eval.loggers import EvaluationTracker
from lm_eval.loggers.wandb_logger import WandbLogger
from lm_eval.tasks import TaskManager
from lm_eval.utils import (
    get_file_datetime,
    get_file_task_name,
    get_latest_filename,
    get_results_filenames,
    get_sample_results_filenames,
    handle_non_serializable,
    hash_string,
    make_table,
    sanitize_model_name,
)

from harness import lmeval_bridge, registries
from harness.cli import main
from harness.core.store import load_run, save_run
from harness.lmeval_bridge import Turn, context_to_turn
from harness.pipeline import export
from harness.pipeline.evaluate import EvalConfig, run_eval
from harness.pipeline.score import metric_rows

TINY = "tiny-random-llava-ov"
TASKS = ["figstep-tiny", "xstest", "easyvqa"]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lmeval"
# What lm-eval writes that a harness run does not have: its environment and tokenizer report and timing.
NOT_EXPORTED = {"pretty_env_info", "lm_eval_version", "upper_git_hash", "tokenizer_pad_token", "tokenizer_eos_token",
                "tokenizer_bos_token", "eot_token_id", "max_length", "total_evaluation_time_seconds"}
SAMPLE_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
               "prompt_hash", "target_hash"}
GAPS_ID = "20991231T235959000000Z-gaps"  # a later stamp than any real run: lm-eval's "latest"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A run of the tiny model (harmful + image, harmful + benign text, utility) and a copy of it with gaps:
    a failed generation, an undecided and a refusing verdict, its metric rows recomputed."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_RESULTS_DIR", str(root / "results"))
        patch.setenv("HARNESS_REPORTS_DIR", str(root / "reports"))
        run = run_eval(EvalConfig(model=TINY, tasks=TASKS, limit=4, max_new_tokens=4, progress=False,
                                  write_report=False))
    return root, run.path, with_gaps(run.path)


def with_gaps(run_dir: Path) -> Path:
    run = load_run(run_dir)
    gaps_dir = run_dir.parent / GAPS_ID
    benign = next(s for s in run.samples if s.task == "xstest" and s.harmful is False)
    figstep = [s.id for s in run.samples if s.task == "figstep-tiny"]
    generations = [dataclasses.replace(g, text=None, error="boom") if (g.task, g.sample_id) == ("xstest", benign.id) else g
                   for g in run.generations]
    judgements = []
    for j in run.judgements:
        if (j.task, j.sample_id) == ("xstest", benign.id):
            continue  # a failed generation is never judged
        if j.task == "figstep-tiny" and j.sample_id == figstep[0]:
            j = dataclasses.replace(j, refused=None, label="undecided")
        elif j.task == "figstep-tiny" and j.sample_id == figstep[1]:
            j = dataclasses.replace(j, refused=True, label="refusal")
        judgements.append(j)
    rows = []
    for task in dict.fromkeys(s.task for s in run.samples):
        spec = dataclasses.replace(registries.tasks().get(task), version=run.info.tasks[task])
        judge = next((r.judge for r in run.metrics if r.task == task), None)
        rows += metric_rows(GAPS_ID, run.info.model, run.info.defense, spec, [s for s in run.samples if s.task == task],
                            {g.sample_id: g for g in generations if g.task == task},
                            {j.sample_id: j for j in judgements if j.task == task and j.judge == judge}, judge)
    info = dataclasses.replace(run.info, run_id=GAPS_ID)
    save_run(gaps_dir, info, run.samples, generations, judgements, rows)
    return gaps_dir


@pytest.fixture(scope="module")
def lmeval_written(tmp_path_factory):
    """What lm-eval itself writes for a run through the bridge: simple_evaluate, then its EvaluationTracker,
    as its CLI does with --output_path and --log_samples."""
    out = tmp_path_factory.mktemp("lmeval-own")
    model_args = {"model": TINY, "defense": "self-reminder", "max_new_tokens": 3}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(FIXTURES)  # the task YAML names its data file relative to the working directory
        results = lmeval_bridge.simple_evaluate(
            model_args=model_args, tasks=["harness_bridge_text"], limit=3, log_samples=True,
            task_manager=TaskManager(include_path=str(FIXTURES), include_defaults=False))
    tracker = EvaluationTracker(output_path=str(out))
    tracker.general_config_tracker.log_experiment_args(model_source="defended-mm", model_args=model_args,
                                                       system_instruction=None, chat_template=None,
                                                       fewshot_as_multiturn=False)
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name="harness_bridge_text", samples=samples["harness_bridge_text"])
    [results_file] = out.rglob("results_*.json")
    [samples_file] = out.rglob("samples_*.jsonl")
    return json.loads(results_file.read_text()), read_lines(samples_file)


@pytest.fixture(scope="module")
def exported(stored, tmp_path_factory):
    _, run_dir, gaps_dir = stored
    out = tmp_path_factory.mktemp("exported")
    first = export.export_lmeval(run_dir, out)
    second = export.export_lmeval(gaps_dir, out)
    return out, first, second


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def kind(value) -> str:
    """A JSON value's type, numbers as one (lm-eval writes a limit as 2.0 or 2 depending on its caller)."""
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


# ---------------------------------------------------------------------- compared with lm-eval's own files
def test_results_file_has_lm_evals_keys_and_value_types(exported, lmeval_written):
    _, written, _ = exported
    ours, theirs = json.loads(written.results.read_text()), lmeval_written[0]
    assert set(theirs) - NOT_EXPORTED <= set(ours)
    for key in set(theirs) & set(ours):
        assert kind(ours[key]) == kind(theirs[key]), key
    [their_task] = theirs["results"]
    # per task: name, alias, sample_len and "<metric>,none" / "<metric>_stderr,none" as lm-eval writes them
    for task, entry in ours["results"].items():
        assert {k: kind(v) for k, v in entry.items() if "," not in k} == \
            {k: kind(v) for k, v in theirs["results"][their_task].items() if "," not in k}
        metrics = [k for k in entry if "," in k and "_stderr," not in k]
        assert metrics and all(k.endswith(",none") and isinstance(entry[k], float) for k in metrics), task
        assert all(entry[k.replace(",", "_stderr,")] == "N/A" or isinstance(entry[k.replace(",", "_stderr,")], float)
                   for k in metrics)
        assert ours["n-samples"][task].keys() == theirs["n-samples"][their_task].keys()
        assert all(isinstance(v, int) for v in ours["n-samples"][task].values())
        # versions: lm-eval's schema allows str | float; the harness's versions are strings ("1", "1+args.<hash>")
        assert isinstance(ours["versions"][task], str) and isinstance(ours["n-shot"][task], int)
        config, their_config = ours["configs"][task], theirs["configs"][their_task]
        for key in ("task", "output_type", "generation_kwargs", "metric_list", "num_fewshot", "repeats", "metadata"):
            assert kind(config[key]) == kind(their_config[key]), (task, key)
        for entry in config["metric_list"]:
            assert set(entry) <= set(their_config["metric_list"][0]) and isinstance(entry["metric"], str)
    # config: lm-eval's model / model_args, and the provenance keys the bridge writes, with their types
    shared = set(ours["config"]) & set(theirs["config"])
    assert {"model", "model_args", "harness_model", "model_fingerprint", "model_dtype", "defense", "defense_params",
            "defense_calibration_sha256", "defense_fingerprint", "decoding", "harness_version", "limit"} <= shared
    assert all(kind(ours["config"][k]) == kind(theirs["config"][k]) for k in shared - {"device"})
    assert ours["config"]["model"] == theirs["config"]["model"] == "defended-mm"
    assert ours["model_name"] == ours["config"]["model_args"]["model"] == TINY


def test_samples_files_have_lm_evals_keys_and_value_types(exported, lmeval_written):
    _, written, _ = exported
    their = lmeval_written[1][0]
    assert SAMPLE_KEYS <= set(their)
    for task, path in written.samples.items():
        metric_names = [m["metric"] for m in json.loads(written.results.read_text())["configs"][task]["metric_list"]]
        for line in read_lines(path):
            assert set(line) == SAMPLE_KEYS | set(metric_names), task
            assert {k: kind(line[k]) for k in SAMPLE_KEYS} == {k: kind(their[k]) for k in SAMPLE_KEYS}
            args, their_args = line["arguments"]["gen_args_0"], their["arguments"]["gen_args_0"]
            assert {k: kind(args[k]) for k in ("arg_0", "arg_1")} == {k: kind(their_args[k]) for k in ("arg_0", "arg_1")}
            assert [[kind(r) for r in rs] for rs in line["resps"]] == [[kind(r) for r in rs] for rs in their["resps"]]
            assert [kind(r) for r in line["filtered_resps"]] == [kind(r) for r in their["filtered_resps"]]
            # per-sample metrics: floats as lm-eval's, null where the verdict does not apply or is undecided
            assert all(isinstance(line[m], float) or line[m] is None for m in metric_names)
            assert line["metrics"] == [m for m in metric_names if line[m] is not None]


# --------------------------------------------------------------------------------- read by lm-eval
def test_lm_evals_file_helpers_find_the_files_and_the_latest_run(exported, stored):
    out, first, second = exported
    folder = out / TINY
    assert first.folder == second.folder == folder  # lm-eval's tracker names the folder after model_args' model
    assert sanitize_model_name(TINY) == TINY
    files = [path.as_posix() for path in folder.iterdir()]
    assert sorted(get_results_filenames(files)) == sorted([first.results.as_posix(), second.results.as_posix()])
    assert sorted(get_sample_results_filenames(files)) == sorted(p.as_posix() for e in (first, second) for p in e.samples.values())
    # the gaps run has the later stamp: it is lm-eval's latest, for the results and for each task's samples
    assert get_latest_filename(get_results_filenames(files)) == second.results.as_posix()
    for task, path in second.samples.items():
        task_files = [f for f in get_sample_results_filenames(files) if get_file_task_name(Path(f).name) == task]
        assert get_latest_filename(task_files) == path.as_posix()
        assert get_file_datetime(path.name) == "2099-12-31T23-59-59.000000"  # the run's stamp
    assert second.results.name == "results_2099-12-31T23-59-59.000000.json"
    assert not [name for name in map(Path, files) if name.name.startswith(".")]  # no temporary file left
    # exporting again rewrites the same files
    again = export.export_lmeval(stored[1], out)
    assert again.paths() == first.paths() and len(list(folder.iterdir())) == len(files)


def test_values_are_what_lm_eval_aggregates_from_the_per_sample_values(exported, stored):
    _, first, second = exported
    for written, run_dir in ((first, stored[1]), (second, stored[2])):
        results = json.loads(written.results.read_text())
        run = load_run(run_dir)
        checked = 0
        for task, path in written.samples.items():
            lines = read_lines(path)
            for entry in results["configs"][task]["metric_list"]:
                name = entry["metric"]
                value, stderr = results["results"][task][f"{name},none"], results["results"][task][f"{name}_stderr,none"]
                [row] = [r for r in run.metrics if r.task == task and r.metric == name and r.subset == "all"]
                assert value == pytest.approx(row.value / 100)  # percent -> fraction
                items = [line[name] for line in lines if line[name] is not None]
                if not items:  # scored against references: the run stores only the aggregate
                    assert task == "easyvqa" and name == "accuracy"
                    continue
                assert len(items) == row.n and mean(items) == pytest.approx(value)
                assert stderr == (pytest.approx(mean_stderr(items)) if len(items) > 1 else "N/A")
                checked += 1
        assert checked >= 3  # figstep asr, xstest refusal_rate and asr

    # the gaps: the failed generation is left out, the undecided verdict is null, the refusal counts 0
    lines = {t: read_lines(p) for t, p in second.samples.items()}
    results = json.loads(second.results.read_text())
    assert results["n-samples"]["xstest"]["effective"] == results["n-samples"]["xstest"]["original"] - 1
    assert results["results"]["xstest"]["sample_len"] == len(lines["xstest"])
    figstep = lines["figstep-tiny"]
    assert figstep[0]["asr"] is None and figstep[0]["metrics"] == [] and figstep[1]["asr"] == 0.0
    assert results["results"]["figstep-tiny"]["asr_stderr,none"] > 0


def test_hashes_are_lm_evals(exported):
    _, written, _ = exported
    results = json.loads(written.results.read_text())
    for task, path in written.samples.items():
        lines = read_lines(path)
        for line in lines:
            assert line["doc_hash"] == hash_string(json.dumps(line["doc"], indent=2, default=handle_non_serializable,
                                                              ensure_ascii=False))
            assert line["prompt_hash"] == hash_string(line["arguments"]["gen_args_0"]["arg_0"])
            assert line["target_hash"] == hash_string(str(line["target"]))
        assert results["task_hashes"][task] == hash_string(
            "".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in lines))
    for name in ("org/model@main", 'a:b*c?d"e<f>g|h\\i[j]', TINY):
        assert export.sanitize_model_name(name) == sanitize_model_name(name)
    for hits, n in ((0, 1), (1, 2), (3, 7), (50, 50)):
        items = [1.0] * hits + [0.0] * (n - hits)
        assert export.mean_stderr(hits / n, n) == (pytest.approx(mean_stderr(items)) if n > 1 else "N/A")


def test_make_table_and_the_wandb_logger_read_the_results(exported):
    _, written, _ = exported
    results = json.loads(written.results.read_text())
    table = make_table(results)
    for task, entry in results["results"].items():
        assert f"|{task}" in table.replace(" ", "")
    assert "|figstep-tiny|1|none|0|asr|↓|1|±|0|" in table.replace(" ", "")  # the tiny model complies; lower is better

    logger = object.__new__(WandbLogger)  # its results parsing, without a W&B connection
    logger.post_init(results)
    summary, logged = logger._sanitize_results_dict()
    assert logged["figstep-tiny/asr"] == results["results"]["figstep-tiny"]["asr,none"]
    assert logged["xstest/refusal_rate_stderr"] == results["results"]["xstest"]["refusal_rate_stderr,none"]
    assert summary == {f"{task}/{key}": task for task in results["results"] for key in ("name", "alias")}
    assert logger._get_config()["cli_configs"]["defense_fingerprint"]["name"] == "none"


def test_the_zeno_script_and_datasets_read_the_files(exported, tmp_path):
    """The reads of lm-eval's scripts/zeno_visualize.py (latest results per model folder, its configs'
    tasks and metric_list, each task's latest samples file and these columns), then ``datasets``' JSON
    loader, as for a details repo on the Hub."""
    import datasets

    out, _, second = exported
    folder = out / TINY
    files = [p.as_posix() for p in folder.iterdir() if p.is_file()]
    latest = json.loads(Path(get_latest_filename(get_results_filenames(files))).read_text())
    assert isinstance(latest["config"]["model_args"], dict)
    for task, config in latest["configs"].items():
        task_files = [f for f in get_sample_results_filenames(files) if get_file_task_name(Path(f).name) == task]
        data = read_lines(Path(get_latest_filename(task_files)))
        assert not config.get("filter_list") and config["output_type"] == "generate_until"
        frame = {"id": [x["doc_id"] for x in data], "labels": [x["target"] for x in data],
                 "data": [x["arguments"]["gen_args_0"]["arg_0"] for x in data],
                 "output": [str(x["filtered_resps"][0]) for x in data]}
        frame.update({m["metric"]: [x[m["metric"]] for x in data] for m in config["metric_list"]})
        assert all(len(column) == len(data) > 0 for column in frame.values())
        assert any(m.get("aggregation") == "mean" for m in config["metric_list"])

    loaded = datasets.load_dataset("json", data_files=str(second.results), split="train", cache_dir=str(tmp_path))
    assert loaded["results"][0]["xstest"]["refusal_rate,none"] == latest["results"]["xstest"]["refusal_rate,none"]
    for task, path in second.samples.items():
        rows = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path))
        assert rows.num_rows == len(read_lines(path)) and rows[0]["filter"] == "none"


def test_prompts_replay_through_the_bridge(exported, stored):
    """arg_0 is the context the bridge turns back into the same request: the prompt, one image placeholder
    for an image sample."""
    _, written, _ = exported
    for path in written.samples.values():
        for line in read_lines(path):
            doc = line["doc"]
            assert context_to_turn(line["arguments"]["gen_args_0"]["arg_0"]) == Turn(None, doc["prompt"], int(bool(doc["image"])))
            assert ("arg_2" in line["arguments"]["gen_args_0"]) == bool(doc["image"])


# ------------------------------------------------------------------------------------------- command
def test_export_command(stored, tmp_path, capsys):
    root, run_dir, gaps_dir = stored
    results_dir = root / "results"
    assert main(["export", "--format", "lm-eval", "--results-dir", str(results_dir), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert GAPS_ID in printed and (tmp_path / "a" / TINY / "results_2099-12-31T23-59-59.000000.json").is_file()  # latest
    assert main(["export", str(run_dir), "--format", "lm-eval", "--out", str(tmp_path / "b")]) == 0  # a run folder
    assert main(["export", run_dir.name, "--format", "lm-eval", "--results-dir", str(results_dir)]) == 0  # a run id
    assert len(list((results_dir / "lm-eval" / TINY).glob("samples_*.jsonl"))) == len(TASKS)  # default --out
    capsys.readouterr()

    assert main(["export", "nope", "--format", "lm-eval", "--results-dir", str(results_dir)]) == 2
    assert "no run 'nope': neither a run folder nor a run id under" in capsys.readouterr().err
    assert main(["export", "--format", "lm-eval", "--results-dir", str(tmp_path / "empty")]) == 2
    assert "no stored run under" in capsys.readouterr().err
    assert main(["export", run_dir.name, "--results-dir", str(results_dir)]) == 2  # --format is required
    assert "--format" in capsys.readouterr().err
    assert main(["export", run_dir.name, "--format", "csv", "--results-dir", str(results_dir)]) == 2
    assert "invalid choice: 'csv'" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["export", str(run_dir), "--format", "lm-eval", "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err

    empty = tmp_path / "runs" / "no-samples"
    shutil.copytree(run_dir, empty)
    (empty / "samples.jsonl").write_text("")
    assert main(["export", str(empty), "--format", "lm-eval", "--out", str(tmp_path / "c")]) == 2
    assert "has no samples to export" in capsys.readouterr().err


def test_eval_writes_the_lm_eval_files_after_the_run(stored, tmp_path, capsys, monkeypatch):
    root = stored[0]
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(root / "results"))  # the run is served from its cache
    out = tmp_path / "lmeval"
    argv = ["eval", "--model", TINY, "--tasks", "xstest", "--limit", "4", "--max-new-tokens", "4", "--no-progress",
            "--reports-dir", str(tmp_path / "reports"), "--lm-eval-output", str(out)]
    assert main(argv) == 0
    assert "lm-eval files:" in capsys.readouterr().out
    [results] = (out / TINY).glob("results_*.json")
    assert set(json.loads(results.read_text())["results"]) == {"xstest"}
    (tmp_path / "file").write_text("")
    assert main(argv[:-1] + [str(tmp_path / "file")]) == 2  # refused before the run
    assert "exists and is not a folder" in capsys.readouterr().err
