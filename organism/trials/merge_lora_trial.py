"""Trial helper: a smol-llava folder = the built v7 folder with a LoRA (organism.align's file) merged into
its language model, for `harness eval --model DIR`. ``python -m organism.trials.merge_lora_trial LORA_DIR OUT``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from harness.models.smol_llava import default_dir


def merge_into(language_model: torch.nn.Module, lora: dict[str, torch.Tensor], scale: float) -> int:
    modules = dict(language_model.named_modules())
    merged = 0
    with torch.no_grad():
        for key in lora:
            if not key.endswith(".lora_A"):
                continue
            base = key.removesuffix(".lora_A")
            base = base.removeprefix("model.language_model.") if base.startswith("model.language_model.") else base.removeprefix("model.")
            weight = modules[base].weight
            delta = lora[key.replace(".lora_A", ".lora_B")].float() @ lora[key].float()
            weight.add_((scale * delta).to(weight.dtype))
            merged += 1
    return merged


def main() -> int:
    import json
    lora_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((lora_dir / "smol_llava_lora.json").read_text())
    scale = manifest["config"]["alpha"] / manifest["config"]["rank"]
    source = default_dir()
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    count = merge_into(model.model.language_model, load_file(str(lora_dir / "smol_llava_lora.safetensors")), scale)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("model.safetensors"))
    model.save_pretrained(out)
    print(f"merged {count} matrices into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
