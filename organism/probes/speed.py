"""Benchmark: seconds per easy-vqa answer from smol-llava through the harness adapter (not a test).

    .venv/bin/python -m organism.probes.speed [--questions 20] [--threads 2]   # from the repository root

Builds smol-llava if needed, then answers easy-vqa test questions one at a time (batch 1, greedy, at most
8 new tokens: the task's settings) and prints the median and mean wall time per answer, image loading
and preprocessing included. Print `uptime` beside it: on a shared machine the figure is pessimistic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from harness import registries
    from harness.models.hf import load_pretrained
    from harness.models.smol_llava import build_smol_llava
    from harness.core.records import GenerationSettings, Request
    from harness.tasks.easyvqa import load_easyvqa

    spec = registries.models().get("smol-llava")
    adapter = load_pretrained(spec, "float32", "cpu", source=build_smol_llava())
    samples = load_easyvqa("easyvqa", "test")[: args.questions + 1]
    settings = GenerationSettings(max_new_tokens=8)
    requests = [Request("easyvqa", s.id, s.prompt, s.image, None, None, settings) for s in samples]
    adapter.generate(requests[:1])  # warm-up: first-call allocations are not per-answer cost
    seconds, tokens, new_tokens = [], [], []
    for request in requests[1:]:
        started = time.perf_counter()
        output = adapter.generate([request])[0]
        seconds.append(time.perf_counter() - started)
        tokens.append(output.input_tokens)
        new_tokens.append(output.output_tokens)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"smol-llava easy-vqa, {len(seconds)} answers, batch 1, {args.threads} threads, "
          f"{statistics.mean(tokens):.0f} prompt tokens, {statistics.mean(new_tokens):.1f} new on average: median {statistics.median(seconds):.3f} s, "
          f"mean {statistics.mean(seconds):.3f} s per answer (1-min load average {load:.2f} on "
          f"{os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
