"""Do the same evaluation's answers and metrics agree across devices and dtypes?

    .venv/bin/python bench/device_agreement.py [--model smol-llava] [--tasks figstep-tiny,xstest,easyvqa]
        [--limit 30] [--defense none] [--runs cpu:float32,cuda:float32,cuda:bfloat16] [--keep DIR]

Each DEVICE:DTYPE pair evaluates the same samples into one fresh results folder and generation cache (the
device and dtype are in the cache key, so no pair reads another's answers). The first pair is the
reference: per task, the table gives each pair's share of answers identical to the reference's, the
share whose first 32 characters agree, and the task metrics side by side. Greedy decoding on another
device or in half precision may pick a different token where two logits are close; after that the
answers part, so identical answers are expected from float32 and not from bfloat16. A defense that
learns something is calibrated once, on the reference pair, into the fresh folder; ETA and
MLLM-Protector use their offline stand-in scorers (as in ``defense_latency.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.defense_latency import OFFLINE_PARAMS  # noqa: E402 - the offline scorers of ETA / MLLM-Protector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--tasks", default="figstep-tiny,xstest,easyvqa")
    parser.add_argument("--limit", type=int, default=30, help="samples per task (first N of the seeded order)")
    parser.add_argument("--defense", default="none")
    parser.add_argument("--runs", default="cpu:float32,cuda:float32,cuda:bfloat16",
                        help="comma-separated DEVICE:DTYPE pairs; the first is the reference")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="results/cache folder to keep (default: temporary)")
    return parser.parse_args(argv)


def device_and_dtype(item: str) -> tuple[str, str]:
    """"cuda:1:bfloat16" -> ("cuda:1", "bfloat16"): the dtype is after the last colon."""
    device, sep, dtype = item.rpartition(":")
    if not sep or not device or dtype not in ("float32", "bfloat16", "float16", "auto"):
        raise SystemExit(f"error: --runs expects DEVICE:DTYPE pairs such as cuda:bfloat16, got {item!r}")
    return device, dtype


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="device-agreement-"))
    os.environ["HARNESS_RESULTS_DIR"] = str(work / "results")
    os.environ["HARNESS_REPORTS_DIR"] = str(work / "reports")

    from harness import registries
    from harness.defense_api.calibration import learns_from_data
    from harness.pipeline.calibrate import calibrate
    from harness.pipeline.evaluate import EvalConfig, run_eval

    pairs = [device_and_dtype(item) for item in args.runs.split(",") if item]
    tasks = [name for name in args.tasks.split(",") if name]
    defense = registries.defenses().canonical(args.defense)
    params = OFFLINE_PARAMS.get(defense, {})
    defense_class = registries.defenses().get(defense)
    if learns_from_data(defense_class):
        # one artifact for every pair (device and dtype are portable), fitted in the reference's
        calibrate(defense, args.model, device=pairs[0][0], dtype=pairs[0][1])
    answers: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    metrics: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for device, dtype in pairs:
        start = time.perf_counter()
        result = run_eval(EvalConfig(model=args.model, tasks=tasks, defense=defense, defense_params=params, limit=args.limit,
                                     device=device, dtype=dtype, batch_size=args.batch_size,
                                     progress=False, write_report=False))
        answers[(device, dtype)] = {(g.task, g.sample_id): g.text for g in result.generations if g.ok}
        metrics[(device, dtype)] = {(row.task, row.metric): row.value for row in result.metrics if row.subset == "all"}
        print(f"{device}:{dtype}: {len(answers[(device, dtype)])} answers in {time.perf_counter() - start:.1f} s",
              flush=True)

    reference = pairs[0]
    print(f"\nanswers identical to {reference[0]}:{reference[1]} (whole answer / first 32 characters)")
    for pair in pairs[1:]:
        for task in tasks:
            keys = [key for key in answers[reference] if key[0] == task and key in answers[pair]]
            same = sum(answers[pair][key] == answers[reference][key] for key in keys)
            prefix = sum(answers[pair][key][:32] == answers[reference][key][:32] for key in keys)
            print(f"  {pair[0]}:{pair[1]:<9} {task:<14} {same}/{len(keys)} whole, {prefix}/{len(keys)} first 32 chars")
    keys = sorted({key for values in metrics.values() for key in values})
    print("\n" + f"{'task:metric':<36}" + "".join(f"{d}:{t}".rjust(18) for d, t in pairs))
    for key in keys:
        cells = "".join((f"{metrics[p][key]:.1f}" if key in metrics[p] else "-").rjust(18) for p in pairs)
        print(f"{key[0] + ':' + key[1]:<36}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
