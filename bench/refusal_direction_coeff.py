"""Refusal rate of ``refusal-direction`` as its ActAdd coefficient grows, on the HELD-OUT calibration
prompts (never the test sets), so a strength can be chosen without touching test data (issue 4).

    .venv/bin/python bench/refusal_direction_coeff.py [--model smol-llava] [--coeffs 0,1,2,4,8]
        [--max-new-tokens 32]

Needs the stored calibration (``harness calibrate --defense refusal-direction --model M``): the
registered defense runs with it as it is, only ``coeff`` changes. For each coefficient, the validation split's harmful and
harmless prompts (every fifth pair of the built-in data) are answered greedily with the vector added at
the chosen layer, and scored by the ``keyword-gcg`` judge. A direction that mediates refusal shows
harmful refusals rising before harmless ones; on smol-llava neither rises (docs/defenses-on-smol-llava.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smol-llava")
    parser.add_argument("--coeffs", default="0,1,2,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="validation pairs to use (default: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from harness import registries
    from harness.defense_api.calibration import load_data
    from harness.judges.keyword import make_gcg_judge
    from harness.models.catalog import resolve_model

    spec = resolve_model(registries.models(), args.model)
    adapter = spec.builder.load()(spec, dtype="float32", device="cpu")
    fingerprint = spec.fingerprinter.load()(spec, "float32")
    defense_class = registries.defenses().get("refusal-direction")

    def defense(coeff: float):
        """The registered defense itself, with its stored calibration, at this strength."""
        instance = defense_class(coeff=coeff)
        instance.prepare(spec.name, fingerprint)
        return instance

    artifact = defense(1.0).require_artifact()
    direction, layer = artifact.tensors["direction"].float(), int(artifact.fit["layer"])
    validation = load_data("builtin").split("val")
    judge = make_gcg_judge()
    sides = {side: getattr(validation, side)[: args.limit] for side in ("harmful", "harmless")}
    print(f"model {spec.name}; layer {layer}, |r| = {direction.norm():.2f}, fallback {artifact.fit.get('fallback')}; "
          f"{len(sides['harmful'])} + {len(sides['harmless'])} held-out calibration prompts; "
          f"{args.max_new_tokens} greedy tokens; judge keyword-gcg")
    print(f"{'coeff':>6} {'refusal harmful':>16} {'refusal harmless':>17} {'seconds':>8}  first harmful answer")
    for coeff in (float(value) for value in args.coeffs.split(",") if value):
        start = time.perf_counter()
        steered = defense(coeff)
        rates, example = {}, ""
        for side, prompts in sides.items():
            outputs = steered.generate(adapter, [prompt.request(max_new_tokens=args.max_new_tokens) for prompt in prompts])
            rates[side] = sum(judge.match(output.text) is not None for output in outputs) / len(outputs)
            if side == "harmful":
                example = outputs[0].text[:70].replace("\n", " ")
        print(f"{coeff:6.1f} {rates['harmful']:16.0%} {rates['harmless']:17.0%} "
              f"{time.perf_counter() - start:8.1f}  {example!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
