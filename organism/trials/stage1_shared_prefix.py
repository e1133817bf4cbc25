"""Throwaway (2026-12-07): one stage-1 step of 8 reading examples run whole, against the same step with the
system turn and grid rows 0-3 run once and their key/value cache repeated for the batch (v6's continue_after).
Prints seconds, loss and the blanks' gradient norm for each, twice. Output: stage1_shared_prefix.log

    python -m organism.trials.stage1_shared_prefix   # from the repository root
"""
import time, random, torch
from harness.models import smol_llava
from organism.train import *
torch.set_num_threads(2)
cfg = TrainConfig()
model, processor = smol_llava.construct(smol_llava.load_smollm2(), trained_vision=False)
for p in model.parameters(): p.requires_grad_(False)
parts = Parts(model, processor.tokenizer, processor)
source = ExampleSource(parts, cfg, random.Random(0))
lm = model.model.language_model; head = model.lm_head
emb = parts.embeddings.detach()
blanks = torch.nn.Parameter(torch.randn(289, 576)*0.02)
first = line_row(0)*GRID
print("first text cell", first)
exs=[]
while len(exs)<8:
    e=source.lm_example()
    if e.spelled: exs.append(e)
before,_=parts.prompt_ids("")
def rows_full():
    rows,labels=[],[]
    for e in exs:
        b,a=parts.prompt_ids(e.prompt); ans=parts.answer_ids(e.answer,True)
        rows.append(torch.cat([emb[torch.tensor(b)], visual_targets(blanks,emb,e.cells), emb[torch.tensor(a+ans)]]))
        labels.append([-100]*(len(b)+289+len(a))+ans)
    return rows,labels
def pad(rows,labels):
    L=max(len(l) for l in labels); x=torch.zeros(len(rows),L,576); t=torch.full((len(rows),L),-100); m=torch.zeros(len(rows),L,dtype=torch.long)
    for i,(r,l) in enumerate(zip(rows,labels)): x[i,:len(l)]=r; t[i,:len(l)]=torch.tensor(l); m[i,:len(l)]=1
    return x,t,m
def loss_of(hidden,t):
    nt=t[:,1:]; s=nt!=-100
    return torch.nn.functional.cross_entropy(head(hidden[:,:-1][s]), nt[s])
def full():
    x,t,m=pad(*rows_full()); h=lm(inputs_embeds=x,attention_mask=m).last_hidden_state; return loss_of(h,t)
from transformers import DynamicCache
def shared():
    rows,labels=[],[]
    for e in exs:
        _,a=parts.prompt_ids(e.prompt); ans=parts.answer_ids(e.answer,True)
        cells=visual_targets(blanks,emb,e.cells)
        rows.append(torch.cat([cells[first:], emb[torch.tensor(a+ans)]])); labels.append([-100]*(289-first+len(a))+ans)
    prefix=torch.cat([emb[torch.tensor(before)], blanks[:first]])[None]
    cache=lm(inputs_embeds=prefix,use_cache=True).past_key_values
    states=[(l.keys,l.values) for l in cache.layers]
    x,t,m=pad(rows,labels)
    c=DynamicCache(ddp_cache_data=[(k.repeat_interleave(len(rows),0),v.repeat_interleave(len(rows),0)) for k,v in states])
    start=c.get_seq_length(); B,W=x.shape[:2]
    mask=torch.cat([torch.ones(B,start,dtype=torch.long),m],1)
    pos=(start+torch.arange(W)).expand(B,W)
    h=lm(inputs_embeds=x,attention_mask=mask,position_ids=pos,past_key_values=c,use_cache=True).last_hidden_state
    return loss_of(h,t)
for f in (full,shared,full,shared):
    blanks.grad=None
    t0=time.perf_counter(); l=f(); l.backward(); print(f.__name__, round(time.perf_counter()-t0,2), l.item(), blanks.grad.norm().item())
