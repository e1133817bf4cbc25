"""Kill a multi-process evaluation at random moments, resume it, and count what was lost or done twice
(issue 29). Hand-run; nothing here is a test.

    .venv/bin/python bench/kill_resume.py [--kills 5] [--processes 2] [--seed 0] [--cache-per-rank]
        [--model tiny-random-llava-ov] [--tasks figstep-tiny,xstest,easyvqa] [--limit 30] [--max-new-tokens 12]

Each attempt launches ``torchrun --nproc-per-node N -m harness eval ...`` into one results folder,
waits until the attempt has committed a random number of new generations (between 1 and the work
left divided by the kills left plus one, so every kill lands mid-generation), then a random 0-0.5 s
more, and kills: alternately one random rank (SIGKILL; the launcher must then stop the others
and fail with a message) and the whole launch (SIGKILL to every rank and to the launcher). After each kill the
cache's rows are read (``{key: created_at}``, with ``--cache-per-rank`` the rank files too):

- lost: a row present after an earlier kill that is gone now;
- duplicated: a row present after an earlier kill whose ``created_at`` changed (generated again), plus
  any sample that appears twice in the finished run's generations.

Last, the same command runs to the end; its run must hold every planned sample exactly once. For a kill
of one rank, the launcher's exit code, how long it took to exit after the kill, and the error line it
printed are shown. Each attempt's log is kept in the folder as ``attempt-N.stderr``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-per-rank", action="store_true")
    parser.add_argument("--model", default="tiny-random-llava-ov")
    parser.add_argument("--tasks", default="figstep-tiny,xstest,easyvqa")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="results folder to keep (default: temporary)")
    return parser.parse_args(argv)


def cache_rows(results: Path) -> dict[str, str]:
    """key -> created_at over the cache and any rank files."""
    rows: dict[str, str] = {}
    files = [results / "cache" / "generations.sqlite", *sorted((results / "cache" / "shards").glob("*.sqlite"))]
    for path in files:
        if not path.is_file():
            continue
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            for key, created_at in db.execute("SELECT key, created_at FROM generations"):
                rows.setdefault(key, created_at)
        except sqlite3.OperationalError:  # a rank is creating the file right now: read it next time
            pass
        finally:
            db.close()
    return rows


def rank_processes(launcher: subprocess.Popen) -> list[int]:
    import psutil

    try:
        children = psutil.Process(launcher.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if "harness" in " ".join(child.cmdline())]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    results = folder / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HARNESS_DIST_TIMEOUT_S": "60"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes),
               "-m", "harness", "eval", "--model", args.model, "--tasks", args.tasks, "--limit", str(args.limit),
               "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size), "--device", "cpu",
               "--no-progress", "--results-dir", str(results), "--reports-dir", str(folder / "reports")]
    if args.cache_per_rank:
        command.append("--cache-per-rank")
    print(f"folder: {folder}\ncommand: {' '.join(command[1:])}\n")
    print("| attempt | killed | rows before | rows after | lost | duplicated | launcher exit | exit after kill s | message |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    expected = args.limit * len(args.tasks.split(","))  # an upper bound on the unique keys (a task may repeat inputs)
    seen: dict[str, str] = {}
    lost = duplicated = 0
    for attempt in range(1, args.kills + 1):
        before = cache_rows(results)
        launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        left = max(1, expected - len(before))
        target = len(before) + rng.randint(1, max(1, left // (args.kills - attempt + 2)))
        while launcher.poll() is None and len(cache_rows(results)) < target:
            time.sleep(0.1)
        time.sleep(rng.uniform(0, 0.5))
        whole = attempt % 2 == 0
        ranks = rank_processes(launcher)
        if launcher.poll() is not None:
            what = "nothing (the run had finished)"
        elif whole or not ranks:
            what = "all (every rank, then the launcher)"
            for pid in ranks:  # the launcher starts its workers in process groups of their own
                os.kill(pid, signal.SIGKILL)
            os.killpg(launcher.pid, signal.SIGKILL)
        else:
            victim = rng.randrange(len(ranks))
            what = f"rank process {victim + 1} of {len(ranks)}"
            os.kill(ranks[victim], signal.SIGKILL)
        killed_at = time.perf_counter()
        try:
            _, stderr = launcher.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            _, stderr = launcher.communicate()
            stderr += "\nHUNG: the launcher had not exited 300 s after the kill"
        exit_s = time.perf_counter() - killed_at
        (folder / f"attempt-{attempt}.stderr").write_text(stderr)  # the launcher's and every rank's log
        failed = re.search(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)", stderr)
        message = (f"launcher: local rank {failed.group(2)} failed, exit code {failed.group(1)}; others stopped" if failed
                   else next((line.strip() for line in stderr.splitlines() if "error:" in line or "HUNG" in line), ""))
        after = cache_rows(results)
        gone = [key for key in seen if key not in after]
        again = [key for key in seen if key in after and after[key] != seen[key]]
        lost, duplicated = lost + len(gone), duplicated + len(again)
        seen.update({key: value for key, value in after.items() if key not in seen})
        print(f"| {attempt} | {what} | {len(before)} | {len(after)} | {len(gone)} | {len(again)} | {launcher.returncode} "
              f"| {exit_s:.1f} | {message[:90]} |", flush=True)

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"\nthe resumed run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return 1
    after = cache_rows(results)
    lost += sum(1 for key in seen if key not in after)
    duplicated += sum(1 for key in seen if key in after and after[key] != seen[key])
    (run_dir,) = sorted((results / "runs").iterdir())[-1:]
    info = json.loads((run_dir / "run.json").read_text())
    ids = [(g["task"], g["sample_id"]) for g in map(json.loads, (run_dir / "generations.jsonl").read_text().splitlines())]
    twice = len(ids) - len(set(ids))
    duplicated += twice
    print(f"\nresumed run: counts {info['counts']}, shards {[(s['rank'], s['requests']) for s in info['parallel'].get('shards', [])]}")
    print(f"cache rows {len(after)}, samples in the run {len(ids)} ({twice} twice), finished before the last run {len(seen)}")
    print(f"lost: {lost}   duplicated: {duplicated}")
    return 0 if lost == duplicated == 0 and info["counts"]["samples"] == len(set(ids)) else 1


if __name__ == "__main__":
    sys.exit(main())
