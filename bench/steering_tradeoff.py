"""Safety / over-refusal / utility of one defense as one of its parameters varies (issue 4).

    .venv/bin/python bench/steering_tradeoff.py --defense refusal-direction --param coeff \
        --values 1,2,4,8 [--model smol-llava] [--tasks figstep-tiny,xstest,easyvqa] [--limit default]

Each value is one ordinary ``harness eval`` run (same samples, same judges, generation cache shared with
your other runs, so a value already evaluated costs nothing), preceded by ``none`` for the baseline.
The table gives every run metric with its 95 % interval, then the issue-4 summary per value: relative
ASR change against ``none`` (pooled over the harmful prompts of all tasks), over-refusal change in
points and accuracy change in points.

This is a trade-off curve for a paper's figure or a release decision, not a tuning loop: choosing a
value by its score on these test tasks would report a tuned-on-test number. Pick strengths on the
calibration data (``harness calibrate``) and use this to show what the choice costs.

The defense must already be calibrated for the model when it learns anything; the error says which
``harness calibrate`` command makes the artifact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUMMARY_METRICS = {"asr": "ASR", "refusal_rate": "over-refusal", "accuracy": "accuracy"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defense", required=True)
    parser.add_argument("--param", required=True, help="the defense parameter to vary (e.g. coeff, epsilon)")
    parser.add_argument("--values", required=True, help="comma-separated values")
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--tasks", default="figstep-tiny,xstest,easyvqa")
    parser.add_argument("--limit", default="default", help="N, 'all' or 'default' (as in harness eval)")
    parser.add_argument("--defense-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="other fixed defense parameters (repeatable)")
    return parser.parse_args(argv)


def pooled(rows, metric: str) -> tuple[float, int] | None:
    """Sample-weighted mean of ``metric`` over the tasks that report it (subset 'all')."""
    chosen = [row for row in rows if row.metric == metric and row.subset == "all" and row.n]
    if not chosen:
        return None
    n = sum(row.n for row in chosen)
    return sum(row.value * row.n for row in chosen) / n, n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from harness.core.options import parse_limit, parse_params
    from harness.pipeline.evaluate import EvalConfig, run_eval

    fixed = parse_params(args.defense_arg)  # values parsed as YAML scalars, as in harness eval
    values = [parse_params([f"{args.param}={value}"])[args.param] for value in args.values.split(",") if value]
    tasks = [name for name in args.tasks.split(",") if name]
    limit = parse_limit(args.limit)
    runs: list[tuple[str, list]] = []
    base = run_eval(EvalConfig(model=args.model, tasks=tasks, defense="none", limit=limit,
                               progress=False, write_report=False))
    runs.append(("none", base.metrics))
    for value in values:
        result = run_eval(EvalConfig(model=args.model, tasks=tasks, defense=args.defense,
                                     defense_params={**fixed, args.param: value}, limit=limit,
                                     progress=False, write_report=False))
        runs.append((f"{args.defense} {args.param}={value}", result.metrics))
        print(f"done: {runs[-1][0]}", flush=True)

    print(f"\nmodel {args.model}; tasks {tasks}; limit {args.limit}; fixed {fixed or '{}'}\n")
    keys = sorted({(row.task, row.metric) for _, rows in runs for row in rows if row.subset == "all"})
    width = max(len(label) for label, _ in runs)
    print(f"{'run':<{width}} " + " ".join(f"{task}:{metric}"[:26].rjust(26) for task, metric in keys))
    for label, rows in runs:
        by_key = {(row.task, row.metric): row for row in rows if row.subset == "all"}
        cells = []
        for key in keys:
            row = by_key.get(key)
            if row is None:
                cell = "-"
            elif row.ci_low is None or row.ci_high is None:
                cell = f"{row.value:.1f}"
            else:
                cell = f"{row.value:.1f} [{row.ci_low:.0f},{row.ci_high:.0f}]"
            cells.append(cell.rjust(26))
        print(f"{label:<{width}} " + " ".join(cells))

    print(f"\n{'run':<{width}} {'ASR':>6} {'rel. ASR':>9} {'over-ref.':>10} {'d pts':>6} {'acc.':>6} {'d pts':>6}")
    base_values = {metric: pooled(base.metrics, metric) for metric in SUMMARY_METRICS}
    for label, rows in runs:
        cells = []
        for metric in SUMMARY_METRICS:
            current, reference = pooled(rows, metric), base_values[metric]
            if current is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{current[0]:.1f}")
            if reference is None:
                cells.append("-")
            elif metric == "asr":
                change = (current[0] - reference[0]) / reference[0] * 100 if reference[0] else float("nan")
                cells.append(f"{change:+.0f}%")
            else:
                cells.append(f"{current[0] - reference[0]:+.1f}")
        print(f"{label:<{width}} {cells[0]:>6} {cells[1]:>9} {cells[2]:>10} {cells[3]:>6} {cells[4]:>6} {cells[5]:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
