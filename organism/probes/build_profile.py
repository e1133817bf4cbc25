"""Benchmark: where smol-llava's build time goes, and how close to this CPU's peak it already runs (not a test).

    .venv/bin/python -m organism.probes.build_profile [--steps 3] [--threads 2]   # from the repository root

``make organism`` is compute-bound; this script measures how much. It runs a few steps of the real
trainer functions (``train_blanks``, ``train_tower``, ``evaluate_easyvqa``, ``evaluate_reading``,
default ``TrainConfig``) three times: to warm up, to time them, and under
``torch.utils.flop_counter.FlopCounterMode`` to count their floating-point operations (attention
included: the CPU flash-attention kernels are added to torch's table). It also times a float32 matrix
product shaped like the language model's MLP (the peak: what this CPU's BLAS gives on 2 threads),
on 1 thread and on ``--threads``.

It prints, per stage: seconds and GFLOP per step, the rate reached as a share of that peak, and the
full build's time projected from the default config, both at the measured rate and at 100 % of the
peak. The counter sees matrix products, convolutions and attention, not element-wise work
(norms, activations, softmax, the optimiser), so the counted GFLOP are a lower bound and so is the
time at peak.

About 4.5 minutes on 2 cores (loading SmolLM2 takes ~25 s of it).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time


def gemm_peak(threads: int, seconds: float = 4.0) -> float:
    """GFLOP/s of a float32 [3000 x 576] @ [576 x 1536] product (SmolLM2's MLP at a stage-1 batch's width)."""
    import torch

    torch.set_num_threads(threads)
    left, right = torch.randn(3000, 576), torch.randn(576, 1536)
    left @ right  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        left @ right
        done += 1
    return done * 2 * 3000 * 576 * 1536 / (time.perf_counter() - started) / 1e9


def counted(work) -> tuple[float, float]:
    """(seconds, GFLOP) of ``work()``: run once to warm up, timed, then counted under FlopCounterMode (same seeded data)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    work()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    aten = torch.ops.aten
    # torch's table lacks the CPU flash-attention kernels that scaled_dot_product_attention runs here.
    # FlopCounterMode hands these the arguments' shapes.
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: lambda g, q, k, v, *_, **__: sdpa_backward_flop_count(g, q, k, v),
    }
    counter = FlopCounterMode(display=False, custom_mapping=cpu_attention)
    with counter:
        work()
    return seconds, counter.get_total_flops() / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps of each stage to time and count")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from organism.train import (
        ExampleSource,
        TrainConfig,
        evaluate_easyvqa,
        evaluate_reading,
        train_blanks,
        train_tower,
        training_dtype,
        untrained,
    )

    single = gemm_peak(1)
    peak = gemm_peak(args.threads)
    print(f"float32 matrix-product peak: {single:.0f} GFLOP/s on 1 thread, {peak:.0f} on {args.threads} ({peak / single:.2f}x)")

    config = TrainConfig()
    print(f"compute dtype: {training_dtype(config.compute_dtype)}")
    parts, _ = untrained(config)
    quiet = lambda *_: None  # noqa: E731

    def source() -> ExampleSource:  # a fresh seeded stream: the timed and the counted run see the same data
        return ExampleSource(parts, config, random.Random(config.seed))

    blanks_box = {}

    def stage1() -> None:
        blanks_box["blanks"], _ = train_blanks(parts, source(), dataclasses.replace(config, blank_steps=args.steps), quiet)

    def stage2() -> None:
        train_tower(parts, source(), blanks_box["blanks"], dataclasses.replace(config, tower_steps=args.steps), quiet)

    count = 8  # one evaluation batch
    words = source().words

    def easyvqa() -> None:  # with the image and with a blank one, as the build does
        evaluate_easyvqa(parts, count, config.seed)

    def reading() -> None:  # plain and with FigStep's list, as the build does
        evaluate_reading(parts, words, count, config.seed)
        evaluate_reading(parts, words, count, config.seed, with_list=True)

    rows = [
        ("stage 1 (blank cells through SmolLM2)", stage1, args.steps, config.blank_steps, "step"),
        ("stage 2 (vision tower)", stage2, args.steps, config.tower_steps, "step"),
        ("evaluation: easy-vqa, image + blank", easyvqa, count, config.eval_easyvqa, "question"),
        ("evaluation: reading, plain + list", reading, count, config.eval_phrases, "phrase"),
    ]
    total_measured = total_at_peak = 0.0
    print(f"\n{'stage':40} {'s/unit':>8} {'GFLOP/unit':>11} {'% of peak':>10} {'units':>6} {'build s':>8} {'at peak s':>10}")
    for name, work, done, units, unit in rows:
        seconds, gflop = counted(work)
        per_second, per_gflop = seconds / done, gflop / done
        measured, at_peak = per_second * units, per_gflop * units / peak
        total_measured, total_at_peak = total_measured + measured, total_at_peak + at_peak
        print(f"{name:40} {per_second:8.2f} {per_gflop:11.1f} {100 * per_gflop / per_second / peak:9.0f}% {units:6d} {measured:8.0f} {at_peak:10.0f}  (per {unit})")
    print(f"{'trainer, projected (load excluded)':40} {'':8} {'':11} {'':10} {'':6} {total_measured:8.0f} {total_at_peak:10.0f}")
    print(f"\nat this CPU's measured peak the default recipe needs at least {total_at_peak / 60:.1f} min of counted work; the build budget is 20 min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
