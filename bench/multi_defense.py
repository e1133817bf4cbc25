"""Several defenses in one command against one command per defense: wall time from a cold cache.

    .venv/bin/python bench/multi_defense.py [--model smol-llava] [--defenses none,self-reminder,figstep-prompt]
                                            [--tasks xstest] [--limit 10]

Each variant runs in fresh results folders (so nothing is answered from the generation cache) as
subprocesses of the real CLI, so process start, imports and model loading are counted as a user pays
them. Prints both wall times and the saving; the generations of the two variants are compared too
(they must be identical: one command only shares the loaded model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def harness_eval(results: Path, model: str, defenses: str, tasks: str, limit: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "eval", "--model", model, "--defense", defenses, "--tasks", tasks,
                    "--limit", limit, "--results-dir", str(results), "--reports-dir", str(results / "reports"),
                    "--no-progress"], check=True, capture_output=True)
    return time.perf_counter() - start


def generations(results: Path) -> dict[tuple[str, str, str], str]:
    texts = {}
    for path in results.rglob("generations.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            texts[(record["defense"], record["task"], record["sample_id"])] = record["text"]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--defenses", default="none,self-reminder,figstep-prompt")
    parser.add_argument("--tasks", default="xstest")
    parser.add_argument("--limit", default="10")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        separate_dir, together_dir = Path(tmp) / "separate", Path(tmp) / "together"
        separate = sum(harness_eval(separate_dir, args.model, defense, args.tasks, args.limit)
                       for defense in args.defenses.split(","))
        together = harness_eval(together_dir, args.model, args.defenses, args.tasks, args.limit)
        same = generations(separate_dir) == generations(together_dir)
    count = len(args.defenses.split(","))
    print(f"{args.model}, {count} defenses ({args.defenses}), tasks {args.tasks}, limit {args.limit}")
    print(f"  {count} commands: {separate:6.1f} s")
    print(f"  1 command:  {together:6.1f} s  ({100 * (separate - together) / separate:.0f} % less)")
    print(f"  generations identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
