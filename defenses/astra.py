"""``astra``: adaptive projection steering away from a jailbreak direction, calibrated on benign activations.

Paper: Wang, Wang, Zhang, "Steering Away from Harm: An Adaptive Approach to Defending Vision Language
Model Against Jailbreaks", CVPR 2025, arXiv:2411.16721. Code: https://github.com/jun-brro/ASTRA (a copy
of the authors' release; ``steer_eval/steering_*.py``, ``extract_act/*``, ``extract_ref/*``, README).

Inference (the code's ``steer_type == 'projection'`` forward hook on ``language_model.layers[L - 1]``, i.e.
on HF hidden_states[L]), at the last position of every forward pass (the prompt's last token on the
prefill, the new token afterwards):
    cos = cos(h - h_ref, v);  c = clamp(cos, 0, 1) * ||h|| * alpha;  h <- h - c * v / ||v||
with v the steering vector and h_ref the benign reference activation. Layer: L = half the depth (the
code: 20 of 40 blocks for LLaVA-1.5-13B, 14 of 28 for Qwen2-VL-7B).

alpha is per model, as in the code (its README's commands): 10 for LLaVA-v1.5 (the toxicity setup,
``steering_llava_toxic.py --alpha 10``), 7 for Qwen2-VL (toxicity and jailbreak), 5 for MiniGPT-4
(toxicity; 7 with the jailbreak vector in its utility runs). Calibration stores the value for the model
it fits (``fit.alpha`` and ``fit.alpha_source``): 10 for llava-1.5 checkpoints, 7 for Qwen2-VL. Models
the paper does not cover (LLaVA-OneVision, smol-llava, the tiny fixtures) get 7, Qwen2-VL's value: a
choice, not an official one. The LLaVA-v1.5 *jailbreak* alpha is not in the README (the script's
argparse default, 80, is not what the paper reports) and could not be verified, so llava-1.5 uses the
toxicity value. ``--defense-arg alpha=X`` overrides the stored value.

Calibration. The reference h_ref follows the code: benign prompts, the model's own answer, then the mean
of hidden_states[L] over the answer tokens, averaged over prompts (the code uses benign images with "What
is the image about?"; here our harmless instructions, text only, answers capped at 32 tokens).
The steering vector cannot be built as in the paper offline: ASTRA crafts PGD adversarial images against
the target model, finds the visual tokens that drive the jailbreak (random ablation + a linear surrogate)
and takes v = mean(h_L(adversarial image) - h_L(image with those tokens removed)): the activation shift
that makes the model comply. Without a trained vision tower or a GPU for PGD we build the same kind of
"compliance-inducing" shift in text: v = mean over harmful calibration prompts of
h_L(prompt + "Sure, here is") - h_L(prompt + "I'm sorry, but I") at the last token. This is a documented
substitute, not the paper's vector; ``fit.vector_source`` says so in the manifest.

Deviations from the official code:
- The steering vector: the text substitute above, not PGD image attribution.
- The reference: our harmless instructions, text only, 32-token answers, instead of benign images with
  "What is the image about?".
- Norms per batch row; the code takes them over the whole batch (it runs batch 1).
- Greedy decoding instead of sampling (temperature 0.2, top-p 0.9).
- Prompt: the model's chat template. The code writes LLaVA-1.5's prompt by hand, 'USER: <image>\n' +
  query + '\nASSISTANT:', without the llava_v1 system line the harness adds for llava-1.5 models.
- alpha for models the paper does not cover (above).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from harness.defense_api.calibration import Calibration, CalibratedDefense, CalibrationData
from harness.defense_api.steering import edit_layer_output, encode_texts, read_residuals, residuals_for_requests

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

ALPHA = 7.0  # Qwen2-VL's value in the code's README; also used for models the paper does not cover
# (pattern on the model's Hub source or name, alpha, where the value comes from), first match wins
OFFICIAL_ALPHAS = (
    ("llava-1.5", 10.0, "README: LLaVA-v1.5, steering_llava_toxic.py --alpha 10"),
    ("qwen2-vl", 7.0, "README: Qwen2-VL, steering_qwen_{toxic,jb}.py --alpha 7"),
)
COMPLY_PREFILL = "Sure, here is"
REFUSE_PREFILL = "I'm sorry, but I"
REFERENCE_MAX_NEW_TOKENS = 32
BATCH_SIZE = 16


def alpha_for(adapter: "VLMAdapter") -> tuple[float, str]:
    """(alpha, its source) for the adapter's model: the code's per-model value, else Qwen2-VL's 7."""
    names = f"{adapter.spec.name} {adapter.spec.source} {adapter.family}".lower()
    for pattern, alpha, source in OFFICIAL_ALPHAS:
        if pattern in names:
            return alpha, source
    return ALPHA, "no official value for this model: Qwen2-VL's 7 (README), a choice"


