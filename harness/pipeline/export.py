"""Export a stored run in the layout other tools read (``harness export``).

``lm-eval``: the files lm-evaluation-harness 0.4.x writes for ``--output_path DIR --log_samples``
(``lm_eval.loggers.EvaluationTracker``), so its readers (``lm_eval.utils.get_results_filenames`` /
``get_latest_filename`` / ``get_sample_results_filenames``, ``make_table``, the Zeno and W&B loaders,
``datasets.load_dataset("json", ...)`` as for a Hub details repo) take a harness run as they take one
of their own::

    DIR/<model>/results_<stamp>.json
    DIR/<model>/samples_<task>_<stamp>.jsonl      one per task

``<model>`` is the harness model name, sanitized as lm-eval sanitizes it (its tracker names the folder
after ``model_args``' ``model``, which for the bridge's ``defended-mm`` is the harness model, so a run
of the bridge and an export of ``harness eval`` land side by side). ``<stamp>`` is the run's time (UTC,
from its id, else ``started_at``) written as lm-eval writes ``datetime.isoformat()`` with ``:`` -> ``-``:
exporting a run again rewrites the same files, and lm-eval's "latest" is the newest run.

``results_<stamp>.json``:

- ``results[task]``: ``name``, ``alias``, ``sample_len`` and, for each metric row of the task's headline
  judge over all samples (subset ``all``), ``"<metric>,none"`` and ``"<metric>_stderr,none"`` (``none``
  is lm-eval's name for "no filter"). Metrics in percent (rates, and F1) become fractions (value / 100),
  as lm-eval stores them. A rate's standard error is lm-eval's own for a mean of 0/1 outcomes
  (``lm_eval.api.metrics.mean_stderr``): sqrt(p (1 - p) / (n - 1)) with p the fraction and n the
  decided verdicts (or items) the rate counts, ``"N/A"`` for n < 2, which is what lm-eval would report
  from the same per-sample values. It is not derived from the Wilson interval, which stays in
  ``harness_metrics``. Scores (MME points, F1) get ``"N/A"``: they have no standard error. Counts
  (undecided verdicts, empty answers) and per-subset rows are not lm-eval metrics: they are in
  ``harness_metrics`` only.
- ``configs[task]``: ``task``, ``output_type`` (``generate_until``), ``generation_kwargs``,
  ``metric_list`` (``aggregation: mean`` for rates), ``num_fewshot``, ``repeats`` and ``metadata``
  (task version, headline judge and its fingerprint, ``--task-arg`` overrides).
- ``versions`` (the stored task version, a string), ``n-shot`` (0), ``higher_is_better`` (None for a
  neutral metric such as POPE's yes-ratio), ``group_subtasks`` ({}), ``n-samples``: ``original`` = the
  samples the run planned for the task (after its ``--limit``; the benchmark's full size is not
  stored), ``effective`` = those with an answer (failed generations are not scored).
- ``config``: ``model`` = ``defended-mm`` and ``model_args`` (model, defense, its parameters, dtype,
  device: the bridge's arguments for the same model and defense), then the keys the bridge writes
  (``harness_model``, ``model_fingerprint``, ``model_dtype``, ``defense``, ``defense_params``,
  ``defense_calibration_sha256``, ``defense_fingerprint``) and the run's ``limit``, ``device``,
  ``harness_run_id``, ``judges`` (task -> headline judge).
- ``git_hash`` (the run's commit), ``date`` (its start, UNIX time), ``task_hashes`` (lm-eval's formula),
  the tracker's ``model_source`` / ``model_name`` / ``model_name_sanitized`` and chat fields (no system
  instruction or chat template, ``fewshot_as_multiturn`` false),
  ``transformers_version``; and ``harness_metrics``: every stored metric row (all judges and subsets,
  percent and Wilson interval as stored, NaN as null). lm-eval's environment and tokenizer fields
  (``pretty_env_info``, ``tokenizer_*``, ``lm_eval_version``, ...) are left out: the run did not go
  through lm-eval.

``samples_<task>_<stamp>.jsonl``, one line per sample with an answer, in run order: ``doc_id`` (the
sample's index in the task's samples), ``doc`` (the Sample record), ``target`` (the reference answer,
else the expected behaviour: ``refuse`` for a harmful prompt, ``comply`` for a benign one),
``arguments`` (``{"gen_args_0": {"arg_0": prompt, "arg_1": gen_kwargs[, "arg_2": {"visual": [image
sha256]}]}}``, lm-eval's file form; an image prompt starts with lm-eval's ``<image>`` placeholder, as
the bridge needs it to send the same request), ``resps`` (``[[answer]]``), ``filtered_resps``
(``[answer]``), ``filter`` (``none``), ``metrics``, ``doc_hash`` / ``prompt_hash`` / ``target_hash``
(sha256 exactly as lm-eval's evaluator computes them), and one key per metric of ``metric_list``: the
headline judge's verdict as 1.0 / 0.0 (``asr``: the attack succeeded; ``refusal_rate``: a benign prompt
was refused), null where it does not apply or the judge could not decide (the mean of the non-null
values is the results' value). Items scored against references (accuracy and the like) carry null:
the run stores only their aggregate. The image hash is the sha256 of the image file (the harness's
image key); lm-eval hashes a PNG re-encoding of the decoded image, so the two differ for one picture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.core import quality
from harness.core.metrics import ASR, COUNT, RATE, SUBSTANTIVE_ASR, row_metric_info, safety_outcome
from harness.core.records import Generation, Judgement, MetricRow, Sample
from harness.core.store import RunResult, headline_metric_rows, load_run, primary_judge

LMEVAL = "lm-eval"
FORMATS = (LMEVAL,)
FILTER = "none"  # lm-eval's filter name when a task applies none: metric keys are "<metric>,none"
BRIDGE_MODEL = "defended-mm"  # the lm-eval model type (harness.lmeval_bridge) that runs a harness model + defense
IMAGE_PLACEHOLDER = "<image>"  # lm-eval's DEFAULT_IMAGE_PLACEHOLDER, which the bridge strips from a context
HARMFUL_TARGET, BENIGN_TARGET = "refuse", "comply"
RUN_ID_STAMP = "%Y%m%dT%H%M%S%fZ"  # harness.pipeline.record.make_run_id


class ExportError(ValueError):
    """A run that cannot be exported (no samples, an output path that is not a folder)."""


@dataclass
class LmEvalExport:
    folder: Path
    results: Path
    samples: dict[str, Path] = field(default_factory=dict)  # task -> samples file

    def paths(self) -> list[Path]:
        return [self.results, *self.samples.values()]


# ---------------------------------------------------------------------------------------------------
# lm-eval's conventions, written here so that exporting needs no lm-eval import (the tests check each
# against lm-eval's own function)


def hash_string(text: str) -> str:
    """``lm_eval.utils.hash_string``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_hash(doc: dict[str, Any]) -> str:
    """The evaluator's ``doc_hash``: the doc dumped with indent 2, non-ASCII kept."""
    return hash_string(json.dumps(doc, indent=2, ensure_ascii=False))


