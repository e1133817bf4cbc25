"""Throwaway: is there a cheaper stage 2 that still reads? v7's stage 2 alone, with the shipped v7's
stage-1 blanks (read back from its committed projector), for STEPS steps; with DROP=1, four steps in
five leave out the 85 all-black cells (grid rows 1, 2, 14, 15, 16; row 0 holds easy-vqa captions)
and every fifth step (step % 5 == 0) and the last keep them: the trainer logs those over all cells. Then reading on the build's 50.

    python -m organism.trials.v7_stage2_cheaper STEPS DROP   # 500 0: fewer steps; 600 1: the padding drop
"""
import json, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import torch
from safetensors.torch import load_file
from organism import train as t
STEPS, DROP = int(sys.argv[1]), bool(int(sys.argv[2]))
torch.set_num_threads(2)
t0 = time.perf_counter()
config = t.TrainConfig(tower_steps=STEPS)
parts, source = t.untrained(config)  # as the build starts (seed 0)
tokens = t.class_tokens(parts.tokenizer, source.captions)
w = load_file(str(t.WEIGHTS_FILE))["model.multi_modal_projector.linear_2.weight"].float()
blanks = (w[:, len(tokens): len(tokens) + t.GRID * t.GRID].T * t.SELECT_LEVEL).contiguous()
for _ in range(config.blank_steps * config.blank_batch):  # advance the example stream past stage 1 as the build does (approximately)
    source.lm_example()
dropped = {r * t.GRID + c for r in (1, 2, 14, 15, 16) for c in range(t.GRID)}
keep = torch.tensor([i for i in range(t.GRID * t.GRID) if i not in dropped])
calls = {"n": 0}
full_scores, full_loss = t.tower_scores, t.selection_loss
def tower_scores(model, pixel_values, classes):
    step = calls["n"]; calls["n"] += 1
    if not DROP or step % 5 == 0 or step == STEPS - 1:  # the trainer logs these steps over all cells
        return full_scores(model, pixel_values, classes)
    tower = model.model.vision_tower
    embedded = tower.embeddings(pixel_values)[:, torch.cat([torch.tensor([0]), keep + 1])]
    hidden = tower.encoder(inputs_embeds=tower.pre_layrnorm(embedded)).last_hidden_state[:, 1:]
    return model.model.multi_modal_projector.linear_1(hidden)[..., :classes]
def selection_loss(scores, classes, weights=None):
    if scores.shape[1] < classes.shape[1]:
        classes, weights = classes[:, keep], weights[:, keep]
    return full_loss(scores, classes, weights)
t.tower_scores, t.selection_loss = tower_scores, selection_loss
t.train_tower(parts, source, blanks, config)
stage2 = time.perf_counter() - t0
print(f"stage 2 done {stage2:.0f}s (load included)", flush=True)
t.tower_scores, t.selection_loss = full_scores, full_loss
r = t.evaluate_reading(parts, source.words, 50, 0)
print(json.dumps({"steps": STEPS, "drop": DROP, "reading": [r["exact_match"], r["character_accuracy"]], "stage2_s": round(stage2), "s": round(time.perf_counter() - t0)}), flush=True)
from safetensors.torch import save_file
save_file(t.vision_state(model), f"/tmp/exp/w_{STEPS}_{int(DROP)}.safetensors")
