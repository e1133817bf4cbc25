"""Per-sample latency of every defense as a ratio to ``none``, measured in one run (issue 4).

    .venv/bin/python bench/defense_latency.py [--model smol-llava] [--tasks figstep-tiny,xstest,easyvqa]
        [--limit 12] [--defenses none,ras,...] [--rounds 1] [--keep DIR]
        [--calibration-arg autosteer:assistant_marker=true] [--device cuda] [--dtype bfloat16]
        [--defense-arg llama-guard-filter:guard_checkpoint=DIR]
    .venv/bin/python bench/defense_latency.py --summarise DIR   # re-print the tables of a --keep folder

Run it on an otherwise idle machine. Every defense generates the same samples (the first ``--limit``
of each task's seeded, stratified order) into a fresh results folder and a fresh generation cache, so
no timing comes from the cache. Defenses that learn something are calibrated first with the
built-in calibration prompts (calibration time is reported separately and not counted as latency).
``llama-guard-filter`` is not in the default list: it needs the Llama Guard 3 weights (Hub cache, or a
folder given with ``--defense-arg llama-guard-filter:guard_checkpoint=DIR``); its guard passes are part
of each sample's latency.

To limit the effect of background load drifting during the run, defenses are run in rounds: each
round runs every defense on a slice of the samples, in a rotated order; per-sample latencies of all
rounds are pooled. The table gives, per defense: median and mean per-sample latency (prefill +
decode, as stored in the generations), the ratio of each to ``none``, mean output tokens, and the
safety / utility metrics of the same run (ASR, over-refusal, accuracy), so one command yields the
issue-4 table. A second table gives the mean per task: answer lengths differ by an order of magnitude
between tasks, so the pooled median can jump from one task's latencies to another's. The tables are
computed from the stored runs (``--summarise`` re-prints them from a ``--keep`` folder). The 1-minute
load average before and after each defense is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ALL_DEFENSES = (
    "none", "self-reminder", "figstep-prompt", "adashield-s", "ecso", "eta", "mllm-protector",
    "refusal-direction", "cast", "astra", "autosteer", "ras",
)
# The official ETA / MLLM-Protector scorers are 8B / LoRA checkpoints from the hub; offline, the
# documented stand-ins are used (see the defenses' docstrings). Printed with the results.
OFFLINE_PARAMS = {
    "eta": {"reward_scorer": "self-judge", "image_scorer": "self-judge"},
    "mllm-protector": {"detector": "self-judge", "detoxifier": "none"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--tasks", default="figstep-tiny,xstest,easyvqa")
    parser.add_argument("--limit", type=int, default=12, help="samples per task (first N of the seeded order)")
    parser.add_argument("--defenses", default=",".join(ALL_DEFENSES))
    parser.add_argument("--rounds", type=int, default=1, help="split the samples into this many rotated rounds")
    parser.add_argument("--calibration-limit", type=int, default=None, help="--limit for each calibration")
    parser.add_argument("--keep", type=Path, default=None, help="results/cache folder to keep (default: temporary)")
    parser.add_argument("--calibration-arg", action="append", default=[], metavar="DEFENSE:KEY=VALUE",
                        help="calibration option of one defense (as harness calibrate --calibration-arg)")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="DEFENSE:KEY=VALUE",
                        help="parameter of one defense, over the offline stand-ins (as harness eval --defense-arg)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (calibration and generation)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--summarise", type=Path, default=None, metavar="DIR",
                        help="print the tables of an earlier --keep folder; runs nothing")
    return parser.parse_args(argv)


def load1() -> float:
    return os.getloadavg()[0]


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarise is not None:
        print_tables(*collect(args.summarise / "results"))
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="defense-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    # Fresh results and reports; the generation cache and calibrations live under the results folder, so
    # no generation and no calibration comes from an earlier run. HARNESS_CACHE_DIR (the built model,
    # rendered task images, the judgement cache) is reused: it changes no answer, verdict or timing.
    os.environ["HARNESS_RESULTS_DIR"] = str(work / "results")
    os.environ["HARNESS_REPORTS_DIR"] = str(work / "reports")

    from harness import registries
    from harness.defense_api.calibration import learns_from_data
    from harness.pipeline.calibrate import calibrate
    from harness.core.options import parse_scoped
    from harness.pipeline.evaluate import EvalConfig, run_eval

    defenses = [registries.defenses().canonical(name) for name in args.defenses.split(",") if name]
    calibration_options = {registries.defenses().canonical(name): options for name, options in
                           parse_scoped(args.calibration_arg, "--calibration-arg", None).items()}
    defense_params = {name: dict(params) for name, params in OFFLINE_PARAMS.items()}
    for name, options in parse_scoped(args.defense_arg, "--defense-arg", None).items():
        defense_params.setdefault(registries.defenses().canonical(name), {}).update(options)
    tasks = [name for name in args.tasks.split(",") if name]
    print(f"work folder: {work}\nmodel {args.model}; tasks {tasks}; {args.limit} samples per task; "
          f"defenses {defenses}; {args.rounds} round(s); threads {os.environ.get('OMP_NUM_THREADS', 'default')}; "
          f"device {device_name(args.device)}, {args.dtype}")
    for name, params in defense_params.items():
        if name in defenses:
            print(f"  {name} runs with {params}")

    calibration_s: dict[str, float] = {}
    for name in defenses:
        defense_class = registries.defenses().get(name)
        if learns_from_data(defense_class):
            start = time.perf_counter()
            options = calibration_options.get(name, {})
            calibrate(name, args.model, limit=args.calibration_limit, options=options, dtype=args.dtype,
                      device=args.device)
            calibration_s[name] = time.perf_counter() - start
            print(f"calibrated {name} in {calibration_s[name]:.1f} s" + (f" with {options}" if options else ""))

    slice_size = -(-args.limit // args.rounds)
    for round_index in range(args.rounds):
        limit = min(args.limit, slice_size * (round_index + 1))
        order = defenses[round_index % len(defenses):] + defenses[: round_index % len(defenses)]
        for name in order:
            before = load1()
            start = time.perf_counter()
            # Each round extends the prefix; earlier rounds' samples are cache hits, not timed again.
            result = run_eval(EvalConfig(model=args.model, tasks=tasks, defense=name,
                                         defense_params=defense_params.get(name, {}), limit=limit,
                                         batch_size=1,  # per-sample latency, not a batch's
                                         device=args.device, dtype=args.dtype,
                                         progress=False, write_report=False))
            wall = time.perf_counter() - start
            fresh = [g for g in result.generations if g.ok and not g.from_cache]
            print(f"round {round_index + 1}: {name:<18} {len(fresh):3d} new generations in {wall:6.1f} s "
                  f"(load {before:.2f} -> {load1():.2f})", flush=True)

    print()
    print_tables(*collect(work / "results"), order=defenses)
    if calibration_s:
        print("\ncalibration time (not in latency): "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in calibration_s.items()))
    return 0


# ------------------------------------------------------------------------------------------ tables
def collect(results_dir: Path) -> tuple[list, dict[str, dict[tuple[str, str], tuple[float, int]]]]:
    """From the stored runs: every successful generation made fresh (a cache hit carries an earlier
    run's timing), and defense -> (task, metric) -> (value, n) from its newest run (the one that covers
    every sample)."""
    from harness.core.store import list_runs, load_run

    generations, metrics = [], {}
    for run in map(load_run, list_runs(results_dir)):  # oldest first: a newer run's metrics win
        generations += [g for g in run.generations if g.ok and not g.from_cache]
        metrics[run.info.defense] = {(row.task, row.metric): (row.value, row.n) for row in run.metrics
                                     if row.subset == "all"}
    return generations, metrics


def print_tables(generations, metrics, order: list[str] | None = None) -> None:
    from harness.core.latency import latency_stats

    by_defense: dict[str, list] = defaultdict(list)
    for generation in generations:
        by_defense[generation.defense].append(generation)
    defenses = [name for name in (order or ALL_DEFENSES) if name in by_defense or name in metrics]
    defenses += sorted(set(by_defense) - set(defenses))
    base = [g.total_s for g in by_defense.get("none", [])]
    base_median = statistics.median(base) if base else float("nan")
    base_mean = statistics.fmean(base) if base else float("nan")
    print(f"{'defense':<18} {'n':>4} {'median s':>9} {'x none':>7} {'mean s':>8} {'x none':>7} {'out tok':>8}")
    for name in defenses:
        values = [g.total_s for g in by_defense[name]]
        if not values:
            print(f"{name:<18}    0  (no successful generation)")
            continue
        median, mean = statistics.median(values), statistics.fmean(values)
        tokens = statistics.fmean(g.output_tokens for g in by_defense[name])
        print(f"{name:<18} {len(values):4d} {median:9.3f} {median / base_median:7.2f} {mean:8.3f} "
              f"{mean / base_mean:7.2f} {tokens:8.1f}")

    # Per task: the tasks' answer lengths differ by an order of magnitude, so the pooled median
    # jumps between them; the per-task mean is the stable comparison.
    task_means = {(stats.defense, stats.task): stats.mean_s for stats in latency_stats(generations)}
    tasks = sorted({task for _, task in task_means})
    print("\nmean s per sample by task (x none on the same task)")
    print(f"{'defense':<18} " + " ".join(task[:22].rjust(22) for task in tasks))
    for name in defenses:
        cells = []
        for task in tasks:
            mean, reference = task_means.get((name, task)), task_means.get(("none", task))
            if mean is None:
                cells.append("-".rjust(22))
                continue
            ratio = f" (x{mean / reference:.2f})" if reference else ""
            cells.append(f"{mean:.3f}{ratio}".rjust(22))
        print(f"{name:<18} " + " ".join(cells))

    keys = sorted({key for values in metrics.values() for key in values})
    print(f"\n{'defense':<18} " + " ".join(f"{task}:{metric}"[:24].rjust(24) for task, metric in keys))
    for name in defenses:
        cells = []
        for key in keys:
            value = metrics.get(name, {}).get(key)
            cells.append((f"{value[0]:.1f} (n={value[1]})" if value else "-").rjust(24))
        print(f"{name:<18} " + " ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