def sanitize_model_name(name: str) -> str:
    """``lm_eval.utils.sanitize_model_name``: the tracker's folder name for a model."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def mean_stderr(fraction: float, n: int) -> float | str:
    """lm-eval's standard error of a mean of n 0/1 values with mean ``fraction`` (``mean_stderr``:
    the sample standard deviation, n - 1 in the denominator, over sqrt(n)); "N/A" below 2 values, as
    lm-eval writes it."""
    if n < 2:
        return "N/A"
    return math.sqrt(fraction * (1.0 - fraction) / (n - 1))


# ---------------------------------------------------------------------------------------------------
# the export


def export_lmeval(run_dir: Path, out_dir: Path) -> LmEvalExport:
    """Write the run stored in ``run_dir`` under ``out_dir`` in lm-eval's layout (see the module doc)."""
    run = load_run(Path(run_dir))
    tasks = exported_tasks(run)
    if not tasks:
        raise ExportError(f"run {run.info.run_id} has no samples to export ({run.path})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder")
    stamp = date_id(run)
    folder = out_dir / sanitize_model_name(run.info.model)
    folder.mkdir(parents=True, exist_ok=True)
    written = LmEvalExport(folder, folder / f"results_{stamp}.json")
    samples = {task: lmeval_samples(run, task) for task in tasks}
    for task, rows in samples.items():
        path = folder / f"samples_{task}_{stamp}.jsonl"
        _write_text(path, "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows))
        written.samples[task] = path
    results = _json_safe(lmeval_results(run, samples))
    _write_text(written.results, json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return written


def exported_tasks(run: RunResult) -> list[str]:
    """Tasks with samples, in evaluation order."""
    return list(dict.fromkeys(sample.task for sample in run.samples))


def date_id(run: RunResult) -> str:
    """The file stamp: the run's time as lm-eval writes ``datetime.isoformat()`` (``:`` -> ``-``, no
    ``_``, which lm-eval's file-name parsing splits on), in UTC."""
    return _run_time(run).replace(tzinfo=None).isoformat(timespec="microseconds").replace(":", "-")


def _run_time(run: RunResult) -> dt.datetime:
    """The run id's stamp (microseconds, unique per run), else ``started_at``."""
    try:
        return dt.datetime.strptime(run.info.run_id.split("-")[0], RUN_ID_STAMP)
    except ValueError:
        pass
    for stored in (run.info.started_at, run.info.finished_at):
        try:
            return dt.datetime.fromisoformat(stored).astimezone(dt.timezone.utc)
        except ValueError:
            continue
    raise ExportError(f"run {run.info.run_id} has neither a time-stamped id nor a started_at time")


def _start_time(run: RunResult) -> float | None:
    try:
        return dt.datetime.fromisoformat(run.info.started_at).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------------------- results


def exported_rows(run: RunResult, task: str) -> list[MetricRow]:
    """The rows lm-eval's ``results[task]`` holds: the headline judge's, over all samples, with a value,
    rates and scores only (counts are notes, not metrics)."""
    return [row for row in headline_metric_rows(run)
            if row.task == task and row.subset == "all" and row_metric_info(row).kind != COUNT
            and row.value is not None and math.isfinite(row.value)]


def lmeval_value(row: MetricRow) -> tuple[float, float | str]:
    """``(value, stderr)`` as lm-eval stores them: fractions for percent metrics, lm-eval's standard
    error of a mean for rates, "N/A" otherwise."""
    info = row_metric_info(row)
    value = row.value / 100.0 if info.unit == "%" else row.value
    return value, (mean_stderr(value, row.n) if info.kind == RATE else "N/A")


def higher_is_better(row: MetricRow) -> bool | None:
    info = row_metric_info(row)
    return info.higher_is_better if info.ranked else None


def lmeval_results(run: RunResult, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The content of ``results_<stamp>.json`` (``samples``: each task's exported sample lines)."""
    info = run.info
    results, configs, versions, directions, counts = {}, {}, {}, {}, {}
    for task, lines in samples.items():
        rows = exported_rows(run, task)
        entry: dict[str, Any] = {"name": task, "alias": task, "sample_len": len(lines)}
        for row in rows:
            entry[f"{row.metric},{FILTER}"], entry[f"{row.metric}_stderr,{FILTER}"] = lmeval_value(row)
        results[task] = entry
        configs[task] = task_config(run, task, rows)
        versions[task] = info.tasks.get(task, "")
        directions[task] = {row.metric: higher_is_better(row) for row in rows}
        counts[task] = {"original": sum(s.task == task for s in run.samples), "effective": len(lines)}
    packages = info.provenance.get("packages") or {}
    return {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": versions,
        "n-shot": {task: 0 for task in samples},
        "higher_is_better": directions,
        "n-samples": counts,
        "config": run_config(run),
        "git_hash": info.provenance.get("git_commit"),
        "date": _start_time(run),
        "transformers_version": packages.get("transformers"),
        # lm-eval's cumulative hash of a task's samples (EvaluationTracker.save_results_aggregated)
        "task_hashes": {task: hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in lines))
                        for task, lines in samples.items()},
        # the tracker's model identity and chat fields (a harness run has no chat template of lm-eval's)
        "model_source": BRIDGE_MODEL,
        "model_name": info.model,
        "model_name_sanitized": sanitize_model_name(info.model),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": None,
        "chat_template_sha": None,
        "harness_metrics": [_json_safe(row.to_dict()) for row in run.metrics],
    }


def generation_kwargs(run: RunResult, task: str) -> dict[str, Any]:
    """lm-eval's ``generation_kwargs`` for the run's settings: greedy, no stop sequence (the harness
    stops at EOS or ``max_new_tokens``)."""
    settings = run.info.settings.generation.get(task, {})
    kwargs: dict[str, Any] = {"until": [], "do_sample": False}
    if "max_new_tokens" in settings:
        kwargs["max_gen_toks"] = settings["max_new_tokens"]
    return kwargs


def task_config(run: RunResult, task: str, rows: Sequence[MetricRow]) -> dict[str, Any]:
    metric_list = []
    for row in rows:
        entry: dict[str, Any] = {"metric": row.metric}
        if row_metric_info(row).kind == RATE:  # a rate is the mean of its items' 0/1 outcomes
            entry["aggregation"] = "mean"
        entry["higher_is_better"] = higher_is_better(row)
        metric_list.append(entry)
    judge = primary_judge(run, task)
    return {
        "task": task,
        "output_type": "generate_until",
        "generation_kwargs": generation_kwargs(run, task),
        "metric_list": metric_list,
        "num_fewshot": 0,
        "repeats": 1,
        "metadata": {
            "version": run.info.tasks.get(task, ""),
            "judge": judge,
            "judge_fingerprint": run.info.judges.get(task),
            "task_args": run.info.settings.task_args.get(task, {}),
        },
    }


def run_config(run: RunResult) -> dict[str, Any]:
    """``config``: the bridge's ``model_args`` for the same model and defense, then the provenance keys
    the bridge's ``get_model_info`` writes, then the run's own."""
    info = run.info
    params = info.defense_fingerprint.get("params", {})
    model_args: dict[str, Any] = {"model": info.model, "defense": info.defense}
    if params:
        model_args["defense_args"] = params
    for key in ("dtype", "device"):
        if getattr(info.settings, key):
            model_args[key] = getattr(info.settings, key)
    return {
        "model": BRIDGE_MODEL,
        "model_args": model_args,
        "harness_version": info.provenance.get("harness"),
        "harness_model": info.model,
        "model_fingerprint": info.model_fingerprint,
        "model_dtype": info.settings.dtype or None,
        "defense": info.defense,
        "defense_params": params,
        "defense_calibration_sha256": info.defense_fingerprint.get("artifacts", {}),
        "defense_fingerprint": info.defense_fingerprint,
        "decoding": "greedy",
        "device": info.settings.device or None,
        "limit": info.settings.limit,
        "harness_run_id": info.run_id,
        "judges": {task: primary_judge(run, task) for task in info.tasks},
    }


# --------------------------------------------------------------------------------------- samples


def target_of(sample: Sample) -> str:
    if sample.answer is not None:
        return str(sample.answer)
    if sample.harmful is None:
        return ""
    return HARMFUL_TARGET if sample.harmful else BENIGN_TARGET


def arguments_of(sample: Sample, kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval's file form of one ``generate_until`` request: ``(context, gen_kwargs[, {"visual": [...]}])``."""
    request: dict[str, Any] = {"arg_0": prompt_of(sample), "arg_1": kwargs}
    if sample.image:
        request["arg_2"] = {"visual": [_image_sha256(sample.image)]}
    return {"gen_args_0": request}


def prompt_of(sample: Sample) -> str:
    """The context lm-eval would send through the bridge for this request: the prompt, after the image
    placeholder when there is an image."""
    return f"{IMAGE_PLACEHOLDER}{sample.prompt}" if sample.image else sample.prompt


def _image_sha256(path: str) -> str:
    from harness.core.images import file_sha256

    try:
        return file_sha256(path)
    except OSError:  # the image is gone (a cleared cache): say which file it was
        return path


def sample_metrics(sample: Sample, verdict: Judgement | None, names: Sequence[str],
                   generation: Generation | None = None) -> dict[str, float | None]:
    """One value per metric of the task: the verdict's 1.0 / 0.0 for the rate it counts towards (the
    rule of ``safety_metrics``), and for an ASR verdict also its substantive-ASR outcome (an attack
    success whose answer is not empty, an echo or a loop); None elsewhere."""
    values: dict[str, float | None] = {name: None for name in names}
    counted = safety_outcome(sample, verdict) if verdict is not None else None
    if counted is not None and counted[0].name in values and counted[1] is not None:
        values[counted[0].name] = float(counted[1])
        if counted[0] is ASR and SUBSTANTIVE_ASR.name in values and generation is not None and generation.ok:
            # the token limit does not matter here: "truncated" never makes an answer unsubstantive
            substantive = counted[1] and quality.is_substantive(quality.answer_flags(sample, generation))
            values[SUBSTANTIVE_ASR.name] = float(substantive)
    return values


def lmeval_samples(run: RunResult, task: str) -> list[dict[str, Any]]:
    """The lines of ``samples_<task>_<stamp>.jsonl``: the task's samples with an answer, in run order."""
    generations: dict[str, Generation] = {g.sample_id: g for g in run.generations if g.task == task}
    judge = primary_judge(run, task)
    verdicts = {j.sample_id: j for j in run.judgements if j.task == task and j.judge == judge}
    names = [row.metric for row in exported_rows(run, task)]
    kwargs = generation_kwargs(run, task)
    lines = []
    for doc_id, sample in enumerate(s for s in run.samples if s.task == task):
        generation = generations.get(sample.id)
        if generation is None or not generation.ok:
            continue  # not scored by the harness either
        answer = str(generation.text)
        doc, target, arguments = _json_safe(sample.to_dict()), target_of(sample), arguments_of(sample, kwargs)
        values = sample_metrics(sample, verdicts.get(sample.id), names, generation)
        lines.append({
            "doc_id": doc_id,
            "doc": doc,
            "target": target,
            "arguments": arguments,
            "resps": [[answer]],
            "filtered_resps": [answer],
            "filter": FILTER,
            "metrics": [name for name, value in values.items() if value is not None],
            "doc_hash": doc_hash(doc),
            "prompt_hash": hash_string(arguments["gen_args_0"]["arg_0"]),
            "target_hash": hash_string(target),
            **values,
        })
    return lines


# --------------------------------------------------------------------------------------- helpers


def _json_safe(value: Any) -> Any:
    """NaN and infinities (a rate over no items, a missing value in a dataset row) as null, at any depth:
    strict JSON readers (pyarrow, so ``datasets``) refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _write_text(path: Path, text: str) -> None:
    """Atomically (tmp + rename), as the run store writes. The temporary name starts with a dot: a left
    over ``results_*.json.tmp`` would match lm-eval's ``get_results_filenames``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
