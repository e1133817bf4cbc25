"""Throwaway: stage 2 alone on the v7 layout with v7b's stage-1 blanks (read back from its projector),
column 0 of text rows weighing COL0 and the spaces / line ends 20, for STEPS steps. Then reading on the build's 50.

    python -m organism.trials.v7_stage2_steps COL0 STEPS   # 5 400: the lighter column 0; 20 600: v7's recipe
"""
import random, sys, time, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import torch
from safetensors.torch import load_file
from harness.models import smol_llava
from organism import train as t
COL0 = float(sys.argv[1]); STEPS = int(sys.argv[2])
torch.manual_seed(0); torch.set_num_threads(2)
t0 = time.perf_counter()
model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=False)
for p in model.parameters():
    p.requires_grad_(False)
with torch.no_grad():
    model.model.vision_tower.embeddings.position_embedding.weight.normal_(std=1.0)
parts = t.Parts(model, processor.tokenizer, processor)
config = t.TrainConfig(tower_steps=STEPS)
source = t.ExampleSource(parts, config, random.Random(config.seed))
tokens = t.class_tokens(parts.tokenizer, source.captions)
w = load_file("/tmp/exp/v7b/smol_llava_vision.safetensors")["model.multi_modal_projector.linear_2.weight"].float()
blanks = (w[:, len(tokens): len(tokens) + t.GRID * t.GRID].T * t.SELECT_LEVEL).contiguous()
for _ in range(config.blank_steps * config.blank_batch):  # advance the example stream past stage 1 as the build does (approximately)
    source.lm_example()
def cell_weights(tokenizer, batch_cells, weight):
    weights = torch.ones(len(batch_cells), t.GRID * t.GRID)
    column_0 = {t.line_row(r) * t.GRID for r in range(t.MAX_LINES)}
    space = t.glyph_ids(tokenizer)[" "]
    for b, cells in enumerate(batch_cells):
        for cell in t.context_cells(tokenizer, cells):
            is_space = any(c == cell and tok == space for tok, c in cells)
            weights[b, cell] = COL0 if (cell in column_0 and not is_space) else weight
    return weights
t.cell_weights = cell_weights
t.train_tower(parts, source, blanks, config)
print(f"stage 2 done {time.perf_counter()-t0:.0f}s", flush=True)
r = t.evaluate_reading(parts, source.words, 50, 0)
rl = t.evaluate_reading(parts, source.words, 50, 0, with_list=True)
print(json.dumps({"col0": COL0, "steps": STEPS, "reading": [r["exact_match"], r["character_accuracy"]], "list": [rl["exact_match"], rl["character_accuracy"]], "s": round(time.perf_counter()-t0)}), flush=True)
from safetensors.torch import save_file
save_file(t.vision_state(model), f"/tmp/exp/v7c/w_col0_{COL0}_{STEPS}.safetensors")
