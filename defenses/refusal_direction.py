"""``refusal-direction``: difference-in-means refusal direction, added to the residual stream (ActAdd).

Paper: Arditi et al., "Refusal in Language Models Is Mediated by a Single Direction", NeurIPS 2024,
arXiv:2406.11717. Official code: https://github.com/andyrdt/refusal_direction (``pipeline/submodules/
generate_directions.py``, ``select_direction.py``, ``run_pipeline.py``). What this file follows:

Calibration (``RefusalDirection.calibrate``)
  * Candidates: r[p, l] = mean(h_l(harmful)[p]) - mean(h_l(harmless)[p]) for every post-instruction
    position p (the chat-template tokens after the instruction: end of turn + assistant header) and
    every layer l, where h_l is the residual stream *entering* block l (``resid_pre``). Code facts:
    means in float64, un-normalised difference.
  * Training and validation prompts are filtered as in the code (``filter_train``, ``filter_val``, both
    on by default in ``pipeline/config.py``): harmful prompts the model already refuses (refusal score
    > 0) and harmless ones it does not (< 0). When fewer than two survive on a side (a small model that
    rarely refuses) that split is used unfiltered and the manifest says so (``train_filtered``,
    ``val_filtered``).
  * Refusal score = log P(refusal tokens) - log P(other) at the first answer position; refusal tokens =
    the first tokens of "I" and "As" (the code's choice for Qwen; one id list per model family there).
  * Selection on the held-out split (code defaults): discard layers >= 80 % of depth
    (``prune_layer_percentage=0.2``), directions whose ablation at every layer changes harmless
    next-token distributions by KL > 0.1, and directions whose addition does not induce refusal on
    harmless prompts (mean score < 0); among the rest take the one whose ablation lowers the harmful
    refusal score most. Ablation removes r̂r̂ᵀh from every block input and every attention / MLP output.
    If every candidate is filtered out (the code asserts), the candidate with the largest induced
    refusal score among unpruned layers is taken and the manifest records ``fallback: true``.
    Scores are computed in filter order and a candidate stops at its first failed filter (same choice
    as the code, fewer passes); at most 16 held-out prompts per side (the code's n_val is 32).

Inference (``generate``)
  * ActAdd: h_l* <- h_l* + coeff · r at the input of the selected block, at every position and every
    decoding step, with the *raw* (un-normalised) mean difference; the code uses coeff = 1.0.
  * As a defense this is unconditional, so it raises refusals on benign prompts too; ``coeff`` scales it
    (0 = the undefended model). No extra generations.

Deviations from the official code:
- Data: our 80 + 80 training and 20 + 20 held-out pairs instead of the code's 128 + 128 train and 32 + 32
  validation instructions sampled from its harmful/harmless splits; at most 16 held-out prompts per
  side are used for selection (the code's n_val is 32), filtered afterwards as in the code.
- The fallbacks: unfiltered splits when a filter would leave fewer than two prompts on a side, and the
  highest induced-refusal candidate when every candidate is filtered out (the code asserts instead).
- Refusal tokens: "I" and "As" for every model (the code keeps one list per model family).
- Candidates are scored in filter order and stop at their first failed filter (same choice, fewer passes).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from harness.defense_api.calibration import Calibration, CalibratedDefense, CalibrationData
from harness.defense_api.steering import (
    edit_input,
    edit_layer_input,
    edit_output,
    encode_requests,
    last_logits,
    progress,
    residuals_for_requests,
    template_suffix,
)

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

KL_THRESHOLD = 0.1
INDUCE_REFUSAL_THRESHOLD = 0.0
PRUNE_LAYER_PERCENTAGE = 0.2
REFUSAL_TOKEN_TEXTS = ("I", "As")
BATCH_SIZE = 16
SELECTION_PROMPTS = 16  # held-out prompts per side for the selection passes (the code uses 32)

log = logging.getLogger("harness.defense_api.calibration")


def refusal_token_ids(adapter: "VLMAdapter") -> list[int]:
    ids = []
    for text in REFUSAL_TOKEN_TEXTS:
        encoded = adapter.tokenizer(text, add_special_tokens=False)["input_ids"]
        if encoded and encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return ids


def refusal_scores(logits: torch.Tensor, token_ids: list[int], epsilon: float = 1e-8) -> torch.Tensor:
    """log P(refusal tokens) - log P(everything else), per row (the code's ``refusal_score``)."""
    probs = torch.softmax(logits.double(), dim=-1)
    refusal = probs[:, token_ids].sum(dim=-1)
    return torch.log(refusal + epsilon) - torch.log(1 - refusal + epsilon)


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """KL(p || q) per row, in float64 with the code's epsilon."""
    p, q = torch.softmax(logits_p.double(), -1), torch.softmax(logits_q.double(), -1)
    return (p * (torch.log(p + epsilon) - torch.log(q + epsilon))).sum(-1)


def filter_by_refusal(harmful: list, harmful_scores: torch.Tensor, harmless: list, harmless_scores: torch.Tensor,
                      ) -> tuple[list, list, bool]:
    """The code's ``filter_data``: keep harmful prompts with refusal score > 0 and harmless ones with < 0.
    Returns (harmful, harmless, filtered); with fewer than two left on a side, both lists unfiltered."""
    kept_harmful = [p for p, s in zip(harmful, harmful_scores.tolist()) if s > 0]
    kept_harmless = [p for p, s in zip(harmless, harmless_scores.tolist()) if s < 0]
    if len(kept_harmful) >= 2 and len(kept_harmless) >= 2:
        return kept_harmful, kept_harmless, True
    return list(harmful), list(harmless), False


def add_vector(vector: torch.Tensor, coeff: float):
    def edit(hidden: torch.Tensor) -> torch.Tensor:
        return hidden + coeff * vector.to(hidden.device, hidden.dtype)

    return edit


def ablate_direction(direction: torch.Tensor):
    unit = direction / direction.norm()

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        u = unit.to(hidden.device, hidden.dtype)
        return hidden - (hidden @ u).unsqueeze(-1) * u

    return edit


def ablation_everywhere(adapter: "VLMAdapter", direction: torch.Tensor):
    """Contexts that remove ``direction`` from every block input and every attention / MLP output."""
    edit = ablate_direction(direction)
    contexts = []
    for layer in adapter.decoder_layers:
        contexts.append(edit_input(layer, edit))
        for child in ("self_attn", "mlp"):
            module = getattr(layer, child, None)
            if module is not None:
                contexts.append(edit_output(module, edit))
    return contexts


def logits_with(adapter: "VLMAdapter", inputs: dict[str, torch.Tensor], contexts: list[Any]) -> torch.Tensor:
    import contextlib

    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        return last_logits(adapter, inputs)


class RefusalDirection(CalibratedDefense):
    name = "refusal-direction"
    aliases = ("refusal_direction", "actadd")
    summary = (
        "Difference-in-means refusal direction added at one layer (Arditi et al., NeurIPS 2024); "
        "needs calibration"
    )
    default_params = {"coeff": 1.0}
    calibration_version = 2  # 2: held-out prompts filtered by refusal score (filter_val)

    # ------------------------------------------------------------------------------------- inference
    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        coeff = float(self.params["coeff"])
        direction = self.tensor("direction", device=adapter.device)
        with edit_layer_input(adapter, int(fit["layer"]), add_vector(direction, coeff)):
            outputs = adapter.generate(requests)
        for output in outputs:
            output.meta.update({"steer_layer": int(fit["layer"]), "coeff": coeff})
        return outputs

    # ----------------------------------------------------------------------------------- calibration
    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData) -> Calibration:
        train, val = data.split("train"), data.split("val")
        token_ids = refusal_token_ids(adapter)
        suffix = template_suffix(adapter)
        n_positions = max(1, len(adapter.tokenizer(suffix, add_special_tokens=False)["input_ids"]))
        layers = list(range(adapter.num_layers))

        def requests(prompts):
            return [prompt.request() for prompt in prompts]

        def scores(prompts) -> torch.Tensor:
            return refusal_scores(last_logits(adapter, encode_requests(adapter, requests(prompts))), token_ids)

        # Filter the training prompts by the model's own behaviour (code: filter_train=True).
        harmful_scores, harmless_scores = scores(train.harmful), scores(train.harmless)
        harmful, harmless, filtered = filter_by_refusal(train.harmful, harmful_scores, train.harmless, harmless_scores)

        def mean_at_positions(prompts) -> torch.Tensor:  # [positions, layers, dim], float64
            total = torch.zeros(n_positions, len(layers), adapter.hidden_size, dtype=torch.float64)
            for chunk in residuals_for_requests(adapter, requests(prompts), layers, batch_size=BATCH_SIZE):
                for layer in layers:
                    total[:, layer] += chunk.states[layer][:, -n_positions:, :].double().sum(dim=0)
            return total / len(prompts)

        candidates = mean_at_positions(harmful) - mean_at_positions(harmless)

        # The held-out prompts are filtered the same way (code: filter_val=True).
        val_harmful, val_harmless = val.harmful[:SELECTION_PROMPTS], val.harmless[:SELECTION_PROMPTS]
        val_harmful, val_harmless, val_filtered = filter_by_refusal(val_harmful, scores(val_harmful),
                                                                    val_harmless, scores(val_harmless))

        # Selection on the held-out split. The code scores every candidate three ways and then filters;
        # the filters are conjunctive, so scoring in filter order (induced refusal, KL, then bypass) and
        # stopping at the first failed filter picks the same direction with far fewer forward passes.
        harmful_inputs = encode_requests(adapter, requests(val_harmful))
        harmless_inputs = encode_requests(adapter, requests(val_harmless))
        baseline_harmless = last_logits(adapter, harmless_inputs)
        baseline_harmful_score = refusal_scores(last_logits(adapter, harmful_inputs), token_ids).mean().item()
        max_layer = max(1, int(adapter.num_layers * (1.0 - PRUNE_LAYER_PERCENTAGE)))
        evaluated = []
        grid = [(position, layer) for position in range(-n_positions, 0) for layer in range(max_layer)]
        for position, layer in progress(grid, len(grid), "refusal-direction: selection candidates"):
            direction = candidates[position, layer].float()
            if not torch.isfinite(direction).all() or direction.norm() == 0:
                continue
            row = {"position": position, "layer": layer}
            actadd = [edit_layer_input(adapter, layer, add_vector(direction, 1.0))]
            induced = logits_with(adapter, harmless_inputs, actadd)
            row["steering_score"] = refusal_scores(induced, token_ids).mean().item()
            if row["steering_score"] >= INDUCE_REFUSAL_THRESHOLD:
                ablated = logits_with(adapter, harmless_inputs, ablation_everywhere(adapter, direction))
                row["kl_div_score"] = kl_divergence(baseline_harmless, ablated).mean().item()
                if row["kl_div_score"] <= KL_THRESHOLD:
                    bypass = logits_with(adapter, harmful_inputs, ablation_everywhere(adapter, direction))
                    row["refusal_score"] = refusal_scores(bypass, token_ids).mean().item()
            evaluated.append(row)
        log.info("refusal-direction: scored %d candidates (%d positions x %d layers)", len(evaluated), n_positions,
                 max_layer)
        kept = [row for row in evaluated if "refusal_score" in row and not math.isnan(row["refusal_score"])]
        fallback = not kept
        chosen = (min(kept, key=lambda row: row["refusal_score"]) if kept
                  else max(evaluated, key=lambda row: row["steering_score"]))
        direction = candidates[chosen["position"], chosen["layer"]].float()
        fit = {
            "method": "difference-in-means at post-instruction positions, resid_pre; ActAdd at one layer",
            "layer": chosen["layer"],
            "position": chosen["position"],
            "post_instruction_text": suffix,
            "direction_norm": direction.norm().item(),
            "selection": chosen,
            "fallback": fallback,
            "candidates_evaluated": len(evaluated),
            "candidates_kept": len(kept),
            "thresholds": {"kl": KL_THRESHOLD, "induce_refusal": INDUCE_REFUSAL_THRESHOLD,
                           "prune_layer_percentage": PRUNE_LAYER_PERCENTAGE},
            "refusal_token_ids": token_ids,
            "train_filtered": filtered,
            "train_counts": {"harmful": len(harmful), "harmless": len(harmless)},
            "val_filtered": val_filtered,
            "val_counts": {"harmful": len(val_harmful), "harmless": len(val_harmless)},
            "baseline_refusal_score": {"harmful_val": baseline_harmful_score,
                                       "harmful_train_mean": harmful_scores.mean().item(),
                                       "harmless_train_mean": harmless_scores.mean().item()},
        }
        return Calibration({"direction": direction}, fit)
