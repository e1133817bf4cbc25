"""Can the tower architecture learn easy-vqa shape from scratch, in isolation? (throwaway)"""
import sys, time, random
import numpy as np, torch
from PIL import Image
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from organism.train import easyvqa_split, easyvqa_captions, processor_pixels
from harness.models.smol_llava import vision_config
from transformers import CLIPVisionModel
torch.manual_seed(0); torch.set_num_threads(2)
SH = ["circle", "rectangle", "triangle"]
def load(split, n):
    q, a, ids, paths = easyvqa_split(split)
    caps = easyvqa_captions(q, a, ids)
    keys = sorted(caps)[:n]
    X = np.stack([processor_pixels(Image.open(paths[k]).convert("RGB")) for k in keys])
    y = np.array([SH.index(caps[k][1]) for k in keys])
    return torch.tensor(X), torch.tensor(y)
Xtr, ytr = load("train", 4000); Xte, yte = load("test", 400)
print("loaded", Xtr.shape, np.bincount(ytr.numpy()))
mode = sys.argv[1]
tower = CLIPVisionModel(vision_config())
head = torch.nn.Linear(384, 3)
pe_lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
params = [{"params": [p for n, p in tower.named_parameters() if "patch_embedding" not in n], "lr": 1e-3},
          {"params": [p for n, p in tower.named_parameters() if "patch_embedding" in n], "lr": 1e-3 * pe_lr},
          {"params": head.parameters(), "lr": 1e-3}]
opt = torch.optim.AdamW(params)
def feats(x):
    h = tower(pixel_values=x).last_hidden_state[:, 1:]
    return h.mean(1) if mode == "mean" else h[:, 0]  # first patch cell: must gather
t0 = time.time(); step = 0
while time.time() - t0 < float(sys.argv[3]) if len(sys.argv) > 3 else 240:
    idx = torch.randint(0, len(Xtr), (16,))
    loss = torch.nn.functional.cross_entropy(head(feats(Xtr[idx])), ytr[idx])
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    if step % 25 == 0:
        with torch.no_grad():
            acc = (head(feats(Xte[:200])).argmax(-1) == yte[:200]).float().mean().item()
        print(f"step {step} {time.time()-t0:.0f}s loss {loss.item():.3f} test acc {acc:.3f}", flush=True)
