"""Throwaway: stage 1 with exact cells in the aligned 17x17 layout where every bare canvas cell is a space.

Layout: line r in row FIRST_ROW + r, character k at column 1 + k; rows 4-13 x columns 1-15 are canvas
(a space unless a character is there); every other cell (column 0, column 16, padding rows) is a blank.
"""
import random, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import torch
from harness.models import smol_llava
from organism import train as trainer

MODE = sys.argv[1]  # "spaces" (every canvas cell), "rowspaces" (text rows only, columns 1-16) or "v5"
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 56
EVAL = int(sys.argv[3]) if len(sys.argv) > 3 else 50
FIRST_ROW, COLS = 4, 15

def cell_tokens_spaces(tokenizer, lines):
    lines = [line.rstrip() for line in lines]
    if len(lines) > trainer.MAX_LINES or any(len(line) > COLS for line in lines):
        return None
    ids = trainer.glyph_ids(tokenizer)
    if any(ch not in ids for line in lines for ch in line):
        return None
    cells = []
    rows = trainer.MAX_LINES if MODE == "spaces" else len(lines)
    cols = COLS if MODE == "spaces" else COLS + 1  # rowspaces: column 16 too, so a full line still ends in a space
    for r in range(rows):
        line = lines[r] if r < len(lines) else ""
        for k in range(cols):
            ch = line[k] if k < len(line) else " "
            cells.append((ids[ch], (FIRST_ROW + r) * trainer.GRID + 1 + k))
    return cells

if MODE in ("spaces", "rowspaces"):
    trainer.GRID = 17
    trainer.cell_tokens = cell_tokens_spaces

torch.manual_seed(0); torch.set_num_threads(2)
t0 = time.perf_counter()
model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=False)
for p in model.parameters():
    p.requires_grad_(False)
parts = trainer.Parts(model, processor.tokenizer, processor)
config = trainer.TrainConfig(blank_steps=STEPS)
source = trainer.ExampleSource(parts, config, random.Random(config.seed))
blanks, losses = trainer.train_blanks(parts, source, config)
torch.save(blanks, f"/tmp/exp/spaces/blanks_{MODE}_{STEPS}.pt")
print(f"stage 1 {time.perf_counter()-t0:.0f}s loss {losses[0]} -> {losses[-1]}", flush=True)
emb = parts.embeddings.detach()
before, after = parts.prompt_ids(trainer.EVAL_READ_INSTRUCTION)
for with_list in (False, True):
    exact = chars = 0
    phrases = trainer.held_out_phrases(EVAL, 0, source.words)
    for n, phrase in enumerate(phrases):
        lines = trainer.text_lines(phrase, with_list=with_list)
        ref = trainer.transcript(phrase, with_list=with_list)
        vis = trainer.visual_targets(blanks, emb, trainer.cell_tokens(parts.tokenizer, lines))
        inp = torch.cat([emb[torch.tensor(before)], vis, emb[torch.tensor(after)]])[None]
        with torch.no_grad():
            out = model.generate(inputs_embeds=inp, attention_mask=torch.ones(inp.shape[:2], dtype=torch.long), max_new_tokens=len(ref) + 8, do_sample=False)
        text = parts.tokenizer.decode(out[0], skip_special_tokens=True)
        ok = trainer.normalise(text) == trainer.normalise(ref)
        exact += ok; chars += trainer.character_accuracy(text, ref)
        if not ok and n < 40:
            print(f"  {ref!r} -> {text!r}")
    print(f"{MODE} list={with_list}: exact {exact}/{len(phrases)} = {100*exact/len(phrases):.1f} %, chars {100*chars/len(phrases):.1f} %, {time.perf_counter()-t0:.0f}s", flush=True)
