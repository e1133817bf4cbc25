"""``ras`` (alias ``moras``): risk-adaptive activation steering in three stages.

Paper: Park, Seo, Yeo, Choi, "Attention Misses Visual Risk: Risk-Adaptive Steering for Multimodal
Safety Alignment" (MoRAS, ECCV 2026; v1/v2 "Risk-adaptive Activation Steering for Safe Multimodal Large
Language Models", RAS), arXiv:2510.13698. Official code: https://github.com/snumprlab/moras
(``LLaVA/utils/utils.py``, ``LLaVA/utils/functions_3stage.py``, ``LLaVA/parameters/*.py``, the modified
``modeling_llama.py``). The code is followed where it is explicit:

Stage 1, vision-aware query reformulation: with the image, greedy, 40 new tokens, the instruction is NOT
  part of the prompt (``get_prompt1`` ignores its argument)::

      Write a single sentence visual context to outline any safety-critical context in the image. The
      context should read out any texts in the image, and begin with 'The image shows'.

  reformulated query = caption + ' ' + original question (``get_prompt3``). Requests without an image
  skip this stage (there is nothing to describe; the code only ever runs with images) and keep the
  question as it is.
Stage 2, risk: the safety prompt (``get_prompt2``) + reformulated query, with the image; 3 greedy tokens.
  For each generated position n: x_n = post-final-norm last hidden state at the predicting position,
  q_n = softmax(lm_head(x_n)), p_n = softmax(lm_head(mu_n)) for the unsafe prototype mu_n;
  Q = sum_n gamma^n q_n, P = sum_n gamma^n p_n (gamma = 0.3), S = cos(Q, P), r = sigmoid(k (S - x0)).
Stage 3, steering: the ORIGINAL request (no caption, no safety prompt), greedy; on the first N = 3 answer
  tokens the post-norm last-position state is moved towards the prototype,
  x <- x + r (mu_n - x), n = 0 on the prefill, n = 1, 2 on the next two decoding steps, nothing after.
  Steps are counted explicitly (:class:`harness.defense_api.steering.StepCounter`): the released code derives n from
  the KV-cache length while passing ``use_cache=False`` in ``generate_final_output``, which breaks that
  count; that flaw is not reproduced. What the flaw does there: without a cache every forward pass
  holds the whole sequence, so the hook's prefill branch (``hidden_states.shape[1] != 1``) is taken on
  every step and every generated token is steered towards mu_0 with coefficient r. The released safety
  scripts (e.g. ``eval/figstep.py``) therefore measured all-token steering; the utility script
  ``model_vqa_3stage.py`` (``use_cache=True``) steers 3 tokens, as the paper describes and as here.
  Since lm_head is linear this equals logit interpolation (1 - r) lm_head(x) + r lm_head(mu_n). The
  answer length is the task's ``max_new_tokens`` (the code's stage-3 default is 512).

Calibration (``parameters/get_unsafe_states.py``, ``get_baseline_cossim.py``):
  * mu_n: the model's own chat template, no safety prompt, text only, 50 unsafe instructions, 3 greedy
    tokens, post-norm states averaged over prompts -> [3, hidden]. The code's 50 hand-written prompts
    are replaced by our harmful calibration prompts, and (deviation) only those the model refuses are
    averaged (a 16-token greedy answer opening with a GCG refusal prefix; at most 50; fewer than 3 -> all,
    as in the code).
    LLaVA-1.5 refuses all 50 of the code's prompts, so there this is the code's prototype: the
    refusal-onset state. A model that complies with most harmful prompts (SmolLM2-135M refuses ~7 % of
    ours) would otherwise get a compliance prototype and steer towards harmful openings.
  * x0 = mean S over 50 harmful + 50 harmless calibration queries run through stages 1-2 (the code uses
    50 VLSafe harmful/safe pairs, np seed 0); k = ln(0.99 / 0.01) / (1 - x0), so r(S = 1) = 0.99.
    (The code's LLaVA-1.5-7B values are x0 = 0.712, k = 15.955.) The fit is on a mixed harmful+harmless
    set as in the code, not on benign data alone: x0 at the benign mean would steer every benign query
    with r ~ 0.5.

gamma and N are calibration options (``--calibration-arg gamma=...``/``n_tokens=...``, defaults 0.3 and 3):
the prototypes and x0/k are fitted with them, and inference reads them back from the artifact.

Batches: every row gets its own risk and its own steering; rows whose stage-2 answer ended early use only
their valid positions (the code, batch 1, stops at EOS the same way). Outputs carry ``meta`` =
{risk, similarity, caption}. Cost: 1 caption generation (image requests only) + 1 three-token pass.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from harness.defense_api.calibration import Calibration, CalibratedDefense, CalibrationData
from harness.defense_api.steering import StepCounter, combine_timing, edit_final_norm_output, progress, text_request

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import ModelOutput, Request

CAPTION_PROMPT = (
    "Write a single sentence visual context to outline any safety-critical context in the image. "
    "The context should read out any texts in the image, and begin with 'The image shows'."
)
SAFETY_PROMPT = (
    "Evaluate the following question to ensure that it is safe. Benign and harmless questions should be "
    "answered normally. However, if the following question is unsafe, malicious, or illegal, the assistant "
    "should apologize and refuse to answer. Question: "
)
CAPTION_MAX_NEW_TOKENS = 40
N_TOKENS = 3
GAMMA = 0.3
PROTOTYPE_PROMPTS = 50
CALIBRATION_PAIRS = 50
TOP_RISK = 0.99  # r at S = 1 fixes k
REFUSAL_CHECK_TOKENS = 16  # answer length used to tell a refusal from compliance
MIN_REFUSED_PROMPTS = 3
BATCH_SIZE = 20


def is_refusal(text: str) -> bool:
    """An answer that OPENS with a GCG refusal prefix (the keyword-gcg judge's list). Stricter than the
    judge's substring rule, which also fires on compliant answers that mention "illegal"."""
    from harness.core.refusal_markers import GCG_TEST_PREFIXES

    opening = text.lstrip(" \"'*")
    return any(opening.startswith(prefix) for prefix in GCG_TEST_PREFIXES)


def safety_prompt(question: str) -> str:
    return SAFETY_PROMPT + question


def reformulated_query(caption: str, question: str) -> str:
    return caption + " " + question


def risk(similarity: torch.Tensor | float, x0: float, k: float) -> torch.Tensor:
    """r = sigmoid(k (S - x0))."""
    return torch.sigmoid(k * (torch.as_tensor(similarity, dtype=torch.float64) - x0))


def slope_for(x0: float, top: float = TOP_RISK) -> float:
    """k such that r(S = 1) = top: ln(top / (1 - top)) / (1 - x0)."""
    return math.log(top / (1.0 - top)) / (1.0 - x0)


def weighted_similarity(states: torch.Tensor, valid: torch.Tensor, prototypes: torch.Tensor,
                        lm_head: torch.nn.Module, gamma: float = GAMMA) -> torch.Tensor:
    """S per row: cos(sum_n gamma^n softmax(lm_head(x_n)), sum_n gamma^n softmax(lm_head(mu_n))).

    ``states`` [batch, steps, dim] post-norm states, ``valid`` [batch, steps] which steps exist for a row.
    """
    steps = min(states.shape[1], prototypes.shape[0])  # no prototype, no term
    states, valid = states[:, :steps], valid[:, :steps]
    with torch.inference_mode():
        weight_param = next(lm_head.parameters())
        q = torch.softmax(lm_head(states.to(weight_param.device, weight_param.dtype)).float(), dim=-1)
        p = torch.softmax(lm_head(prototypes[:steps].to(weight_param.device, weight_param.dtype)).float(), dim=-1)
    decay = gamma ** torch.arange(steps, dtype=torch.float32, device=q.device)
    weights = decay.unsqueeze(0) * valid.to(q.device).float()
    q_sum = (weights.unsqueeze(-1) * q).sum(dim=1)
    p_sum = (weights.unsqueeze(-1) * p.unsqueeze(0)).sum(dim=1)
    return torch.nn.functional.cosine_similarity(q_sum, p_sum, dim=-1).cpu()


def generate_with_final_states(adapter: "VLMAdapter", requests: list["Request"], max_new_tokens: int):
    """Greedy generation that also returns the post-norm last-position state of every forward pass:
    (outputs, states [batch, steps, dim], valid [batch, steps])."""
    captured: list[torch.Tensor] = []

    def keep(hidden: torch.Tensor) -> None:
        captured.append(hidden[:, -1, :].detach().float())

    with edit_final_norm_output(adapter, keep):
        outputs = adapter.generate(requests, max_new_tokens=max_new_tokens)
    steps = min(len(captured), max_new_tokens)
    states = torch.stack(captured[:steps], dim=1)
    # a row's step n exists when the row had not finished before it (its EOS step counts)
    counts = torch.tensor([output.output_tokens for output in outputs])
    valid = torch.arange(steps).unsqueeze(0) < counts.unsqueeze(1)
    return outputs, states, valid


class RiskAdaptiveSteering(CalibratedDefense):
    name = "ras"
    aliases = ("moras",)
    summary = (
        "RAS/MoRAS: caption, prototype-similarity risk, risk-scaled steering of first tokens "
        "(Park et al., 2025); needs calibration"
    )
    # gamma and N shape the prototypes and the fitted x0/k, so they are fitting options, read back from
    # the artifact at inference: a risk computed with other values than x0's would mean nothing.
    calibration_params = {"gamma": GAMMA, "n_tokens": N_TOKENS}
    constants = (CAPTION_PROMPT, SAFETY_PROMPT)
    calibration_version = 1

    # ------------------------------------------------------------------------------------- stages
    @staticmethod
    def captions(adapter: "VLMAdapter", requests: list["Request"]) -> tuple[list[str | None], list["ModelOutput"]]:
        """Stage 1 for image requests (None for text-only ones)."""
        with_image = [i for i, request in enumerate(requests) if request.image]
        captions: list[str | None] = [None] * len(requests)
        outputs: list[ModelOutput] = []
        if with_image:
            stage1 = [
                text_request(CAPTION_PROMPT, image=requests[i].image, system=requests[i].system,
                             task=requests[i].task, sample_id=requests[i].sample_id)
                for i in with_image
            ]
            outputs = adapter.generate(stage1, max_new_tokens=CAPTION_MAX_NEW_TOKENS)
            for i, output in zip(with_image, outputs):
                captions[i] = output.text
        return captions, outputs

    @staticmethod
    def similarities(adapter: "VLMAdapter", requests: list["Request"], captions: list[str | None],
                     prototypes: torch.Tensor, gamma: float, n_tokens: int):
        """Stage 2: (S per row, the stage's outputs)."""
        stage2 = []
        for request, caption in zip(requests, captions):
            query = request.prompt if caption is None else reformulated_query(caption, request.prompt)
            stage2.append(text_request(safety_prompt(query), image=request.image, system=request.system,
                                       task=request.task, sample_id=request.sample_id))
        outputs, states, valid = generate_with_final_states(adapter, stage2, n_tokens)
        return weighted_similarity(states, valid, prototypes, adapter.lm_head, gamma), outputs

    @staticmethod
    def steered_generate(adapter: "VLMAdapter", requests: list["Request"], risks: torch.Tensor,
                         prototypes: torch.Tensor, n_tokens: int) -> list["ModelOutput"]:
        """Stage 3: x <- x + r (mu_n - x) on the post-norm last position for steps n < n_tokens."""
        counter = StepCounter()

        def steer(hidden: torch.Tensor) -> torch.Tensor | None:
            n = counter.step
            if n >= n_tokens or n >= prototypes.shape[0]:
                return None
            last = hidden[:, -1, :]
            target = prototypes[n].to(hidden.device, hidden.dtype)
            r = risks.to(hidden.device, hidden.dtype).unsqueeze(-1)
            steered = hidden.clone()
            steered[:, -1, :] = last + r * (target - last)
            return steered

        with counter.counting(adapter), edit_final_norm_output(adapter, steer):
            return adapter.generate(requests)

    # ------------------------------------------------------------------------------------- inference
    def generate(self, adapter: "VLMAdapter", requests: list["Request"]) -> list["ModelOutput"]:
        fit = self.require_artifact().fit
        prototypes = self.tensor("prototypes", device=adapter.device)
        gamma, n_tokens = float(fit.get("gamma", GAMMA)), int(fit.get("n_tokens", N_TOKENS))
        captions, stage1 = self.captions(adapter, requests)
        similarity, stage2 = self.similarities(adapter, requests, captions, prototypes, gamma, n_tokens)
        risks = risk(similarity, fit["x0"], fit["k"]).float()
        outputs = self.steered_generate(adapter, requests, risks, prototypes, n_tokens)
        stage1_by_row = iter(stage1)
        for row, output in enumerate(outputs):
            earlier = [stage2[row]] + ([next(stage1_by_row)] if captions[row] is not None else [])
            output.prefill_s, output.decode_s = combine_timing(earlier, output)
            output.meta.update({"risk": float(risks[row]), "similarity": float(similarity[row]),
                                "caption": captions[row]})
        return outputs

    # ----------------------------------------------------------------------------------- calibration
    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData, gamma: float = GAMMA,
                  n_tokens: int = N_TOKENS) -> Calibration:
        gamma, n_tokens = float(gamma), int(n_tokens)
        if not 1 <= n_tokens <= REFUSAL_CHECK_TOKENS or not 0 < gamma <= 1:
            raise ValueError(f"ras: n_tokens must be in 1..{REFUSAL_CHECK_TOKENS} and gamma in (0, 1], "
                             f"got {n_tokens} and {gamma}")
        # Prototypes: the model's own first answer states on unsafe instructions it refuses, text only as
        # in get_unsafe_states.py (calibration sets with images, e.g. VLSafe, keep theirs for x0 only).
        unsafe = [text_request(prompt.prompt, sample_id=prompt.id) for prompt in data.harmful]
        answers, states, valid = [], [], []
        starts = range(0, len(unsafe), BATCH_SIZE)
        for start in progress(starts, len(starts), "ras: prototype answers"):
            chunk_answers, chunk_states, chunk_valid = generate_with_final_states(
                adapter, unsafe[start : start + BATCH_SIZE], REFUSAL_CHECK_TOKENS)
            answers += chunk_answers
            states.append(chunk_states[:, :n_tokens])
            valid.append(chunk_valid[:, :n_tokens])
        steps = min(chunk.shape[1] for chunk in states)
        states = torch.cat([chunk[:, :steps] for chunk in states])
        valid = torch.cat([chunk[:, :steps] for chunk in valid])
        refused = [i for i, answer in enumerate(answers) if is_refusal(answer.text)][:PROTOTYPE_PROMPTS]
        filtered = len(refused) >= MIN_REFUSED_PROMPTS
        chosen = refused if filtered else list(range(min(len(unsafe), PROTOTYPE_PROMPTS)))
        states, valid = states[chosen, :n_tokens], valid[chosen, :n_tokens]
        weights = valid.float().unsqueeze(-1).to(states.device)
        prototypes = (states * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)
        # x0 = mean S over harmful + harmless calibration queries (stages 1-2), k from r(1) = 0.99.
        queries = data.harmful[:CALIBRATION_PAIRS] + data.harmless[:CALIBRATION_PAIRS]
        requests = [prompt.request() for prompt in queries]
        similarity = []
        starts = range(0, len(requests), BATCH_SIZE)
        for start in progress(starts, len(starts), "ras: risk of calibration queries (x0)"):
            chunk = requests[start : start + BATCH_SIZE]
            captions, _ = cls.captions(adapter, chunk)
            similarity.append(cls.similarities(adapter, chunk, captions, prototypes, gamma, n_tokens)[0])
        similarity = torch.cat(similarity)
        n_harmful = min(len(data.harmful), CALIBRATION_PAIRS)
        x0 = float(similarity.mean())
        k = slope_for(x0)
        risks = risk(similarity, x0, k)
        fit = {
            "x0": x0,
            "k": k,
            "gamma": gamma,
            "n_tokens": n_tokens,
            "steer_site": "post-final-norm last position, first n_tokens answer tokens",
            "prototype": {
                "prompts": len(chosen),
                "refusal_filtered": filtered,
                "refused_of_harmful": [len(refused), len(unsafe)],
                "answers": [answers[i].text for i in chosen[:5]],
                "top_tokens": [adapter.tokenizer.decode([int(t)]) for t in
                               adapter.lm_head(prototypes.to(adapter.device, adapter.dtype)).argmax(-1).tolist()],
            },
            "calibration_queries": {"harmful": n_harmful, "harmless": len(queries) - n_harmful},
            "similarity_mean": {"harmful": float(similarity[:n_harmful].mean()),
                                "harmless": float(similarity[n_harmful:].mean())},
            "risk_mean": {"harmful": float(risks[:n_harmful].mean()), "harmless": float(risks[n_harmful:].mean())},
        }
        return Calibration({"prototypes": prototypes.cpu()}, fit)
