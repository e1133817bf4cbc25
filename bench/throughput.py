"""Generation throughput: batch sizes, harness overhead against bare Hugging Face generate, and 1 vs N
processes (issue 29). Hand-run; nothing here is a test.

    .venv/bin/python bench/throughput.py [--model smol-llava] [--device cpu] [--limit 16] [--max-new-tokens 32]
        [--tasks figstep-tiny,xstest,easyvqa] [--batch-sizes 1,4,8,16] [--rounds 2] [--processes 1,2] [--skip batch,overhead,scaling]

Samples: the first ``--limit`` of each offline task (figstep-tiny, xstest, easyvqa) in their seeded
order, greedy, ``--max-new-tokens`` tokens at most. Three measurements:

1. batch: the generate stage (:class:`CachedGenerator`: cache look-up, batching, defense ``none``,
   commit) into a fresh cache at each batch size; samples/s, and whether every answer equals batch 1's.
2. overhead: on the same loaded model and the same batches, the generate stage against a bare loop of
   ``processor`` + ``model.generate`` + ``decode``; rounds alternate which runs first, and the ratio
   of summed walls is printed (target: within 3 %).
3. scaling: ``harness eval`` end to end (start-up, model load, generation, judging, report) with one
   process and with ``torchrun --nproc-per-node N`` (gloo on CPU), fresh results folder each; wall and
   samples/s, and whether the runs' answers are identical sample for sample.

The machine's 1-minute load average is printed before and after: other jobs sharing the CPU move
every figure, so compare figures taken in one invocation only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TASKS = ["figstep-tiny", "xstest", "easyvqa"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--tasks", default=",".join(TASKS), help="batches never mix tasks: give each task >= the largest batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--limit", type=int, default=16, help="samples per task")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--overhead-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="overhead rounds (each runs both, order alternating)")
    parser.add_argument("--processes", default="1,2", help="process counts for the scaling runs")
    parser.add_argument("--skip", default="", help="comma-separated: batch, overhead, scaling")
    return parser.parse_args(argv)


def load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def planned_requests(args: argparse.Namespace, batch_size: int, results: Path):
    from harness.pipeline.evaluate import EvalConfig, prepare_eval

    config = EvalConfig(model=args.model, tasks=args.tasks.split(","), limit=args.limit, max_new_tokens=args.max_new_tokens,
                        batch_size=batch_size, dtype=args.dtype, device=args.device, progress=False,
                        write_report=False, results_dir=results)
    return prepare_eval(config, with_judges=False)


def generate_stage(prepared, bringup, cache_path: Path) -> tuple[float, dict[str, str]]:
    """Wall of the harness's generate stage into a fresh cache, and the answers by (task, id)."""
    from harness.core.cache import GenerationCache
    from harness.pipeline.generate import CachedGenerator

    cache_path.unlink(missing_ok=True)
    with GenerationCache(cache_path) as cache:
        started = time.perf_counter()
        result = CachedGenerator(cache, bringup, progress=False).run(prepared.plan)
        wall = time.perf_counter() - started
    answers = {(g.task, g.sample_id): g.text for per_task in result.generations.values() for g in per_task.values()}
    return wall, answers


def bare_generate(adapter, prepared) -> tuple[float, dict[str, str]]:
    """The same batches through the processor and ``model.generate`` directly (no adapter, defense, cache)."""
    import torch
    from PIL import Image

    from harness.pipeline.generate import batches

    processor, model = adapter.processor, adapter.model
    tokenizer = processor.tokenizer
    answers = {}
    started = time.perf_counter()
    for batch in batches(prepared.plan.all_planned()):
        texts, images = [], []
        for item in batch:
            content = ([{"type": "image"}] if item.request.image else []) + [{"type": "text", "text": item.request.prompt}]
            texts.append(processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False))
            if item.request.image:
                images.append(Image.open(item.request.image).convert("RGB"))
        inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = {k: v.to(adapter.device, dtype=adapter.dtype if v.is_floating_point() else None) for k, v in inputs.items()
                  if isinstance(v, torch.Tensor)}
        with torch.inference_mode():
            sequences = model.generate(**inputs, max_new_tokens=item.request.settings.max_new_tokens, do_sample=False,
                                       num_beams=1, pad_token_id=tokenizer.pad_token_id)
        if adapter.device.type == "cuda":
            torch.cuda.synchronize(adapter.device)
        for item, row in zip(batch, sequences[:, inputs["input_ids"].shape[1]:]):
            answers[(item.request.task, item.sample.id)] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return time.perf_counter() - started, answers