def steer_layer(num_layers: int) -> int:
    """L in HF hidden_states numbering (the hook sits on block L - 1)."""
    return max(1, round(num_layers / 2))


def project_away(hidden: torch.Tensor, vector: torch.Tensor, reference: torch.Tensor, alpha: float) -> torch.Tensor:
    """The code's projection steering on [batch, dim] states."""
    vector = vector.to(hidden.device, hidden.dtype)
    reference = reference.to(hidden.device, hidden.dtype)
    cosine = torch.nn.functional.cosine_similarity(hidden - reference, vector.unsqueeze(0), dim=-1)
    coefficient = cosine.clamp(0, 1) * hidden.norm(dim=-1) * alpha
    return hidden - coefficient.unsqueeze(-1) * (vector / vector.norm())


class Astra(CalibratedDefense):
    name = "astra"
    summary = (
        "ASTRA: project a jailbreak direction out of one layer, benign-calibrated "
        "(Wang et al., CVPR 2025); needs calibration"
    )
    default_params = {"alpha": None}  # None: the per-model value stored by calibration (fit.alpha)
    calibration_version = 2  # 2: the per-model alpha is part of the fit

    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        layer = int(fit["layer"])
        vector = self.tensor("steering_vector", device=adapter.device)
        reference = self.tensor("reference", device=adapter.device)
        alpha = float(self.params["alpha"] if self.params["alpha"] is not None else fit["alpha"])
        shifts: list[torch.Tensor] = []

        def steer(hidden: torch.Tensor) -> torch.Tensor:
            steered = hidden.clone()
            steered[:, -1, :] = project_away(hidden[:, -1, :], vector, reference, alpha)
            shifts.append((steered[:, -1, :] - hidden[:, -1, :]).norm(dim=-1).float().cpu())
            return steered

        with edit_layer_output(adapter, layer - 1, steer):
            outputs = adapter.generate(requests)
        prefill_shift = shifts[0] if shifts else torch.zeros(len(outputs))
        for row, output in enumerate(outputs):
            output.meta.update({"steer_layer": layer, "alpha": alpha, "prefill_shift_norm": float(prefill_shift[row])})
        return outputs

    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData) -> Calibration:
        train = data.split("train")
        layer = steer_layer(adapter.num_layers)
        harmful = [prompt.request() for prompt in train.harmful]

        def last_states(suffix: str) -> torch.Tensor:
            chunks = residuals_for_requests(adapter, harmful, [layer], suffixes=[suffix] * len(harmful),
                                            batch_size=BATCH_SIZE)
            return torch.cat([chunk.last(layer) for chunk in chunks])

        vector = (last_states(COMPLY_PREFILL) - last_states(REFUSE_PREFILL)).mean(dim=0)

        # Reference: mean over the model's own answer tokens on benign prompts.
        benign = [prompt.request(max_new_tokens=REFERENCE_MAX_NEW_TOKENS) for prompt in train.harmless]
        answers = adapter.generate(benign, max_new_tokens=REFERENCE_MAX_NEW_TOKENS)
        per_prompt = []
        for request, answer in zip(benign, answers):
            prompt_text = adapter.prompt_text(request)
            prompt_length = encode_texts(adapter, [prompt_text], [request.image])["input_ids"].shape[1]
            inputs = encode_texts(adapter, [prompt_text + answer.text], [request.image])
            states = read_residuals(adapter, inputs, [layer]).states[layer][0]
            answer_states = states[prompt_length:] if states.shape[0] > prompt_length else states[-1:]
            per_prompt.append(answer_states.mean(dim=0))
        reference = torch.stack(per_prompt).mean(dim=0)
        alpha, alpha_source = alpha_for(adapter)
        fit = {
            "layer": layer,
            "hook": f"output of decoder block {layer - 1} (hidden_states[{layer}]), last position, every step",
            "alpha": alpha,
            "alpha_source": alpha_source,
            "vector_source": f"text substitute: mean h_L(harmful + {COMPLY_PREFILL!r}) - h_L(harmful + "
                             f"{REFUSE_PREFILL!r}) at the last token (the paper's PGD image attribution is not "
                             "reproducible offline)",
            "reference_source": f"mean hidden_states[L] over the model's greedy answers ({REFERENCE_MAX_NEW_TOKENS} "
                                "tokens max) to harmless calibration prompts",
            "vector_norm": float(vector.norm()),
            "reference_norm": float(reference.norm()),
            "prompts": {"harmful": len(harmful), "benign": len(benign)},
        }
        return Calibration({"steering_vector": vector, "reference": reference}, fit)
