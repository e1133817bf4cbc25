"""``cast``: conditional activation steering: add a refusal vector only when a harm condition holds.

Paper: Lee et al., "Programming Refusal with Conditional Activation Steering", ICLR 2025,
arXiv:2409.11409 (IBM). Official code: https://github.com/IBM/activation-steering
(``activation_steering/{leash_layer,malleable_model,steering_vector}.py``, ``docs/quickstart.md``).
Facts followed, from the code:

Vectors (``SteeringVector.train`` / ``read_representations``): hidden states are read from
  ``output_hidden_states[layer + 1]`` (the OUTPUT of block ``layer``) but applied by ``LeashLayer`` to the
  INPUT of block ``layer``; we keep that off-by-one. Method ``pca_pairwise``, the library's default
  (``read_representations``): every (positive, negative) pair minus its own mean, first principal
  component, unit norm, sign flipped so that positives project higher than their partners in most pairs.
  The quickstart uses ``pca_center`` (common mean) on unpaired data; our harmful/harmless prompts and
  refusal/compliance openings are paired, and pairwise centring removes what a pair shares (topic,
  question) - with ``pca_center`` the SmolLM2 condition vector followed topic and fired on 95 % of
  harmless prompts.
  * condition vector: harmful (positive) vs harmless (negative) prompts in the chat template,
    ``accumulate_last_x_tokens="all"`` (mean over the prompt's tokens);
  * behavior vector: the same harmless questions followed by a refusal opening (positive) or a
    compliance opening (negative), ``"suffix-only"`` (mean over the opening's tokens; the code measures
    every suffix with the length of the first one, we use each suffix's own length). Openings:
    ``harness/calibration_data/behavior_suffixes.json``.
Condition (``LeashLayer._process_single_condition``): on the first forward pass only, at the condition
  layer's input, h = mean over prompt tokens, sim = cos(h, tanh(P h)) with P = c c^T / (c^T c). The
  comparator names are inverted in the code: "larger" means the condition holds when sim < threshold,
  "smaller" when sim > threshold; we store the effective rule (``condition_holds_when``).
  ``find_best_condition_point``: grid over single condition layers and thresholds, both comparators,
  best F1 with harmful as positive class (the code reuses the vector's own data; we fit on the training
  split and report the held-out F1 too). The quickstart searches layers 1-14 of a 32-block model;
  here layers 1 .. round(14/32 depth).
Behavior (``_apply_single_behavior``): once the condition holds, h <- h + strength * v_l at the input of
  every behavior layer, all positions, on the prefill (``apply_behavior_on_first_call=True``) and every
  later step. Quickstart: layers 15-23 of 32 (here round(15/32 depth) .. round(23/32 depth)), strength
  1.5. ``use_ooi_preventive_normalization`` defaults to False in ``MalleableModel.steer``; when on, a state
  whose norm grew is rescaled to its original norm (decided over the whole tensor of row 0 in the code;
  here per row, over that row's real tokens). The code conditions on and steers batch row 0 only;
  we decide and steer per row. Outputs carry ``meta`` = {condition_similarity, condition_met}.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from harness.defense_api.calibration import DATA_DIR, Calibration, CalibratedDefense, CalibrationData, file_record
from harness.defense_api.steering import StepCounter, edit_layer_input, residuals_for_requests

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

SUFFIXES_FILE = DATA_DIR / "behavior_suffixes.json"
BEHAVIOR_STRENGTH = 1.5
REFERENCE_DEPTH = 32  # the quickstart's layer choices are for a 32-block model
CONDITION_SEARCH = (1, 14)
BEHAVIOR_LAYERS = (15, 23)
BATCH_SIZE = 16


def scaled_layer(index: int, num_layers: int) -> int:
    return min(num_layers - 1, max(0, round(index * num_layers / REFERENCE_DEPTH)))


def condition_search_layers(num_layers: int) -> list[int]:
    low, high = (scaled_layer(i, num_layers) for i in CONDITION_SEARCH)
    return list(range(max(1, low) if num_layers > 1 else 0, max(high, 1 if num_layers > 1 else 0) + 1))


def behavior_layers(num_layers: int) -> list[int]:
    low, high = (scaled_layer(i, num_layers) for i in BEHAVIOR_LAYERS)
    return list(range(low, high + 1))


def _oriented(direction: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Unit ``direction``, flipped when positives project below their paired negatives in most pairs."""
    direction = direction / direction.norm()
    higher = ((positive.double() @ direction) > (negative.double() @ direction)).float().mean()
    return (direction if higher >= 0.5 else -direction).float()


