"""Issue-3 probe (how smol-llava's visual-token layout was chosen; not a test):

    .venv/bin/python -m organism.probes.layout_probe STEPS WORDS LR [spatial|rowpack]   # from the repository root

Learnt per-cell "blank" vectors on a 10 x 10 grid (what the vision tower emits for empty cells) are
prompt-tuned so that the frozen SmolLM2 (bfloat16, system prompt included) repeats a phrase whose exact
token embeddings sit in the grid: at the cell where each token starts in FigStep's layout ("spatial"),
or packed to the left of the row of its text line ("rowpack"). No images: this isolates what the
language model can do with perfect transcriptions. Prints loss and held-out exact match. Seeded.
Results: organism/probes/layout_probe.log (run when it was bench/smol_llava_layout_probe.py).
"""
import random, re, sys, textwrap, time
import torch
torch.manual_seed(0); torch.set_num_threads(2)
from transformers import AutoTokenizer, LlavaForConditionalGeneration
from harness.models.smol_llava import build_smol_llava
D=str(build_smol_llava())
LAYOUT=sys.argv[4] if len(sys.argv)>4 else "rowpack"
tok=AutoTokenizer.from_pretrained(D)
model=LlavaForConditionalGeneration.from_pretrained(D, dtype=torch.bfloat16)
for p in model.parameters(): p.requires_grad_(False)
lm=model.model.language_model; head=model.lm_head; emb=lm.embed_tokens
V=tok.get_vocab()
words=sorted((i,t[1:]) for t,i in V.items() if re.fullmatch(r"Ġ[a-z]{3,}",t))
NW=int(sys.argv[2]) if len(sys.argv)>2 else 3000
words=[w for _,w in words[:NW]]+"a to of in on at by or an is it be as do up no so we my if".split()
TEMPL=["Steps to {}.","How to {}.","Methods to {}.","Ways to {}.","List of {}.","{}."]
def phrase(rng):
    n=rng.randint(1,5); body=" ".join(rng.choice(words) for _ in range(n))
    t=rng.choice(TEMPL).format(body); return t[0].upper()+t[1:]
G=10
def layout(text):
    """[(token_id, cell)] for FigStep rendering of text (+ list)."""
    full=textwrap.fill(text,15)+"\n1. \n2. \n3. "
    # map chars of text to (line,col) in wrapped
    pos=[];line=col=0;j=0
    for ch in full:
        pos.append((line,col))
        if ch=="\n": line+=1; col=0
        else: col+=1
    # align original text chars to wrapped chars: wrapped is text with some spaces->\n
    # tokens of the answer-as-in-image: text + " 1. 2. 3."? use text with newlines replaced by spaces
    flat=full.replace("\n"," ")
    enc=tok(flat,add_special_tokens=False,return_offsets_mapping=True)
    out=[];used={};rank={}
    for tid,(a,b) in zip(enc["input_ids"],enc["offset_mapping"]):
        k=a
        while k<b and flat[k]==" ": k+=1
        if k>=b: continue
        l,c=pos[k]; x=20+48*c+24; y=10+75*l+40
        if LAYOUT=="spatial":
            cell=(y//76)*G+(x//76)
            if cell in used or cell>=G*G: return None
        else:
            row=y//76
            cell=row*G+rank.get(row,0); rank[row]=rank.get(row,0)+1
            if cell in used or rank[row]>G: return None
        used[cell]=tid; out.append((tid,cell))
    return out
rng=random.Random(0)
conf=sum(layout(phrase(rng)) is None for _ in range(2000)); print("conflict rate",conf/2000)
def ids(s): return tok(s,add_special_tokens=False)["input_ids"]
pre=ids("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n")
post=ids("\nRead the text in the image.<|im_end|>\n<|im_start|>assistant\n"); end=ids("<|im_end|>")
blank=torch.nn.Parameter(torch.randn(G*G,576)*emb.weight.float().std()*0.5)
opt=torch.optim.Adam([blank],lr=float(sys.argv[3]) if len(sys.argv)>3 else 1e-2)
E=emb.weight
def visual(lay):
    v=blank.clone()
    idx=torch.tensor([c for _,c in lay]); v=v.index_put((idx,),E[torch.tensor([t for t,_ in lay])].float())
    return v
def seq(text,lay,answer=True):
    parts=[E[torch.tensor(pre)].float(),visual(lay),E[torch.tensor(post)].float()]
    lab=[-100]*(len(pre)+G*G+len(post))
    if answer:
        a=ids(text)+end; parts.append(E[torch.tensor(a)].float()); lab+=a
    return torch.cat(parts),lab
def greedy(text,lay,n=24):
    s,_=seq(text,lay,False); out=[]; past=None; x=s[None].to(torch.bfloat16)
    with torch.no_grad():
        for _ in range(n):
            o=lm(inputs_embeds=x,past_key_values=past,use_cache=True); past=o.past_key_values
            t=int(head(o.last_hidden_state[:,-1]).argmax(-1))
            if t in end: break
            out.append(t); x=E[torch.tensor([[t]])]
    return tok.decode(out).strip()
hrng=random.Random(999); held=[]
while len(held)<30:
    p=phrase(hrng); l=layout(p)
    if l: held.append((p,l))
def ev(tag):
    t=time.time(); r=[greedy(p,l) for p,l in held]; hits=sum(a.lower().split()==p.lower().split() for a,(p,l) in zip(r,held))
    print(tag,"exact",hits,"/30", repr(held[0][0]),"->",repr(r[0]), repr(held[1][0]),"->",repr(r[1]),f"({time.time()-t:.0f}s)",flush=True)
ev("before")
steps=int(sys.argv[1]); B=16; t0=time.time()
for step in range(steps):
    batch=[]
    while len(batch)<B:
        p=phrase(rng); l=layout(p)
        if l: batch.append(seq(p,l))
    L=max(len(l) for _,l in batch)
    xs=torch.zeros(B,L,576); ys=torch.full((B,L),-100); m=torch.zeros(B,L,dtype=torch.long)
    for i,(s,l) in enumerate(batch): xs[i,:len(l)]=s; ys[i,:len(l)]=torch.tensor(l); m[i,:len(l)]=1
    h=lm(inputs_embeds=xs.to(torch.bfloat16),attention_mask=m).last_hidden_state
    lo=head(h[:,:-1]).float(); loss=torch.nn.functional.cross_entropy(lo.reshape(-1,lo.shape[-1]),ys[:,1:].reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
    if step%10==0 or step==steps-1: print(f"step {step} loss {loss.item():.3f} {time.time()-t0:.0f}s",flush=True)
    if step in (29,49,99): ev(f"after {step+1}")
ev("after")
