"""Where smol-llava's reading errors come from: the tower, or the language model reading its cells?

On held-out FigStep-layout phrases (the trainer's own evaluation set), with the built model:

1. the tower: share of character cells whose highest class score is the right one, share selected
   exactly (right class at relu6's ceiling, every other class at or below 0), and phrases whose
   every character cell is right;
2. reading as shipped (the trainer's ``evaluate_reading``; it reproduces the build's printout);
3. reading with an oracle tower: a hook replaces the projector's output by the exact table rows of
   the right classes, so that only the language side can err.

Step 1 also breaks the tower's character errors down by grid column (character k lies in column
``trainer.char_column(k)``; in v5's layout a character started 6 px into its column, so its right part
lay in the next one) and by whether the character ends its line. ``--tower-only`` stops there: seconds instead of
minutes, so it can afford thousands of phrases.

``--glyphs dgqbp`` adds a probe without words: each glyph at every position of a 14-letter line of
random lower-case letters (4 seeded lines per column), so what the tower reads from the glyph alone
shows apart from what it has memorised of words.

From the repository root:

    python -m organism.probes.reading_diagnosis            # 50 phrases, ~3 min on 2 cores
    python -m organism.probes.reading_diagnosis --phrases 200 --dump /tmp/reading.json  # 8-12 min
    python -m organism.probes.reading_diagnosis --phrases 2000 --tower-only --glyphs dgqbp
    python -m organism.probes.reading_diagnosis --weights /tmp/trial.safetensors  # a trial's vision side
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phrases", type=int, default=50, help="held-out phrases (the build evaluates 50)")
    parser.add_argument("--with-list", action="store_true", help="draw FigStep's numbered list under each phrase")
    parser.add_argument("--dump", type=Path, help="write every phrase's reference, tower verdict and both answers here (JSON)")
    parser.add_argument("--tower-only", action="store_true", help="stop after the tower's figures (no generation)")
    parser.add_argument("--glyphs", default="", help="glyphs to probe alone, among random letters (e.g. dgqbp)")
    parser.add_argument("--weights", type=Path, help="vision weights to diagnose instead of the committed ones (a trainer's --out file)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from harness.models import smol_llava
    from organism import train as trainer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder = smol_llava.build_smol_llava()
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    if args.weights:  # a trial's tower + projector over the same language model
        smol_llava.copy_vision_state(model, args.weights)
    processor = AutoProcessor.from_pretrained(folder)
    parts = trainer.Parts(model, processor.tokenizer, processor)
    config = trainer.TrainConfig()
    words = trainer.word_list(parts.tokenizer, config.words)
    tokens = trainer.class_tokens(parts.tokenizer, trainer.easyvqa_captions(*trainer.easyvqa_split("train")[:3]))
    index = {token: i for i, token in enumerate(tokens)}
    classes_total = len(tokens) + trainer.GRID * trainer.GRID
    table = model.model.multi_modal_projector.linear_2.weight[:, :classes_total].T.detach() * trainer.SELECT_LEVEL

    phrases = trainer.held_out_phrases(args.phrases, config.seed, words)
    lines = [trainer.text_lines(phrase, args.with_list) for phrase in phrases]
    classes = trainer.cell_classes([trainer.cell_tokens(parts.tokenizer, page) for page in lines], index)
    images = [trainer.render_lines(page) for page in lines]

    started = time.perf_counter()
    with torch.no_grad():
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        scores = torch.cat([trainer.tower_scores(model, pixels[i : i + 16], classes_total) for i in range(0, len(pixels), 16)])
    right = scores.argmax(-1) == classes
    others = scores.scatter(-1, classes[..., None], float("-inf")).max(-1).values
    exact = (scores.gather(-1, classes[..., None])[..., 0] >= trainer.SELECT_LEVEL) & (others <= 0)
    characters = classes < len(tokens)
    tower_whole = [bool(right[b][characters[b]].all()) for b in range(len(phrases))]
    whole = np.mean(tower_whole)
    print(
        f"1. tower, {int(characters.sum())} character cells of {len(phrases)} held-out phrases: "
        f"right {right[characters].float().mean():.2%}, selected exactly {exact[characters].float().mean():.2%}; "
        f"blank cells right {right[~characters].float().mean():.2%}; phrases with every character right {whole:.0%} "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    column = torch.arange(classes.shape[1]) % trainer.GRID
    line_end = torch.zeros_like(characters)  # each line's last glyph (the joining space is in column 0 of the next row)
    for b, page in enumerate(lines):
        for number, line in enumerate(page):
            line_end[b, trainer.line_row(number) * trainer.GRID + trainer.char_column(len(line.rstrip()) - 1)] = True
    names = [parts.tokenizer.convert_ids_to_tokens(token) for token in tokens]
    name = lambda c: names[c] if c < len(names) else "blank"  # noqa: E731
    misread = sorted({int(c) for c in classes[characters & ~right]})
    if misread:  # where those glyphs go wrong, out of all their cells
        among = characters & torch.isin(classes, torch.tensor(misread))
        wrong = among & ~right
        print(f"   cells of the glyphs ever misread ({', '.join(name(c) for c in misread)}), wrong / all, by grid column: " + ", ".join(
            f"{k}: {int(wrong[:, column == k].sum())}/{int(among[:, column == k].sum())}" for k in range(trainer.GRID)
        ))
        print(
            f"   the same at a line's last character {int(wrong[line_end].sum())}/{int((among & line_end).sum())}, "
            f"elsewhere {int(wrong[~line_end].sum())}/{int((among & ~line_end).sum())}",
            flush=True,
        )
    predicted = scores.argmax(-1)
    confusions = [
        [
            f"{name(int(classes[b, c]))}->{name(int(predicted[b, c]))} (row {c // trainer.GRID}, column {c % trainer.GRID})"
            for c in range(classes.shape[1])
            if not right[b, c]
        ]
        for b in range(len(phrases))
    ]
    if args.glyphs:
        glyph_probe(model, processor, trainer, args.glyphs, classes_total, names, index)
    if args.tower_only:
        if args.dump:
            rows = [
                {"reference": phrase, "tower_every_character_right": whole_right, "tower_confusions": confused}
                for phrase, whole_right, confused in zip(phrases, tower_whole, confusions)
            ]
            args.dump.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
            print(f"wrote {len(rows)} phrases to {args.dump}")
        return 0

    answers: dict[str, list[str]] = {}

    def report(label: str, key: str) -> None:
        started = time.perf_counter()
        figures = trainer.evaluate_reading(parts, words, args.phrases, config.seed, with_list=args.with_list, examples=args.phrases)
        answers[key] = [example["answer"] for example in figures["examples"]]
        answers["reference"] = [example["reference"] for example in figures["examples"]]
        print(
            f"{label}: exact {figures['exact_match']} %, characters {figures['character_accuracy']} % "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        for example in figures["examples"][:3]:
            print(f"   {example['reference']!r} -> {example['answer']!r}")

    report("2. reading as shipped", "shipped")
    oracle = table[classes]  # [phrases, cells, hidden], in the order evaluate_reading sends its images
    served = 0

    def exact_cells(module, inputs, output):  # one call per generated batch, whatever its size
        nonlocal served
        rows = oracle[served : served + len(output)]
        served += len(output)
        return rows.to(output.dtype)

    handle = model.model.multi_modal_projector.register_forward_hook(exact_cells)
    try:
        report("3. reading with an oracle tower (exact cells)", "oracle")
    finally:
        handle.remove()
    if args.dump:
        rows = [
            {"reference": reference, "tower_every_character_right": whole_right, "tower_confusions": confused, "shipped": shipped, "oracle": exact_answer}
            for reference, whole_right, confused, shipped, exact_answer in zip(answers["reference"], tower_whole, confusions, answers["shipped"], answers["oracle"])
        ]
        args.dump.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
        print(f"wrote {len(rows)} phrases to {args.dump}")
    return 0


def glyph_probe(model, processor, trainer, glyphs: str, classes_total: int, names: list[str], index: dict[int, int]) -> None:
    """Print what the tower reads for each glyph placed among random lower-case letters, per column."""
    import collections
    import random

    import torch

    rng, width, repeats = random.Random(0), trainer.LINE_CELLS - 1, 4
    pages, placed = [], []
    for glyph in glyphs:
        for column in range(width):
            for _ in range(repeats):
                line = [rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(width)]
                line[column] = glyph
                pages.append(["".join(line)])
                placed.append((glyph, column))
    with torch.no_grad():
        pixels = processor.image_processor([trainer.render_lines(page) for page in pages], return_tensors="pt")["pixel_values"]
        scores = torch.cat([trainer.tower_scores(model, pixels[i : i + 16], classes_total) for i in range(0, len(pixels), 16)])
    row = trainer.line_row(0) * trainer.GRID
    read = [int(scores[b, row + trainer.char_column(column)].argmax()) for b, (_, column) in enumerate(placed)]
    name = lambda c: names[c] if c < len(names) else "blank"  # noqa: E731
    glyph_ids = trainer.glyph_ids(processor.tokenizer)
    for glyph in glyphs:
        mine = [(column, read[b]) for b, (g, column) in enumerate(placed) if g == glyph]
        truth = index[glyph_ids[glyph]]
        verdicts = collections.Counter(name(c) for _, c in mine)
        by_column = [sum(c == truth for k, c in mine if k == column) for column in range(width)]
        print(f"   glyph {glyph!r} among random letters, read as {dict(verdicts.most_common())}; right per column (of {repeats}): {by_column}")


if __name__ == "__main__":
    sys.exit(main())
