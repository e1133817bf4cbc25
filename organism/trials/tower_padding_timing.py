"""Throwaway (2026-12-07): forward + backward of a v7-shaped CLIP tower (4 layers, 384 wide) and the
projector's first layer on 12 images of 290 tokens (all cells + CLS) against 205 (the 85 all-black cells left out).

    python -m organism.trials.tower_padding_timing
"""
import time, torch
from transformers import CLIPVisionConfig, CLIPVisionModel
torch.set_num_threads(2)
m=CLIPVisionModel(CLIPVisionConfig(hidden_size=384,intermediate_size=1536,num_hidden_layers=4,num_attention_heads=6,image_size=260,patch_size=15))
lin=torch.nn.Linear(384,576)
for n in (290,205):
    x=torch.randn(12,n,384)
    for i in range(4):
        t=time.perf_counter(); h=m.encoder(inputs_embeds=m.pre_layrnorm(x)).last_hidden_state; lin(h).sum().backward()
        if i: print(n, round(time.perf_counter()-t,3))
