"""``autosteer``: a safety prober gates a trained refusal head on the output projection.

Paper: Wu et al., "AutoSteer: Automating Steering for Safe Multimodal Large Language Models", EMNLP 2025
(main), arXiv:2507.13255. Official code (MIT): https://github.com/zjunlp/AutoSteer
(``source/LayerSelect/Llava/{utils,gen_last_token_memmap_np}.py``, ``source/train_rater.py``,
``source/steer/SteerLlava/{rater,steer_model_llava_train,steer_model_llava_inference}.py``,
``source/llava_steer_test.py``). Facts followed, from the code:

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
  AdamW lr 1e-5, weight decay 1e-5, batch 8, fp32, up to 200 epochs; the code picks a checkpoint by
  validation accuracy (epoch 37 for LLaVA-OV): we keep the epoch with the best held-out accuracy.
Refusal head: a d x d matrix S (init identity, base model frozen); logits = h (W + eps W S)^T with W the
  lm_head weight and h the post-norm state, eps = 0.1. Trained to emit "I'm sorry, but I can't assist
  with that." after the harmful prompt (teacher forcing, loss only after the question: the code masks
  up to and including the image token that ends the user content), AdamW lr 1e-5, batch 2; the code
  trains 30 epochs and uses Epoch_12, so 12 epochs here. Because the model is frozen, the post-norm
  states are computed once and S is trained on them: the same gradients, far cheaper.
Inference: on the prefill only, t = P(toxic) from the prober on the last prompt token at the prober
  layer; if t > 0.5 the head uses eps = 0.1 (safety_ratio 1.0) for every generated token, else eps = 0 and
  the output is the undefended model's (same prompt). Equivalent hook: h <- h + eps h S^T at the LM-head
  input. Greedy; the code caps answers at 150 tokens, the harness uses the task's limit. The code rates
  batch row 0 only; here every row is rated and gated on its own. Outputs carry ``meta`` =
  {toxicity, gate}. No extra generations.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

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
PROBER_EPOCHS = 200
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


def train_prober(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 epochs: int | None = None) -> tuple[Prober, dict[str, float]]:
    epochs = epochs or PROBER_EPOCHS  # read at call time: tests shorten it
    prober = Prober(train_x.shape[1])
    optimizer = torch.optim.AdamW(prober.parameters(), lr=PROBER_LR, weight_decay=PROBER_WEIGHT_DECAY)
    criterion = nn.CrossEntropyLoss()
    best_state, best = None, {"epoch": 0, "val_accuracy": -1.0, "train_accuracy": 0.0}
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), PROBER_BATCH):
            batch = order[start : start + PROBER_BATCH]
            optimizer.zero_grad()
            loss = criterion(prober(train_x[batch]), train_y[batch])  # softmax then CE, as in the code
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_accuracy = float((prober(val_x).argmax(-1) == val_y).float().mean())
            train_accuracy = float((prober(train_x).argmax(-1) == train_y).float().mean())
        if val_accuracy > best["val_accuracy"]:
            best = {"epoch": epoch, "val_accuracy": val_accuracy, "train_accuracy": train_accuracy}
            best_state = {name: value.clone() for name, value in prober.state_dict().items()}
    prober.load_state_dict(best_state)
    return prober, best


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
    calibration_params = {"assistant_marker": False}  # False: the official prompt format
    calibration_version = 1

    def prober(self) -> Prober:
        tensors = self.require_artifact().tensors
        prober = Prober(tensors["prober.layers.0.weight"].shape[1], tensors["prober.layers.0.weight"].shape[0])
        prober.load_state_dict({name.removeprefix("prober."): value.float()
                                for name, value in tensors.items() if name.startswith("prober.")})
        return prober.eval()

    def assistant_marker(self) -> bool:
        """The prompt format the artifact was fitted with (absent in artifacts older than the option)."""
        return bool(self.require_artifact().fit.get("assistant_marker", False))

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
            outputs = adapter.generate(requests)
        toxicity = state["toxicity"].tolist()
        for row, output in enumerate(outputs):
            if not marker:
                output.text = strip_role_header(output.text)
            output.meta.update({"toxicity": toxicity[row], "gate": bool(toxicity[row] > threshold),
                                "probe_layer": layer})
        return outputs

    # ----------------------------------------------------------------------------------- calibration
    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData, assistant_marker: bool = False) -> Calibration:
        from harness.defense_api.steering import last_token_states

        render = prompt_renderer(adapter, assistant_marker)
        layers = candidate_layers(adapter.num_layers)
        harmful = last_token_states(adapter, [p.request() for p in data.harmful], layers, render=render,
                                    batch_size=BATCH_SIZE)
        harmless = last_token_states(adapter, [p.request() for p in data.harmless], layers, render=render,
                                     batch_size=BATCH_SIZE)
        scores = {layer: safety_awareness(harmful[layer], harmless[layer]) for layer in layers}
        layer = max(layers, key=lambda candidate: (scores[candidate], -candidate))

        # Prober on the chosen layer: toxic = 0, safe = 1; validation split picks the epoch.
        n = len(data)
        val_index = [i for i in range(n) if i in _val_positions(n)]
        train_index = [i for i in range(n) if i not in set(val_index)] or val_index

        def features(index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.cat([harmful[layer][index], harmless[layer][index]])
            y = torch.cat([torch.zeros(len(index), dtype=torch.long), torch.ones(len(index), dtype=torch.long)])
            return x, y

        prober, prober_fit = train_prober(*features(train_index), *features(val_index))

        # Refusal head on the training harmful prompts.
        states, targets = cls.refusal_targets(adapter, [data.harmful[i] for i in train_index], assistant_marker)
        steer, losses = train_refusal_head(states, targets, adapter.lm_head.weight.detach().float().cpu())
        tensors = {f"prober.{name}": value for name, value in prober.state_dict().items()}
        tensors["steer_matrix"] = steer
        with torch.no_grad():
            val_x, val_y = features(val_index)
            toxicity = prober.toxicity(val_x)
        fit = {
            "layer": layer,
            "sas": {str(candidate): score for candidate, score in scores.items()},
            "candidate_layers": layers,
            "assistant_marker": assistant_marker,
            "prompt_format": ("the chat template: image then text, generation prompt (assistant marker)"
                              if assistant_marker else
                              "text then image, add_generation_prompt=False (no assistant marker)"),
            "prober": {**prober_fit, "architecture": f"Linear({adapter.hidden_size},{PROBER_HIDDEN})-ReLU-"
                       f"Linear({PROBER_HIDDEN},2)-softmax", "lr": PROBER_LR, "weight_decay": PROBER_WEIGHT_DECAY,
                       "batch": PROBER_BATCH, "max_epochs": PROBER_EPOCHS,
                       "val_trigger_rate": {"harmful": float((toxicity[val_y == 0] > THRESHOLD).float().mean()),
                                            "harmless": float((toxicity[val_y == 1] > THRESHOLD).float().mean())}},
            "refusal_head": {"epsilon": EPSILON, "target": REFUSAL_TARGET, "lr": HEAD_LR, "batch": HEAD_BATCH,
                             "epochs": len(losses), "loss_per_epoch": losses, "prompts": len(states)},
            "threshold": THRESHOLD,
            "pairs": {"train": len(train_index), "val": len(val_index)},
        }
        return Calibration(tensors, fit)

    @staticmethod
    def refusal_targets(adapter: "VLMAdapter", prompts, assistant_marker: bool = False,
                        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Post-norm states and next-token targets over the answer part of
        user(question [+ image]) + assistant(REFUSAL_TARGET), loss after the user content (official
        format) or after the generation prompt (``assistant_marker``: the model does not write the header)."""
        states, targets = [], []
        for prompt in progress(prompts, len(prompts), "autosteer: refusal-head targets"):
            request = prompt.request()
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

