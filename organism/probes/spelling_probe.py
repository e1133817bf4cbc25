"""Issue-3 probe: can frozen SmolLM2 read text spelled out one token per character? (Not a test.)

    .venv/bin/python -m organism.probes.spelling_probe [--steps 60] [--batch 8] [--eval 30]   # from the repository root

This is what chose smol-llava's character layout (``organism.train.cell_tokens``). The exact
targets a perfect tower would emit are injected, with no images: each character's own token embedding
at its cell of the trainer's grid, and a learnt blank vector in every other cell. Only the blank
vectors are trained, by the trainer's own stage 1 (``train_blanks``) on reading examples alone with
no noise, so that SmolLM2 spells the text back. Then held-out phrases are decoded greedily (float32)
after "Read the text in the image.". This isolates what the language model can do with a perfect
transcription.
Seeded. Measured on the 2-core CPU (2026-11-23, v4's 16 x 16 grid): 60 steps x 8, 519 s in all, loss 3.58 -> 0.10, 26 of
30 held-out phrases exact, 98.2 % of characters. (A first, throwaway version of this probe, with
its own loop, one fixed instruction and bfloat16 decoding, gave 28 of 30 and 98.9 %.)
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval", type=int, default=30, help="held-out phrases to decode")
    args = parser.parse_args()

    import torch

    from harness.models import smol_llava
    from organism import train as trainer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    started = time.perf_counter()
    model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=False)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parts = trainer.Parts(model, processor.tokenizer, processor)
    # The trainer's own stage 1, on reading alone, with exact cells: no noise, no misread glyphs.
    config = trainer.TrainConfig(blank_steps=args.steps, blank_batch=args.batch, easyvqa_share=0.0, token_noise=0.0, misread=0.0)
    source = trainer.ExampleSource(parts, config, random.Random(config.seed))
    blanks, losses = trainer.train_blanks(parts, source, config)

    embeddings = parts.embeddings.detach()
    before, after = parts.prompt_ids(trainer.EVAL_READ_INSTRUCTION)
    exact = characters = 0
    phrases = trainer.held_out_phrases(args.eval, 0, source.words)
    for number, phrase in enumerate(phrases):
        lines = trainer.text_lines(phrase, with_list=False)
        reference = trainer.transcript(phrase, with_list=False)
        visual = trainer.visual_targets(blanks, embeddings, trainer.cell_tokens(parts.tokenizer, lines))
        inputs = torch.cat([embeddings[torch.tensor(before)], visual, embeddings[torch.tensor(after)]])[None]
        with torch.no_grad():
            output = model.generate(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long),
                                    max_new_tokens=len(reference) + 4, do_sample=False)
        text = parts.tokenizer.decode(output[0], skip_special_tokens=True)
        exact += trainer.normalise(text) == trainer.normalise(reference)
        characters += trainer.character_accuracy(text, reference)
        if number < 5:
            print(f"  {reference!r} -> {text!r}")
    print(f"stage-1 loss {losses[0]} -> {losses[-1]}; held-out exact {exact}/{len(phrases)}, "
          f"characters {100 * characters / len(phrases):.1f} %, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
