"""Throwaway (2026-12-07): the shipped v7 tower on 48 held-out phrase images (every other one with the list),
with all cells and with the 85 all-black cells (rows 1, 2, 14-16) left out: how often the other cells change class.

    python -m organism.trials.tower_without_padding   # from the repository root
"""
import numpy as np
import torch
from harness.models.smol_llava import build_smol_llava
from organism.train import *
from transformers import LlavaForConditionalGeneration, AutoProcessor
torch.set_num_threads(2)
path=build_smol_llava()
model=LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
proc=AutoProcessor.from_pretrained(path)
words=word_list(proc.tokenizer,2000)
phr=held_out_phrases(48,0,words)
pix=torch.tensor(np.stack([processor_pixels(render_lines(text_lines(p, i%2==0))) for i,p in enumerate(phr)]))
tower=model.model.vision_tower; lin=model.model.multi_modal_projector.linear_1
drop={r*17+c for r in (1,2,14,15,16) for c in range(17)}
keep=torch.tensor([i for i in range(289) if i not in drop])
with torch.no_grad():
    full=lin(tower(pix,output_hidden_states=True).hidden_states[-1][:,1:]).argmax(-1)
    emb=tower.embeddings(pix); idx=torch.cat([torch.tensor([0]),keep+1])
    h=tower.encoder(inputs_embeds=tower.pre_layrnorm(emb[:,idx])).last_hidden_state[:,1:]
    part=lin(h).argmax(-1)
print("kept cells same class:", (full[:,keep]==part).float().mean().item(), "images all same:", (full[:,keep]==part).all(-1).float().mean().item())