def measure_batches(args: argparse.Namespace, work: Path) -> None:
    from harness.pipeline.bringup import BringUp

    bringup = BringUp.resolve(args.model, "none", dtype=args.dtype, device=args.device)
    bringup.load()
    reference = None
    print(f"\n## batch sizes ({args.model}, {args.device}, {args.dtype}, {args.max_new_tokens} new tokens at most)")
    print("| batch | samples | wall s | samples/s | vs batch 1 | answers = batch 1 |")
    print("|---:|---:|---:|---:|---:|---|")
    base_rate = None
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        prepared = planned_requests(args, size, work / f"batch{size}")
        wall, answers = generate_stage(prepared, bringup, work / f"batch{size}.sqlite")
        rate = len(answers) / wall
        base_rate = base_rate or rate
        reference = reference or answers
        same = sum(answers[key] == reference[key] for key in reference)
        print(f"| {size} | {len(answers)} | {wall:.1f} | {rate:.2f} | {rate / base_rate:.2f}x | {same} of {len(reference)} |", flush=True)


def measure_overhead(args: argparse.Namespace, work: Path) -> None:
    from harness.pipeline.bringup import BringUp

    bringup = BringUp.resolve(args.model, "none", dtype=args.dtype, device=args.device)
    adapter = bringup.load()
    prepared = planned_requests(args, args.overhead_batch_size, work / "overhead")
    generate_stage(prepared, bringup, work / "warm.sqlite")  # warm-up: first calls allocate
    walls = {"harness": [], "bare": []}
    same = None
    for round_index in range(args.rounds):
        order = ("harness", "bare") if round_index % 2 == 0 else ("bare", "harness")
        for name in order:
            if name == "harness":
                wall, harness_answers = generate_stage(prepared, bringup, work / "overhead.sqlite")
            else:
                wall, bare_answers = bare_generate(adapter, prepared)
            walls[name].append(wall)
        same = sum(harness_answers[key] == bare_answers.get(key) for key in harness_answers)
    harness_s, bare_s = sum(walls["harness"]), sum(walls["bare"])
    print(f"\n## harness generate stage vs bare HF generate (batch {args.overhead_batch_size}, {args.rounds} rounds)")
    print(f"harness {['%.1f' % w for w in walls['harness']]} s, bare {['%.1f' % w for w in walls['bare']]} s: "
          f"harness / bare = {harness_s / bare_s:.3f}x wall; answers equal: {same} of {len(harness_answers)}")


def measure_scaling(args: argparse.Namespace, work: Path) -> None:
    print(f"\n## processes (harness eval end to end, {args.model}, {args.device})")
    print("| processes | samples | wall s | samples/s | vs 1 | answers = 1 process |")
    print("|---:|---:|---:|---:|---:|---|")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    reference, base_rate = None, None
    for count in [int(n) for n in args.processes.split(",")]:
        results = work / f"procs{count}"
        launch = [sys.executable, "-m", "harness"] if count == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(count), "-m", "harness"]
        command = [*launch, "eval", "--model", args.model, "--tasks", args.tasks, "--limit", str(args.limit),
                   "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.overhead_batch_size),
                   "--device", args.device, "--dtype", args.dtype, "--no-progress", "--results-dir", str(results),
                   "--reports-dir", str(work / f"reports{count}")]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(f"| {count} | failed: {done.stderr[-400:]} |")
            continue
        (run_dir,) = (results / "runs").iterdir()
        answers = {(g["task"], g["sample_id"]): g["text"] for g in map(json.loads, (run_dir / "generations.jsonl").read_text().splitlines())}
        rate = len(answers) / wall
        base_rate, reference = base_rate or rate, reference or answers
        same = sum(answers.get(key) == text for key, text in reference.items())
        print(f"| {count} | {len(answers)} | {wall:.1f} | {rate:.2f} | {rate / base_rate:.2f}x | {same} of {len(reference)} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print(f"cores: {os.cpu_count()}, torch threads: {__import__('torch').get_num_threads()}, load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="throughput-") as folder:
        work = Path(folder)
        os.environ["HARNESS_RESULTS_DIR"] = str(work / "results")
        if "batch" not in skip:
            measure_batches(args, work)
        if "overhead" not in skip:
            measure_overhead(args, work)
        if "scaling" not in skip:
            measure_scaling(args, work)
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