def pca_center_direction(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``pca_center``: first principal component of all states minus their common mean."""
    stacked = torch.cat([positive, negative]).double()
    _, _, vh = torch.linalg.svd(stacked - stacked.mean(dim=0), full_matrices=False)
    return _oriented(vh[0], positive, negative)


def pca_pairwise_direction(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``pca_pairwise`` (the library default): each pair minus its own mean, then the first component."""
    centre = (positive.double() + negative.double()) / 2
    stacked = torch.cat([positive.double() - centre, negative.double() - centre])
    _, _, vh = torch.linalg.svd(stacked - stacked.mean(dim=0), full_matrices=False)
    return _oriented(vh[0], positive, negative)


def condition_similarity(mean_hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """cos(h, tanh(P h)) with P the projector on ``direction``; per row."""
    direction = direction.to(mean_hidden.device, mean_hidden.dtype)
    projector = torch.outer(direction, direction) / direction.dot(direction)
    projected = torch.tanh(mean_hidden @ projector.T)
    return torch.nn.functional.cosine_similarity(mean_hidden, projected, dim=-1)


def holds(similarity: torch.Tensor, threshold: float, when: str) -> torch.Tensor:
    return similarity < threshold if when == "below" else similarity > threshold


def f1_score(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_condition_point(sims_harmful: dict[int, torch.Tensor],
                         sims_harmless: dict[int, torch.Tensor]) -> dict[str, Any]:
    """Grid over layers, thresholds (midpoints of the observed similarities) and both comparators."""
    best: dict[str, Any] = {"f1": -1.0}
    for layer in sorted(sims_harmful):
        sims = torch.cat([sims_harmful[layer], sims_harmless[layer]])
        truth = torch.cat([torch.ones(len(sims_harmful[layer]), dtype=torch.bool),
                           torch.zeros(len(sims_harmless[layer]), dtype=torch.bool)])
        values = torch.unique(sims)
        thresholds = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
        for threshold in thresholds.tolist():
            for when in ("below", "above"):
                score = f1_score(holds(sims, threshold, when), truth)
                if score > best["f1"]:
                    best = {"f1": score, "layer": layer, "threshold": threshold, "condition_holds_when": when,
                            "code_comparator": "larger" if when == "below" else "smaller"}
    return best


def load_suffixes() -> tuple[list[str], list[str]]:
    data = json.loads(SUFFIXES_FILE.read_text())
    return data["refusal"], data["compliance"]


class ConditionalActivationSteering(CalibratedDefense):
    name = "cast"
    aliases = ("conditional-activation-steering",)
    summary = (
        "CAST: add a refusal vector when a harm condition vector fires (Lee et al., ICLR 2025); "
        "needs calibration"
    )
    version = 2  # 2: OOI normalisation decided per row
    default_params = {"behavior_strength": BEHAVIOR_STRENGTH, "use_ooi_preventive_normalization": False}
    calibration_version = 1

    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        condition_layer = int(fit["condition"]["layer"])
        threshold = float(fit["condition"]["threshold"])
        when = fit["condition"]["condition_holds_when"]
        condition = self.tensor("condition_vector", device=adapter.device)
        behaviors = {int(layer): self.tensor(f"behavior_vector.{layer}", device=adapter.device)
                     for layer in fit["behavior_layers"]}
        strength = float(self.params["behavior_strength"])
        normalise = bool(self.params["use_ooi_preventive_normalization"])
        counter = StepCounter()
        state: dict[str, torch.Tensor] = {}

        def check(hidden: torch.Tensor) -> None:
            if counter.step == 0:
                mask = counter.token_mask(hidden).unsqueeze(-1)
                mean = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                similarity = condition_similarity(mean, condition)
                state["similarity"], state["met"] = similarity, holds(similarity, threshold, when)

        def behave(vector: torch.Tensor):
            def edit(hidden: torch.Tensor) -> torch.Tensor | None:
                met = state.get("met")
                if met is None or not bool(met.any()):
                    return None
                rows = met.to(hidden.device).view(-1, 1, 1).to(hidden.dtype)
                steered = hidden + rows * (strength * vector.to(hidden.device, hidden.dtype))
                if normalise:
                    # The code's test (any norm grew, or a non-finite value) over row 0's tensor, here per
                    # row over its real tokens, so that a row's output never depends on its batch.
                    before, after = hidden.norm(dim=-1, keepdim=True), steered.norm(dim=-1, keepdim=True)
                    real = counter.token_mask(hidden).unsqueeze(-1) if counter.step == 0 else torch.ones_like(before)
                    grew = ((after / before) * real).flatten(1).amax(dim=1) > 1
                    broken = ~torch.isfinite(steered).flatten(1).all(dim=1)
                    rescale = (grew | broken).view(-1, 1, 1)
                    steered = torch.where(rescale, steered * (before / after), steered)
                return steered

            return edit

        # Condition first: at a shared layer its hook must run before the behavior hook (code order).
        contexts = [counter.counting(adapter), edit_layer_input(adapter, condition_layer, check)]
        contexts += [edit_layer_input(adapter, layer, behave(vector)) for layer, vector in behaviors.items()]
        import contextlib

        with contextlib.ExitStack() as stack:
            for context in contexts:
                stack.enter_context(context)
            outputs = adapter.generate(requests)
        for row, output in enumerate(outputs):
            output.meta.update({"condition_similarity": float(state["similarity"][row]),
                                "condition_met": bool(state["met"][row])})
        return outputs

    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData) -> Calibration:
        train, val = data.split("train"), data.split("val")
        num_layers = adapter.num_layers
        search = condition_search_layers(num_layers)
        behavior = behavior_layers(num_layers)

        def means(prompts, layers) -> dict[int, torch.Tensor]:
            chunks = residuals_for_requests(adapter, [p.request() for p in prompts], layers, batch_size=BATCH_SIZE)
            return {layer: torch.cat([chunk.mean(layer) for chunk in chunks]) for layer in layers}

        # Condition vectors from block outputs (hidden_states[l + 1]); similarities at block inputs.
        state_layers = sorted(set(search) | {layer + 1 for layer in search})
        harmful, harmless = means(train.harmful, state_layers), means(train.harmless, state_layers)
        vectors = {layer: pca_pairwise_direction(harmful[layer + 1], harmless[layer + 1]) for layer in search}
        sims_harmful = {layer: condition_similarity(harmful[layer], vectors[layer]) for layer in search}
        sims_harmless = {layer: condition_similarity(harmless[layer], vectors[layer]) for layer in search}
        condition = best_condition_point(sims_harmful, sims_harmless)
        layer = condition["layer"]
        val_harmful, val_harmless = means(val.harmful, [layer]), means(val.harmless, [layer])
        val_sims = torch.cat([condition_similarity(val_harmful[layer], vectors[layer]),
                              condition_similarity(val_harmless[layer], vectors[layer])])
        val_truth = torch.cat([torch.ones(len(val.harmful), dtype=torch.bool),
                               torch.zeros(len(val.harmless), dtype=torch.bool)])
        val_pred = holds(val_sims, condition["threshold"], condition["condition_holds_when"])
        condition["val_f1"] = f1_score(val_pred, val_truth)
        condition["val_trigger_rate"] = {"harmful": float(val_pred[val_truth].float().mean()),
                                         "harmless": float(val_pred[~val_truth].float().mean())}

        # Behavior vectors: harmless questions + refusal vs compliance openings, suffix tokens only.
        refusal, compliance = load_suffixes()
        questions = [prompt.request() for prompt in train.harmless]
        openings = [(refusal[i % len(refusal)], compliance[i % len(compliance)]) for i in range(len(questions))]
        behavior_states = {layer + 1 for layer in behavior}
        pos = cls.suffix_means(adapter, questions, [o[0] for o in openings], behavior_states)
        neg = cls.suffix_means(adapter, questions, [o[1] for o in openings], behavior_states)
        tensors = {"condition_vector": vectors[layer]}
        for b in behavior:
            tensors[f"behavior_vector.{b}"] = pca_pairwise_direction(pos[b + 1], neg[b + 1])
        fit = {
            "condition": condition,
            "condition_search_layers": search,
            "behavior_layers": behavior,
            "behavior_strength_default": BEHAVIOR_STRENGTH,
            "method": "pca_pairwise; condition: mean over prompt tokens; behavior: mean over suffix tokens",
            "suffixes": file_record(SUFFIXES_FILE, len(refusal) + len(compliance)),
            "pairs": {"train": len(train), "val": len(val)},
        }
        return Calibration(tensors, fit)

    @staticmethod
    def suffix_means(adapter: "VLMAdapter", requests: list["Request"], suffixes: list[str],
                     layers: set[int]) -> dict[int, torch.Tensor]:
        """layer -> [n, dim]: state averaged over each appended suffix's tokens."""
        lengths = [len(adapter.tokenizer(suffix, add_special_tokens=False)["input_ids"]) for suffix in suffixes]
        chunks = residuals_for_requests(adapter, requests, sorted(layers), suffixes=suffixes, batch_size=BATCH_SIZE)
        out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        row = 0
        for chunk in chunks:
            for i in range(chunk.mask.shape[0]):
                n = max(1, lengths[row])
                for layer in layers:
                    out[layer].append(chunk.states[layer][i, -n:, :].mean(dim=0))
                row += 1
        return {layer: torch.stack(values) for layer, values in out.items()}
