"""``autosteer``: a safety prober gates a trained refusal head on the output projection.

Paper: Wu et al., "AutoSteer: Automating Steering for Safe Multimodal Large Language Models", EMNLP 2025
(main), arXiv:2507.13255. Official code (MIT): https://github.com/zjunlp/AutoSteer
(``source/LayerSelect/Llava/{utils,gen_last_token_memmap_np}.py``, ``source/train_rater.py``,
``source/train_llava_rater.bash``, ``source/llava_prober_pipeline.bash``, ``source/test_llava.bash``,
``source/steer/SteerLlava/{rater,steer_model_llava_train,steer_model_llava_inference}.py``,
``source/llava_steer_test.py``). Facts followed, from the code:

Images: every image is resized to 256 x 256 before the processor, for the layer scores and prober
  embeddings (``Eval_Llava.process_llava_input``), for refusal-head training (``SteerDataset``,
  ``image.resize((256,256))``) and at inference (``process_llava_input`` again). Here: the calibration
  option ``image_size`` (default 256; ``--calibration-arg image_size=0`` keeps images as they are),
  stored in the artifact and applied at inference, so the three always agree. The copy is converted to
  RGB and then resized with PIL's default (bicubic); the code resizes the image as opened (the same for
  RGB files such as COCO's JPEGs).
Prompt format: the user turn holds the text FIRST and the image after it, rendered with
  ``add_generation_prompt=False``: there is no assistant marker, the model writes its own role header.
  The same rendering is used for the layer scores, the prober and inference ("must be consistent with the
  prompt template used in training"). The code strips everything up to the first "assistant" of the
  decoded sequence; we strip a leading generated "assistant" header from the answer only (the code's
  split would also cut at an "assistant" inside the prompt, e.g. SmolLM2's default system prompt).
  The format is a calibration option, fixed in the artifact so that the prober, the refusal head and
  inference always share it: ``harness calibrate --defense autosteer --calibration-arg
  assistant_marker=true`` uses the harness's usual template instead (image first, generation prompt).
  A model trained only on that layout may fall apart under the official one: smol-llava answers image
  questions with empty or looping text there (easy-vqa accuracy 0 %, docs/defenses-on-smol-llava.md).
Chameleon / Anole (the paper's second family; ``source/steer/SteerChameleon``, ``chameleon_steer_test.py``):
  the family's prompt format is already the code's (question, then the image tokens, no template:
  harness/models/chameleon.py), so both settings of ``assistant_marker`` render the same prompt there. The
  candidate layers of a 32-layer model are 4..28, the code's; its test scripts probe layer 24. Deviations
  there: the code runs Anole's own inference stack in float16 and samples (Anole's ``Options()`` default:
  temperature 0.7, top-p 0.9, repetition penalty 1.2); the harness runs transformers'
  ``ChameleonForConditionalGeneration`` greedily in the chosen dtype.
Safety Awareness Score (SAS): for each candidate layer l, with paired harmful/safe inputs (VLSafe query and
  its safe rewrite; here our harmful/harmless pairs), delta_i = h_l(safe_i) - h_l(harmful_i) at the last
  prompt token of the residual stream entering block l (HF hidden_states[l]); SAS(l) = mean over i < j
  of cos(delta_i, delta_j). Candidates are layers 4, 8, ... below the depth (LLaVA-OV 7B: 4..24); models
  with fewer than 8 blocks use every inner block. The layer with the highest SAS is the prober layer
  (the code's scripts then hard-code 20 for LLaVA-OV, which is its SAS choice).
Prober: Linear(d, 64) -> ReLU -> Linear(64, 2) -> softmax; label toxic = 0, safe = 1, output[0] =
  P(toxic). Trained with CrossEntropyLoss on the *softmax* outputs (the code's double softmax, kept),
  AdamW lr 1e-5, weight decay 1e-5, batch 8, fp32, shuffled every epoch. Checkpoint: the code trains 200
  epochs on all 3000 + 3000 VLSafe embeddings (``--ratio 0``), saves every epoch and its test scripts
  load a fixed one, ``layer20/epoch_37.pt`` (picked by evaluating every epoch on its test sets,
  ``evaluate_rater.py``). Here the prober stops after the same number of optimizer updates,
  37 epochs x ceil(6000 / 8) = 27,750 steps, whatever the data size (37 epochs of our 160 examples
  would be 740 updates, 3 % of the code's training). Held-out accuracy is measured at the end and
  recorded, never used to choose.
Refusal head: a d x d matrix S (init identity, base model frozen); logits = h (W + eps W S)^T with W the
  lm_head weight and h the post-norm state, eps = 0.1. Trained to emit "I'm sorry, but I can't assist
  with that." after the harmful prompt (teacher forcing, loss only after the question: the code masks
  up to and including the image token that ends the user content), AdamW lr 1e-5 (torch's default
  weight decay 0.01, as the code), batch 2; the code trains 30 epochs and uses Epoch_12, so 12 epochs
  here. Because the model is frozen, the post-norm states are computed once and S is trained on them:
  the same gradients, far cheaper.
Inference: on the prefill only, t = P(toxic) from the prober on the last prompt token at the prober
  layer; if t > 0.5 the head uses eps = 0.1 (safety_ratio 1.0) for every generated token, else eps = 0 and
  the output is the undefended model's (same prompt). Equivalent hook: h <- h + eps h S^T at the LM-head
  input. Greedy. Outputs carry ``meta`` = {toxicity, gate, probe_layer}. No extra generations.

Deviations from the official code:
- Data: our 80 + 80 harmful/harmless training pairs (text only) instead of VLSafe's 3000 + 3000 with
  COCO images; ``--data vlsafe:DIR`` reads the official files. The refusal head is trained on our 80
  harmful prompts; the code adds 1000 ToViLaG toxic images, which are not shipped (its 12 epochs are
  ~24,000 updates, ours 480: the head is under-trained offline and this is not tuned).
- The prober trains on 80 % of the pairs (the held-out 20 % are only measured); the code's chosen run
  used every pair. The prober runs in float32 on the float32 copy of the state; the code casts the
  prober to float16.
- Every batch row is rated and gated on its own; the code rates row 0 only (it runs batch 1).
- Answers are capped at the task's ``max_new_tokens``; the code generates 150 tokens.
- The leading role header is stripped from the answer only (see "Prompt format").
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from harness.defense_api.calibration import Calibration, CalibratedDefense, CalibrationData
from harness.defense_api.steering import (
    StepCounter,
    edit_layer_input,
    edit_lm_head_input,
    encode_texts,
    progress,
    read_residuals,
    render_messages,
    rendered_with,
    resized_requests,
)

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

EPSILON = 0.1
THRESHOLD = 0.5
SAFETY_RATIO = 1.0
PROBER_HIDDEN = 64
PROBER_LR = 1e-5
PROBER_WEIGHT_DECAY = 1e-5
PROBER_BATCH = 8
# The code's checkpoint: epoch 37 of batch-8 training on 3000 + 3000 embeddings = 27,750 AdamW updates.
OFFICIAL_PROBER_EPOCH = 37
OFFICIAL_PROBER_EXAMPLES = 6000
PROBER_STEPS = OFFICIAL_PROBER_EPOCH * math.ceil(OFFICIAL_PROBER_EXAMPLES / PROBER_BATCH)
IMAGE_SIZE = 256  # every image is resized to 256 x 256 in the code (embeddings, head training, inference)
HEAD_LR = 1e-5
HEAD_BATCH = 2
HEAD_EPOCHS = 12
REFUSAL_TARGET = "I'm sorry, but I can't assist with that."
LAYER_STRIDE = 4
BATCH_SIZE = 16


class Prober(nn.Module):
    """The code's ``LinearProber`` with hidden_sizes [d, 64, 2]: returns softmax probabilities."""

    def __init__(self, hidden_size: int, inner: int = PROBER_HIDDEN):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Linear(inner, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)

    def toxicity(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[..., 0]


def official_prompt(adapter: "VLMAdapter", request: "Request") -> str:
    """User turn with the text before the image, no generation prompt (no assistant marker)."""
    return render_messages(adapter, request, add_generation_prompt=False, image_after_text=True)


def prompt_renderer(adapter: "VLMAdapter", assistant_marker: bool):
    """How requests are rendered for the prober, the refusal head and inference."""
    if assistant_marker:
        return adapter.prompt_text  # the harness's usual template, as `none` sees it
    return lambda request: official_prompt(adapter, request)


ROLE_HEADER = re.compile(r"\s*assistant[ \t]*(?::|\n|$)", re.IGNORECASE)


def strip_role_header(text: str) -> str:
    """Drop a role header the model wrote itself ("assistant\\n...", "ASSISTANT: ...") at the start of
    its answer; an answer that merely begins with the word ("Assistants are ...") is left whole."""
    header = ROLE_HEADER.match(text)
    return text[header.end():].lstrip(" \n") if header else text


def candidate_layers(num_layers: int) -> list[int]:
    if num_layers >= 2 * LAYER_STRIDE:
        return list(range(LAYER_STRIDE, num_layers, LAYER_STRIDE))
    return list(range(1, num_layers)) or [0]


def safety_awareness(harmful: torch.Tensor, safe: torch.Tensor) -> float:
    """Mean pairwise cosine (upper triangle) of the per-pair differences safe_i - harmful_i."""
    deltas = torch.nn.functional.normalize((safe - harmful).double(), dim=-1)
    cosine = deltas @ deltas.T
    upper = torch.triu_indices(len(deltas), len(deltas), offset=1)
    return float(cosine[upper[0], upper[1]].mean())


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread while training the small prober: its 8 x d x 64 products are overhead-bound
    and run about four times faster without thread hand-offs (measured on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_prober(train_x: torch.Tensor, train_y: torch.Tensor, steps: int | None = None) -> tuple[Prober, dict]:
    """The code's prober training (shuffled batches of 8, reshuffled every epoch), stopped after ``steps``
    AdamW updates (default :data:`PROBER_STEPS`, the code's epoch-37 checkpoint); the last epoch may be cut
    short. Returns the prober and {steps, epochs, final_loss}."""
    steps = int(steps or PROBER_STEPS)  # read at call time: tests shorten it
    if steps < 1:
        raise ValueError(f"autosteer: the prober needs at least one update, got steps={steps}")
    prober = Prober(train_x.shape[1])
    optimizer = torch.optim.AdamW(prober.parameters(), lr=PROBER_LR, weight_decay=PROBER_WEIGHT_DECAY)
    criterion = nn.CrossEntropyLoss()
    done, loss = 0, torch.tensor(float("nan"))
    batches_per_epoch = math.ceil(len(train_x) / PROBER_BATCH)
    with single_thread():
        while done < steps:
            order = torch.randperm(len(train_x))
            for start in range(0, len(order), PROBER_BATCH):
                if done == steps:
                    break
                batch = order[start : start + PROBER_BATCH]
                optimizer.zero_grad()
                loss = criterion(prober(train_x[batch]), train_y[batch])  # softmax then CE, as in the code
                loss.backward()
                optimizer.step()
                done += 1
    return prober, {"steps": done, "epochs": round(done / batches_per_epoch, 2), "final_loss": loss.item()}


def accuracy(prober: Prober, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((prober(x).argmax(-1) == y).float().mean())


def train_refusal_head(states: list[torch.Tensor], targets: list[torch.Tensor], weight: torch.Tensor,
                       epochs: int | None = None) -> tuple[torch.Tensor, list[float]]:
    """S minimising CE of (h + eps h S^T) W^T against the target tokens; ``states[i]`` [T_i, d] post-norm
    states predicting ``targets[i]`` [T_i]."""
    epochs = epochs or HEAD_EPOCHS
    dim = weight.shape[1]
    steer = nn.Parameter(torch.eye(dim))
    optimizer = torch.optim.AdamW([steer], lr=HEAD_LR)
    weight = weight.float()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(states)).tolist()
        total = 0.0
        for start in range(0, len(order), HEAD_BATCH):
            batch = order[start : start + HEAD_BATCH]
            h = torch.cat([states[i] for i in batch])
            y = torch.cat([targets[i] for i in batch])
            optimizer.zero_grad()
            logits = (h + EPSILON * h @ steer.T) @ weight.T
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
    return steer.detach(), losses


class AutoSteer(CalibratedDefense):
    name = "autosteer"
    aliases = ("auto-steer",)
    summary = (
        "AutoSteer: SAS-chosen prober gates a trained refusal head (Wu et al., EMNLP 2025); "
        "needs calibration"
    )
    version = 2  # 2: only a real role header is stripped from the answer
    default_params = {"threshold": THRESHOLD, "epsilon": EPSILON, "safety_ratio": SAFETY_RATIO}
    # assistant_marker False: the official prompt format; image_size: the code's 256 x 256 resize (0: off)
    calibration_params = {"assistant_marker": False, "image_size": IMAGE_SIZE}
    calibration_version = 2  # 2: images resized, prober stopped after the code's number of updates

    def prober(self) -> Prober:
        tensors = self.require_artifact().tensors
        prober = Prober(tensors["prober.layers.0.weight"].shape[1], tensors["prober.layers.0.weight"].shape[0])
        prober.load_state_dict({name.removeprefix("prober."): value.float()
                                for name, value in tensors.items() if name.startswith("prober.")})
        return prober.eval()

    def assistant_marker(self) -> bool:
        """The prompt format the artifact was fitted with (absent in artifacts older than the option)."""
        return bool(self.require_artifact().fit.get("assistant_marker", False))

    def image_size(self) -> int:
        """The side images are resized to, as fitted (0: not resized)."""
        return int(self.require_artifact().fit.get("image_size", 0))

    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        layer = int(fit["layer"])
        prober = self.prober().to(adapter.device)
        steer = self.tensor("steer_matrix", device=adapter.device)
        epsilon = float(self.params["epsilon"]) * float(self.params["safety_ratio"])
        threshold = float(self.params["threshold"])
        counter = StepCounter()
        state: dict[str, torch.Tensor] = {}

        def rate(hidden: torch.Tensor) -> None:
            if counter.step == 0:  # first (prefill) pass only, last prompt token
                with torch.no_grad():
                    toxicity = prober.toxicity(hidden[:, -1, :].float())
                state["toxicity"] = toxicity
                state["gate"] = (toxicity > threshold).float()

        def refusal_head(hidden: torch.Tensor) -> torch.Tensor | None:
            gate = state.get("gate")
            if gate is None or not bool(gate.any()):
                return None  # eps = 0: logits exactly the model's
            scale = (epsilon * gate).to(hidden.device, hidden.dtype).view(-1, *([1] * (hidden.dim() - 1)))
            return hidden + scale * (hidden @ steer.to(hidden.dtype).T)

        marker = self.assistant_marker()
        with (counter.counting(adapter), rendered_with(adapter, prompt_renderer(adapter, marker)),
              edit_layer_input(adapter, layer, rate), edit_lm_head_input(adapter, refusal_head)):
            outputs = adapter.generate(resized_requests(requests, self.image_size()))
        toxicity = state["toxicity"].tolist()
        for row, output in enumerate(outputs):
            if not marker:
                output.text = strip_role_header(output.text)
            output.meta.update({"toxicity": toxicity[row], "gate": bool(toxicity[row] > threshold),
                                "probe_layer": layer})
        return outputs

    # ----------------------------------------------------------------------------------- calibration
    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData, assistant_marker: bool = False,
                  image_size: int = IMAGE_SIZE) -> Calibration:
        from harness.defense_api.steering import last_token_states

        image_size = int(image_size)
        if image_size < 0:
            raise ValueError(f"autosteer: image_size must be 0 (no resize) or a side in pixels, got {image_size}")
        render = prompt_renderer(adapter, assistant_marker)
        layers = candidate_layers(adapter.num_layers)

        def requests(prompts) -> list["Request"]:
            return resized_requests([p.request() for p in prompts], image_size)

        harmful = last_token_states(adapter, requests(data.harmful), layers, render=render, batch_size=BATCH_SIZE)
        harmless = last_token_states(adapter, requests(data.harmless), layers, render=render, batch_size=BATCH_SIZE)
        scores = {layer: safety_awareness(harmful[layer], harmless[layer]) for layer in layers}
        layer = max(layers, key=lambda candidate: (scores[candidate], -candidate))

        # Prober on the chosen layer: toxic = 0, safe = 1; the held-out split is measured, not used to choose.
        n = len(data)
        val_index = [i for i in range(n) if i in _val_positions(n)]
        train_index = [i for i in range(n) if i not in set(val_index)] or val_index

        def features(index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.cat([harmful[layer][index], harmless[layer][index]])
            y = torch.cat([torch.zeros(len(index), dtype=torch.long), torch.ones(len(index), dtype=torch.long)])
            return x, y

        train_x, train_y = features(train_index)
        val_x, val_y = features(val_index)
        prober, prober_fit = train_prober(train_x, train_y)
        prober_fit.update(train_accuracy=accuracy(prober, train_x, train_y), val_accuracy=accuracy(prober, val_x, val_y))

        # Refusal head on the training harmful prompts.
        states, targets = cls.refusal_targets(adapter, [data.harmful[i] for i in train_index], assistant_marker,
                                              image_size)
        steer, losses = train_refusal_head(states, targets, adapter.lm_head.weight.detach().float().cpu())
        tensors = {f"prober.{name}": value for name, value in prober.state_dict().items()}
        tensors["steer_matrix"] = steer
        with torch.no_grad():
            toxicity = prober.toxicity(val_x)
        fit = {
            "layer": layer,
            "sas": {str(candidate): score for candidate, score in scores.items()},
            "candidate_layers": layers,
            "assistant_marker": assistant_marker,
            "image_size": image_size,
            "image_resize": (f"every image resized to {image_size} x {image_size} (RGB, bicubic) for the prober, "
                             "the refusal head and inference" if image_size else "images kept at their size"),
            "prompt_format": ("the chat template: image then text, generation prompt (assistant marker)"
                              if assistant_marker else
                              "text then image, add_generation_prompt=False (no assistant marker)"),
            "prober": {**prober_fit, "architecture": f"Linear({adapter.hidden_size},{PROBER_HIDDEN})-ReLU-"
                       f"Linear({PROBER_HIDDEN},2)-softmax", "lr": PROBER_LR, "weight_decay": PROBER_WEIGHT_DECAY,
                       "batch": PROBER_BATCH, "checkpoint": f"after {PROBER_STEPS} updates (the code's epoch "
                       f"{OFFICIAL_PROBER_EPOCH} of {OFFICIAL_PROBER_EXAMPLES} examples)",
                       "val_trigger_rate": {"harmful": float((toxicity[val_y == 0] > THRESHOLD).float().mean()),
                                            "harmless": float((toxicity[val_y == 1] > THRESHOLD).float().mean())}},
            "refusal_head": {"epsilon": EPSILON, "target": REFUSAL_TARGET, "lr": HEAD_LR, "batch": HEAD_BATCH,
                             "epochs": len(losses), "loss_per_epoch": losses, "prompts": len(states)},
            "threshold": THRESHOLD,
            "pairs": {"train": len(train_index), "val": len(val_index)},
        }
        return Calibration(tensors, fit)

    @staticmethod
    def refusal_targets(adapter: "VLMAdapter", prompts, assistant_marker: bool = False, image_size: int = 0,
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Post-norm states and next-token targets over the answer part of
        user(question [+ image]) + assistant(REFUSAL_TARGET), loss after the user content (official
        format) or after the generation prompt (``assistant_marker``: the model does not write the header)."""
        states, targets = [], []
        for prompt in progress(prompts, len(prompts), "autosteer: refusal-head targets"):
            [request] = resized_requests([prompt.request()], image_size)
            full = render_messages(adapter, request, add_generation_prompt=False,
                                   image_after_text=not assistant_marker, assistant=REFUSAL_TARGET)
            if assistant_marker:
                prompt_part = adapter.prompt_text(request)
                if not full.startswith(prompt_part):
                    raise ValueError("the chat template's generation prompt is not a prefix of its finished "
                                     "assistant turn: calibrate with the official format instead")
            else:
                user_end = full.index(request.prompt) + len(request.prompt)
                if request.image:  # the image placeholder closes the user content in this format
                    user_end = _after_image(adapter, full, user_end)
                prompt_part = full[:user_end]
            inputs = encode_texts(adapter, [full], [request.image])
            prefix = encode_texts(adapter, [prompt_part], [request.image])["input_ids"].shape[1]
            residuals = read_residuals(adapter, inputs, [], with_final=True)
            ids = inputs["input_ids"][0].cpu()
            # state at position t predicts token t + 1; supervise tokens after the user content
            states.append(residuals.final[0, prefix - 1 : len(ids) - 1])
            targets.append(ids[prefix:])
        return states, targets


def _val_positions(n: int) -> set[int]:
    from harness.defense_api.calibration import VALIDATION_EVERY

    if n < VALIDATION_EVERY:
        return set(range(n))
    return {i for i in range(n) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1}


def _after_image(adapter: "VLMAdapter", text: str, start: int) -> int:
    token = getattr(adapter.processor, "image_token", None) or "<image>"
    found = text.find(token, start)
    return start if found < 0 else found + len(token)

