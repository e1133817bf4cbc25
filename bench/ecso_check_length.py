"""ECSO's self-check, full generation (the official rule) against a cut to N tokens: which answers it flags.

    .venv/bin/python bench/ecso_check_length.py --model smol-llava --tasks figstep-tiny,easyvqa --limit 50 --cut 4

Runs ECSO twice through the runner (its own results folder under /tmp unless HARNESS_RESULTS_DIR is set):
``check_max_new_tokens`` None (the default: the check is capped like every pass, at the task's limit) and
``check_max_new_tokens=N``. Prints, per task, how many image requests each flags and the requests whose
verdict differs, with both self-check texts. Nothing is asserted; timings are the runs' wall times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--tasks", default="figstep-tiny,easyvqa")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--cut", type=int, default=4, help="the short check's token cap (the old default: 4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--show", type=int, default=5, help="differing examples to print per task")
    args = parser.parse_args(argv)
    os.environ.setdefault("HARNESS_RESULTS_DIR", tempfile.mkdtemp(prefix="ecso-check-"))
    os.environ.setdefault("HARNESS_REPORTS_DIR", os.environ["HARNESS_RESULTS_DIR"] + "/reports")

    from harness.pipeline.evaluate import EvalConfig, run_eval

    tasks = [task for task in args.tasks.split(",") if task]
    runs = {}
    for label, cap in (("full", None), (f"cut to {args.cut}", args.cut)):
        started = time.perf_counter()
        result = run_eval(EvalConfig(model=args.model, tasks=tasks, defense="ecso", defense_params={"check_max_new_tokens": cap},
                                     limit=args.limit, device=args.device, progress=False, write_report=False))
        runs[label] = (result, time.perf_counter() - started)
        print(f"{label}: {time.perf_counter() - started:.0f} s wall, model loaded: {result.info.model_loaded}")
    (full, _), (cut, _) = runs.values()
    for task in tasks:
        by_id = {g.sample_id: g for g in cut.generations[task]}
        checked = [g for g in full.generations[task] if g.meta.get("self_check") is not None]
        differ = [(g, by_id[g.sample_id]) for g in checked if g.meta["flagged"] != by_id[g.sample_id].meta["flagged"]]
        flagged_full = sum(g.meta["flagged"] for g in checked)
        flagged_cut = sum(by_id[g.sample_id].meta["flagged"] for g in checked)
        print(f"\n{task}: {len(checked)} image requests; flagged: full {flagged_full}, cut {flagged_cut}; "
              f"verdicts differ on {len(differ)}")
        for full_g, cut_g in differ[: args.show]:
            print(f"  {full_g.sample_id}: full={full_g.meta['self_check']!r} -> {full_g.meta['flagged']}; "
                  f"cut={cut_g.meta['self_check']!r} -> {cut_g.meta['flagged']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
